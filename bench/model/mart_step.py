#!/usr/bin/python3
"""MART in PyTorch: the same architecture as src/model and src/loss, parameter for parameter.

Two uses:
  check-export  load a state dict written by mart::model::export_state_dict (strict: every name and
                shape must match) and compare this model's embeddings with the C++ ones;
  bench         time training steps (forward, backward, Adam), split into encoder, part-whole
                transformer + head, and loss, printing one JSON line; mart-bench-model runs it
                next to the C++ step.
Run with Debian's /usr/bin/python3 (python3-torch): the same LibTorch as the C++ build.
"""
import argparse
import json
import math
import resource
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F


def options(args):
    o = dict(levels=args.levels, parts=args.parts, n_mels=128, frames=128,
             channels=[128, 128, 256, 256, 256, 256, 512], pwt_blocks=3, heads=3, head_dim=64,
             ff_dim=2048, projection_dim=256, tau=0.5, use_pwt=True, use_hcl=True)
    if args.small:  # ModelOptions::small()
        o.update(n_mels=32, frames=32, channels=[8, 8, 16, 16, 16, 16, 32], heads=2, head_dim=8,
                 ff_dim=64, projection_dim=16)
    if getattr(args, "n_mels", None):
        o.update(n_mels=args.n_mels, frames=args.frames)
    o["dim"] = o["channels"][-1]
    return o


def fcn_max_pool(x):  # 2x2, floor; a side already at 1 is not pooled (fcn_encoder.h)
    kh, kw = (2 if x.shape[2] >= 2 else 1), (2 if x.shape[3] >= 2 else 1)
    return x if kh == kw == 1 else F.max_pool2d(x, (kh, kw), (kh, kw))


class FcnBlock(nn.Module):
    def __init__(self, cin, cout):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, 3, padding=1)
        self.bn = nn.BatchNorm2d(cout)

    def forward(self, x):
        return fcn_max_pool(F.relu(self.bn(self.conv(x))))


class FcnEncoder(nn.Module):
    def __init__(self, o):
        super().__init__()
        chans = [1] + o["channels"]
        self.blocks = nn.ModuleList(FcnBlock(a, b) for a, b in zip(chans[:-1], chans[1:]))

    def forward(self, x):
        for b in self.blocks:
            x = b(x)
        return x.amax(dim=(2, 3))


class CrossAttentionLayer(nn.Module):  # post-norm transformer layer, cross-attention
    def __init__(self, dim, heads, head_dim, ff_dim, single_key=False):
        super().__init__()
        inner = heads * head_dim
        self.heads, self.head_dim = heads, head_dim
        if not single_key:  # a single key needs no query/key projections (softmax is 1)
            self.query, self.key = nn.Linear(dim, inner), nn.Linear(dim, inner)
        self.value = nn.Linear(dim, inner)
        self.out = nn.Linear(inner, dim)
        self.norm1 = nn.LayerNorm(dim)
        self.ff1, self.ff2 = nn.Linear(dim, ff_dim), nn.Linear(ff_dim, dim)
        self.norm2 = nn.LayerNorm(dim)

    def attend(self, q_in, c_in):
        g, lq, lk = q_in.shape[0], q_in.shape[1], c_in.shape[1]
        if lk == 1:  # softmax over one key is 1
            return self.out(self.value(c_in)).expand(g, lq, -1)
        split = lambda t, n: t.view(g, n, self.heads, self.head_dim).transpose(1, 2)
        q, k, v = split(self.query(q_in), lq), split(self.key(c_in), lk), split(self.value(c_in), lk)
        w = torch.softmax(q @ k.transpose(-2, -1) / math.sqrt(self.head_dim), -1)
        return self.out((w @ v).transpose(1, 2).reshape(g, lq, -1))

    def forward(self, q, c):
        y = self.norm1(q + self.attend(q, c))
        return self.norm2(y + self.ff2(F.relu(self.ff1(y))))


class PartWholeUnit(nn.Module):
    def __init__(self, o):
        super().__init__()
        self.m = o["parts"]
        self.bottom_up = CrossAttentionLayer(o["dim"], o["heads"], o["head_dim"], o["ff_dim"])
        self.top_down = CrossAttentionLayer(o["dim"], o["heads"], o["head_dim"], o["ff_dim"], single_key=True)

    def updates(self, wholes, parts):  # lambdas are 1 (the default)
        b, k, d = wholes.shape
        w, p = wholes.reshape(b * k, 1, d), parts.reshape(b * k, self.m, d)
        return self.bottom_up(w, p).reshape_as(wholes), self.top_down(p, w).reshape_as(parts)


class PartWholeBlock(nn.Module):
    def __init__(self, o):
        super().__init__()
        self.units = nn.ModuleList(PartWholeUnit(o) for _ in range(o["levels"] - 1))

    def forward(self, levels):
        out = list(levels)
        for n, unit in enumerate(self.units):
            bu, td = unit.updates(levels[n], levels[n + 1])
            out[n] = out[n] + bu
            out[n + 1] = out[n + 1] + td
        return out


class PartWholeTransformer(nn.Module):
    def __init__(self, o):
        super().__init__()
        self.blocks = nn.ModuleList(PartWholeBlock(o) for _ in range(o["pwt_blocks"]))

    def forward(self, levels):
        for b in self.blocks:
            levels = b(levels)
        return levels


class ProjectionHead(nn.Module):
    def __init__(self, dim, projection_dim):
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(dim, dim), nn.Linear(dim, projection_dim)

    def forward(self, x):
        return self.fc2(F.relu(self.fc1(x)))


class MartModel(nn.Module):
    def __init__(self, o):
        super().__init__()
        self.o = o
        self.encoder = FcnEncoder(o)
        if o["use_pwt"]:
            self.pwt = PartWholeTransformer(o)
        self.head = ProjectionHead(o["dim"], o["projection_dim"])

    def split_levels(self, per_clip):
        out, first = [], 0
        for n in range(self.o["levels"]):
            k = self.o["parts"] ** n
            out.append(per_clip[:, first:first + k])
            first += k
        return out

    def part_whole(self, tilde):
        return self.pwt(tilde) if self.o["use_pwt"] else tilde

    def embed(self, h):
        b, c, f, t = h.shape
        tilde = self.split_levels(self.encoder(h.reshape(b * c, 1, f, t)).view(b, c, -1))
        return tilde, self.part_whole(tilde)


def hierarchical_contrastive_loss(z_hat, z_tilde0, parts, tau, use_hcl=True):
    """Eqs. (3)-(6) in log space; mean over the batch (one rank)."""
    z = [F.normalize(x, dim=-1) for x in z_hat]
    b = z[0].shape[0]
    anchor, t = z[0].reshape(b, -1), F.normalize(z_tilde0, dim=-1)
    pos = (anchor * t).sum(-1) / tau
    to_tilde = anchor @ t.t() / tau
    to_hat = (anchor @ anchor.t() / tau).masked_fill(torch.eye(b, dtype=torch.bool), -math.inf)
    if use_hcl and len(z) > 1:
        terms = []
        for i in range(len(z) - 1):
            k = z[i].shape[1]
            sim = (z[i].unsqueeze(2) * z[i + 1].view(b, k, parts, -1)).sum(-1)
            terms.append((sim / tau + math.log(1.0 / parts)).reshape(b, -1))
        log_pw = torch.logsumexp(torch.cat(terms, 1), 1)
        num = torch.logaddexp(log_pw, pos)
        den = torch.logsumexp(torch.cat([log_pw.unsqueeze(1), to_tilde, to_hat], 1), 1)
    else:
        num, den = pos, torch.logsumexp(torch.cat([to_tilde, to_hat], 1), 1)
    return (den - num).mean()


def check_export(args):
    o = options(args)
    model = MartModel(o)
    state = torch.load(args.weights)
    model.load_state_dict(state, strict=True)  # every name and shape, or an error
    model.eval()
    ref = torch.load(args.reference)
    with torch.no_grad():
        tilde, hat = model.embed(ref["input"])
        worst = 0.0
        for n in range(o["levels"]):
            for name, mine in (("tilde", tilde[n]), ("hat", hat[n]), ("z_hat", model.head(hat[n]))):
                theirs = ref[f"{name}.{n}"]
                worst = max(worst, (mine - theirs).abs().max().item())
    print(f"check-export: {len(state)} tensors loaded strictly, max |python - c++| = {worst:.3g}")
    return 0 if worst < 1e-4 else 1


def current_rss_mib():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize() / 1048576.0


def peak_rss_mib():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def bench(args):
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    o = options(args)
    model = MartModel(o)
    opt = torch.optim.Adam(model.parameters(), lr=3e-4, weight_decay=1e-6)
    b, c = args.batch, sum(o["parts"] ** n for n in range(o["levels"]))
    view_a = torch.randn(b, 1, o["n_mels"], o["frames"])
    view_b = torch.randn(b, c, o["n_mels"], o["frames"])
    rss_after_init = current_rss_mib()  # model, optimizer and inputs allocated
    times = {"encoder": [], "transformer": [], "loss": [], "optimizer": [], "total": []}

    def step():
        t0 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        # Forward in three stages cut by detach, so each stage's backward is timed on its own.
        enc = model.encoder(torch.cat([view_a, view_b.reshape(b * c, 1, o["n_mels"], o["frames"])]))
        cut1 = enc.detach().requires_grad_(True)
        t1 = time.perf_counter()
        tilde0 = cut1[:b]
        hat = model.part_whole(model.split_levels(cut1[b:].view(b, c, -1)))
        z = [model.head(tilde0)] + [model.head(h) for h in hat]
        cuts = [x.detach().requires_grad_(True) for x in z]
        t2 = time.perf_counter()
        loss = hierarchical_contrastive_loss(cuts[1:], cuts[0], o["parts"], o["tau"])
        loss.backward()
        t3 = time.perf_counter()
        torch.autograd.backward(z, [x.grad for x in cuts])
        t4 = time.perf_counter()
        enc.backward(cut1.grad)
        t5 = time.perf_counter()
        opt.step()
        t6 = time.perf_counter()
        return dict(encoder=(t1 - t0) + (t5 - t4), transformer=(t2 - t1) + (t4 - t3),
                    loss=t3 - t2, optimizer=t6 - t5, total=t6 - t0)

    for r in range(args.warmup + args.reps):
        t = step()
        if r >= args.warmup:
            for k in times:
                times[k].append(t[k])
    params = {"total": sum(p.numel() for p in model.parameters()),
              "encoder": sum(p.numel() for p in model.encoder.parameters()),
              "transformer": sum(p.numel() for p in model.pwt.parameters()) if o["use_pwt"] else 0,
              "head": sum(p.numel() for p in model.head.parameters())}
    print(json.dumps({"impl": "python", "batch": b, "median_s": {k: sorted(v)[len(v) // 2] for k, v in times.items()},
                      "peak_rss_mib": peak_rss_mib(), "rss_after_init_mib": rss_after_init, "params": params}))
    return 0


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("mode", choices=["check-export", "bench"])
    p.add_argument("--levels", type=int, default=4)
    p.add_argument("--parts", type=int, default=2)
    p.add_argument("--small", action="store_true", help="ModelOptions::small()")
    p.add_argument("--weights")
    p.add_argument("--reference")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--n-mels", type=int, default=0)
    p.add_argument("--frames", type=int, default=0)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--reps", type=int, default=3)
    args = p.parse_args()
    return check_export(args) if args.mode == "check-export" else bench(args)


if __name__ == "__main__":
    sys.exit(main())
