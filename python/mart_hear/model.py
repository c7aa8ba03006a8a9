"""MART in PyTorch: the architecture of src/model, parameter for parameter, so that a state dict
written by mart::model::export_state_dict loads with strict=True. mart_hear embeds with it;
bench/model/mart_step.py checks the export and times training steps with it.

The options `o` are a dict: levels, parts, n_mels, frames, channels (the FCN's), dim, pwt_blocks,
heads, head_dim, ff_dim, projection_dim, use_pwt and lambdas (one per level; empty: all 1).
"""
import math

import torch
import torch.nn as nn
import torch.nn.functional as F


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
    def __init__(self, o, whole_level=0):
        super().__init__()
        self.m = o["parts"]
        lambdas = o.get("lambdas") or []
        self.lambda_whole = lambdas[whole_level] if lambdas else 1.0
        self.lambda_part = lambdas[whole_level + 1] if lambdas else 1.0
        self.bottom_up = CrossAttentionLayer(o["dim"], o["heads"], o["head_dim"], o["ff_dim"])
        self.top_down = CrossAttentionLayer(o["dim"], o["heads"], o["head_dim"], o["ff_dim"], single_key=True)

    def updates(self, wholes, parts):  # eqs. (1)-(2), scaled by lambda_n
        b, k, d = wholes.shape
        w, p = wholes.reshape(b * k, 1, d), parts.reshape(b * k, self.m, d)
        return (self.lambda_whole * self.bottom_up(w, p).reshape_as(wholes),
                self.lambda_part * self.top_down(p, w).reshape_as(parts))


class PartWholeBlock(nn.Module):
    def __init__(self, o):
        super().__init__()
        self.units = nn.ModuleList(PartWholeUnit(o, n) for n in range(o["levels"] - 1))

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
