#!/usr/bin/python3
"""MART in PyTorch: the architecture of src/model (python/mart_hear/model.py) and the loss of
src/loss, parameter for parameter.

Uses:
  check-export  load a state dict written by mart::model::export_state_dict (strict: every name and
                shape must match) and compare this model's embeddings with the C++ ones;
  bench         time training steps (forward, backward, Adam), split into encoder, part-whole
                transformer + head, and loss, printing one JSON line; mart-bench-model runs it
                next to the C++ step;
  throughput    samples/s of whole training steps on --device (cpu or cuda), fp32 or bf16 autocast,
                optionally channels-last and torch.compile (PyTorch 2.x): the fastest PyTorch a
                user would write, next to mart's in scripts/gpu-check.sh --bench;
  flops         the training FLOPs per sample of a preset, counted from the shapes.
Run with Debian's /usr/bin/python3 (python3-torch): the same LibTorch as the C++ build; on the GPU
node with its PyTorch 2.x.
"""
import argparse
import json
import math
import os
import resource
import sys
import time

import torch
import torch.nn.functional as F

# The architecture lives in python/mart_hear/model.py (the HEAR module embeds with it too).
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "python"))
from mart_hear.model import MartModel  # noqa: E402


def options(args):
    o = dict(levels=args.levels, parts=args.parts, n_mels=128, frames=128,
             channels=[128, 128, 256, 256, 256, 256, 512], pwt_blocks=3, heads=3, head_dim=64,
             ff_dim=2048, projection_dim=256, tau=0.5, use_pwt=True, use_hcl=True, pw_weight=0.2)
    preset = getattr(args, "preset", None)
    if args.small or preset == "small":  # ModelOptions::small() (mart-gpu-check's small: 3 levels)
        o.update(n_mels=32, frames=32, channels=[8, 8, 16, 16, 16, 16, 32], heads=2, head_dim=8,
                 ff_dim=64, projection_dim=16)
        if preset == "small":
            o.update(levels=3, n_mels=32, frames=32)
    if preset == "demo":  # configs/pretrain-demo.ini with configs/preprocess-demo.ini's features
        o.update(levels=3, n_mels=64, frames=32, channels=[16, 16, 32, 32, 32, 32, 64], heads=3, head_dim=16,
                 ff_dim=128, projection_dim=32)
    if getattr(args, "n_mels", None):
        o.update(n_mels=args.n_mels, frames=args.frames)
    o["dim"] = o["channels"][-1]
    return o


def hierarchical_contrastive_loss(z_hat, z_tilde0, parts, tau, use_hcl=True, pw_weight=None):
    """Eqs. (3)-(6) in log space; mean over the batch (one rank). pw_weight given: L_pw beside
    eq. 5 (model.pw_term = separate, mart's default), else inside it (the literal reading)."""
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
        if pw_weight is not None:
            wholes = sum(z[i].shape[1] for i in range(len(z) - 1))
            den = torch.logsumexp(torch.cat([to_tilde, to_hat], 1), 1)
            return (den - pos + pw_weight * (math.log(wholes) + 1.0 / tau - log_pw)).mean()
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
                      "peak_rss_mib": peak_rss_mib(), "rss_after_init_mib": rss_after_init, "params": params,
                      "minor_faults": resource.getrusage(resource.RUSAGE_SELF).ru_minflt}))
    return 0


def train_flops_per_sample(o):
    """Multiply-adds x 2 of one sample's forward (view A's top clip and view B's hierarchy through
    the encoder, the part-whole transformer, the head), x 3 for forward and backward. Counted from
    the shapes; the convolutions are almost all of it."""
    clips = sum(o["parts"] ** n for n in range(o["levels"]))
    h, w, cin, per_clip = o["n_mels"], o["frames"], 1, 0
    for cout in o["channels"]:
        per_clip += 2 * cin * cout * 9 * h * w
        h, w, cin = (h // 2 if h >= 2 else h), (w // 2 if w >= 2 else w), cout
    fwd = (1 + clips) * per_clip
    d, inner, ff, m = o["dim"], o["heads"] * o["head_dim"], o["ff_dim"], o["parts"]
    if o["use_pwt"]:
        for n in range(o["levels"] - 1):
            wholes = m ** n
            bottom_up = 2 * d * inner * (1 + 2 * m) + 4 * inner * m + 2 * inner * d + 4 * d * ff
            top_down = 2 * d * inner + 2 * inner * d + m * 4 * d * ff  # one key: value and output once
            fwd += o["pwt_blocks"] * wholes * (bottom_up + top_down)
    fwd += (1 + clips) * 2 * (d * d + d * o["projection_dim"])
    return 3 * fwd


def throughput(args):
    dev = torch.device(args.device)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    o = options(args)
    model = MartModel(o).to(dev)
    if args.channels_last:
        model = model.to(memory_format=torch.channels_last)
    model.train()
    opt = torch.optim.Adam(model.parameters(), lr=3e-4, weight_decay=1e-6)  # foreach on CUDA by default
    b, c, f, t = args.batch, sum(o["parts"] ** n for n in range(o["levels"])), o["n_mels"], o["frames"]
    view_a, view_b = torch.randn(b, 1, f, t, device=dev), torch.randn(b, c, f, t, device=dev)
    bf16 = args.precision == "bf16"

    def forward_loss(view_a, view_b):
        with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=bf16):
            x = torch.cat([view_a, view_b.reshape(b * c, 1, f, t)])
            if args.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            enc = model.encoder(x)
            hat = model.part_whole(model.split_levels(enc[b:].view(b, c, -1)))
            z_tilde0, z_hat = model.head(enc[:b]), [model.head(h) for h in hat]
        return hierarchical_contrastive_loss([z.float() for z in z_hat], z_tilde0.float(), o["parts"], o["tau"],
                                             pw_weight=o["pw_weight"])

    if args.compile:
        if not hasattr(torch, "compile"):
            print(json.dumps({"impl": "pytorch", "skipped": f"torch {torch.__version__} has no torch.compile"}))
            return 0
        forward_loss = torch.compile(forward_loss)

    def sync():
        if dev.type == "cuda":
            torch.cuda.synchronize()

    def step():
        opt.zero_grad(set_to_none=True)
        loss = forward_loss(view_a, view_b)
        loss.backward()
        opt.step()
        return loss

    for _ in range(args.warmup):
        step()
    sync()
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    per_step = []
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        for _ in range(args.steps):
            loss = step()
        sync()
        per_step.append((time.perf_counter() - t0) / args.steps)
    s = sorted(per_step)[len(per_step) // 2]
    out = {"impl": "pytorch", "device": str(dev), "torch": torch.__version__, "preset": args.preset, "batch": b,
           "precision": args.precision, "channels_last": args.channels_last, "compile": args.compile,
           "ms_per_step": 1e3 * s, "samples_per_s": b / s, "loss": float(loss),
           "train_flops_per_sample": train_flops_per_sample(o)}
    out["peak_rss_mib"] = peak_rss_mib()
    if dev.type == "cuda":
        out["peak_reserved_mib"] = torch.cuda.max_memory_reserved() / 1048576
    print(json.dumps(out))
    return 0 if math.isfinite(out["loss"]) else 1


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("mode", choices=["check-export", "bench", "throughput", "flops"])
    p.add_argument("--preset", choices=["paper", "demo", "small"], default=None)
    p.add_argument("--device", default="cpu")
    p.add_argument("--precision", choices=["fp32", "bf16"], default="fp32")
    p.add_argument("--channels-last", action="store_true")
    p.add_argument("--compile", action="store_true")
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--repeats", type=int, default=3)
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
    if args.mode == "flops":
        print(train_flops_per_sample(options(args)))
        return 0
    return {"check-export": check_export, "bench": bench, "throughput": throughput}[args.mode](args)


if __name__ == "__main__":
    sys.exit(main())
