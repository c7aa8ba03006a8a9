#!/usr/bin/env python3
"""Scaling model of MART's data-parallel step: predicted step time from 8 to 256 GPUs.

Standard library only; runs with any python3. Prints, for the paper model (46.9 M parameters,
FCN-7 over 1 + 15 clips of 128 x 128 per sample, N = 4, M = 2) and a per-GPU batch, the step
time from: per-GPU compute, the bucketed gradient all-reduce (overlapped with backward as
GradientReducer does it), the all-gathers of the embeddings with their reduce-scatter in
backward, and the B_local x B_global logits. Then, with --busbw-gbs, the same model for 2 and 4
MPI ranks on CPUs, to check it against measured CPU runs. docs/dist.md, "Scaling model", explains
every formula and number; nothing GPU-side here was measured.

  python3 bench/dist/scaling_model.py                        # defaults: H100 + 8x NDR 400 Gb/s
  python3 bench/dist/scaling_model.py --samples-per-s 700    # gpu-check (d) throughput, 1 GPU
  python3 bench/dist/scaling_model.py --net 1x200g           # one 200 Gb/s NIC per node
  python3 bench/dist/scaling_model.py --global-batch 3072    # fixed global batch (strong scaling)
  python3 bench/dist/scaling_model.py --busbw-gbs 1.1 --cpu-compute-ms 900 --cpu-batch 8  # + CPU check
"""
import argparse
import math
import sys

# ---------------------------------------------------------------------------------------------
# The model's shapes (include/mart/model/options.h defaults = the paper's), parameters in the
# order model->parameters() returns them (registration order), grouped in the chunks backward
# produces their gradients in.
# ---------------------------------------------------------------------------------------------

FCN_CHANNELS = [128, 128, 256, 256, 256, 256, 512]
DIM, PROJ, LEVELS, PARTS = 512, 256, 4, 2
HEADS, HEAD_DIM, FF_DIM, PWT_BLOCKS = 3, 64, 2048, 3
INNER = HEADS * HEAD_DIM  # 192


def clips_total():
    return sum(PARTS ** n for n in range(LEVELS))  # 1 + 2 + 4 + 8 = 15


def linear(name, i, o):
    return [(name + ".weight", i * o), (name + ".bias", o)]


def layer_params(prefix, single_key):
    p = []
    if not single_key:
        p += linear(prefix + ".query", DIM, INNER) + linear(prefix + ".key", DIM, INNER)
    p += linear(prefix + ".value", DIM, INNER) + linear(prefix + ".out", INNER, DIM)
    p += [(prefix + ".norm1.weight", DIM), (prefix + ".norm1.bias", DIM)]
    p += linear(prefix + ".ff1", DIM, FF_DIM) + linear(prefix + ".ff2", FF_DIM, DIM)
    p += [(prefix + ".norm2.weight", DIM), (prefix + ".norm2.bias", DIM)]
    return p


def parameters():
    """[(name, numel, chunk)] in registration order; chunk names the module whose backward
    produces the gradient."""
    out = []
    cin = 1
    for k, c in enumerate(FCN_CHANNELS):
        chunk = "enc%d" % k
        out += [(n, v, chunk) for n, v in
                [("encoder.blocks.%d.conv.weight" % k, c * cin * 9), ("encoder.blocks.%d.conv.bias" % k, c),
                 ("encoder.blocks.%d.bn.weight" % k, c), ("encoder.blocks.%d.bn.bias" % k, c)]]
        cin = c
    for b in range(PWT_BLOCKS):
        for u in range(LEVELS - 1):
            for kind, single in (("bottom_up", False), ("top_down", True)):
                prefix = "pwt.blocks.%d.units.%d.%s" % (b, u, kind)
                chunk = "pwt%d.%d.%s" % (b, u, kind)
                out += [(n, v, chunk) for n, v in layer_params(prefix, single)]
    out += [(n, v, "head") for n, v in linear("head.fc1", DIM, DIM) + linear("head.fc2", DIM, PROJ)]
    return out


def buckets(params, bucket_bytes, elem_bytes):
    """GradientReducer::build_buckets: reverse parameter order, a new bucket when the next
    parameter would pass bucket_bytes. Returns [[param index, ...], ...] in launch order."""
    out, size = [], 0
    for i in range(len(params) - 1, -1, -1):
        b = params[i][1] * elem_bytes
        if not out or size + b > bucket_bytes:
            out.append([])
            size = 0
        out[-1].append(i)
        size += b
    return out


# ---------------------------------------------------------------------------------------------
# Per-GPU compute: a roofline per part (FLOPs at an achieved rate, bytes at an achieved memory
# bandwidth, small kernels at a fixed cost each). Replaced by a measurement with --samples-per-s
# or --compute-ms (which rescale every part by one factor, keeping the shape backward overlap needs).
# ---------------------------------------------------------------------------------------------

# Bytes moved per element of a block's conv output by the memory-bound ops around each conv
# (a = bytes of an activation: 2 in bf16, 4 in fp32; max-pool indices are int64, one per 4
# elements = 2 bytes per element). Forward: conv write (1a), BatchNorm stats read + normalise
# read/write (3a), ReLU read/write (2a), max-pool read + write a/4 (1.25a) + indices (2).
# Backward: max-pool zero-fill + scatter write + read grad a/4 (2.25a) + indices (2), ReLU
# (3a), BatchNorm's two passes (5a). The convolutions' own traffic is in their FLOP time.
MEM_FWD_A, MEM_FWD_IDX = 7.25, 2.0
MEM_BWD_A, MEM_BWD_IDX = 10.25, 2.0

# Small kernels per step outside the encoder (counts read off the code, rounded): one
# CrossAttentionLayer forward is ~16 kernels (q/k/v/out, 2 bmm, div, softmax, a copy, 2 adds, 2
# LayerNorm, ff1, relu, ff2), a single-key one ~11; ~4 per update for lambda and the adds.
# Backward ~2x forward. Head: 5 applications x 3. Loss + diagnostics: ~80 forward, ~40 backward.
# Adam (LibTorch's torch::optim::Adam, one parameter tensor at a time, weight decay on): add,
# mul_, add_, mul_, addcmul_, sqrt, div, add_, addcdiv_ = 9 kernels and 23 float32 passes.
# Reducer: a copy per parameter in the hooks, a copy per parameter in write_back.
K_FULL_LAYER, K_SINGLE_LAYER, K_UPDATE = 16, 11, 4
K_HEAD_FWD = 15
K_LOSS_FWD, K_LOSS_BWD = 80, 40
K_ADAM_PER_PARAM = 9
ADAM_PASSES = 23


def encoder_blocks(n_mels, frames):
    """[(macs per clip, output elements per clip at conv resolution)] per block."""
    h, w, cin, out = n_mels, frames, 1, []
    for c in FCN_CHANNELS:
        out.append((h * w * cin * c * 9, h * w * c))
        h, w = (h // 2 if h >= 2 else h), (w // 2 if w >= 2 else w)  # fcn_max_pool
        cin = c
    return out


def pwt_layer_macs(unit_level, kind):
    """MACs per sample of one layer of the unit for level pair (n, n+1): wholes M^n, parts M^(n+1)."""
    wholes, parts = PARTS ** unit_level, PARTS ** (unit_level + 1)
    proj, ff = DIM * INNER, 2 * DIM * FF_DIM
    if kind == "bottom_up":  # Q = wholes, K = V = parts (softmax over M keys)
        return wholes * (2 * proj + ff) + parts * 2 * proj
    return wholes * 2 * proj + parts * ff  # top_down: out(value(whole)) per whole, FF per part


class Compute:
    """Per-GPU compute of one step at per-GPU batch b, in ms, split into the chunks backward
    runs in (so the reducer's buckets can be timed against it)."""

    def __init__(self, a, b):
        act = 2 if a.precision == "bf16" else 4
        rate = a.tflops * 1e12
        hbm = a.hbm_gbs * 1e9
        kern = a.kernel_us * 1e-3  # ms
        clips = b * (1 + clips_total())
        self.fwd, self.bwd = {}, {}  # chunk -> ms
        for k, (macs, elems) in enumerate(encoder_blocks(a.n_mels, a.frames)):
            conv = 2.0 * macs * clips / rate * 1e3
            mf = elems * clips * (MEM_FWD_A * act + MEM_FWD_IDX) / hbm * 1e3
            mb = elems * clips * (MEM_BWD_A * act + MEM_BWD_IDX) / hbm * 1e3
            # block 0's input needs no gradient: weight gradient only
            self.fwd["enc%d" % k] = conv + mf + 5 * kern
            self.bwd["enc%d" % k] = conv * (1 if k == 0 else 2) + mb + 10 * kern
        for blk in range(PWT_BLOCKS):
            for u in range(LEVELS - 1):
                for kind in ("bottom_up", "top_down"):
                    flops = 2.0 * pwt_layer_macs(u, kind) * b / rate * 1e3
                    k = (K_FULL_LAYER if kind == "bottom_up" else K_SINGLE_LAYER) + K_UPDATE
                    self.fwd["pwt%d.%d.%s" % (blk, u, kind)] = flops + k * kern
                    self.bwd["pwt%d.%d.%s" % (blk, u, kind)] = 2 * flops + 2 * k * kern
        head = 2.0 * (1 + clips_total()) * b * (DIM * DIM + DIM * PROJ) / rate * 1e3
        self.fwd["head"] = head + K_HEAD_FWD * kern
        self.bwd["head"] = 2 * head + 2 * K_HEAD_FWD * kern
        self.fwd["loss"] = K_LOSS_FWD * kern
        self.bwd["loss"] = K_LOSS_BWD * kern
        params = parameters()
        p_total = sum(p[1] for p in params)
        adam = sum(max(K_ADAM_PER_PARAM * kern, ADAM_PASSES * 4 * n / hbm * 1e3) for _, n, _ in params)
        reducer = max(2 * len(params) * kern, 6 * 4 * p_total / hbm * 1e3)
        self.opt = adam + reducer
        self.scale = 1.0
        # inputs copied from pageable host memory (trainer: from_blob(...).to(device)), float32
        self.h2d = (b * (1 + clips_total()) * a.n_mels * a.frames * 4 / (a.h2d_gbs * 1e9) * 1e3
                    if a.h2d_gbs > 0 else 0.0)

    def model_ms(self):  # what gpu-check's throughput times: forward, backward, Adam, reducer copies
        return self.scale * (sum(self.fwd.values()) + sum(self.bwd.values()) + self.opt)

    def total_ms(self):
        return self.model_ms() + self.h2d

    def backward_chunks(self):
        """[(chunk, ms)] in the order backward runs them: loss, head, PWT from the last block
        and unit back, encoder from the last block back to block 0."""
        order = ["loss", "head"]
        for blk in reversed(range(PWT_BLOCKS)):
            for u in reversed(range(LEVELS - 1)):
                order += ["pwt%d.%d.top_down" % (blk, u), "pwt%d.%d.bottom_up" % (blk, u)]
        order += ["enc%d" % k for k in reversed(range(len(FCN_CHANNELS)))]
        return [(c, self.scale * self.bwd[c]) for c in order]


def logits_ms(a, b_local, b_global):
    """The work that grows with the global batch, per rank: 2 matmuls [b, d] x [d, B] (anchor
    against the gathered z~0 and z^0) forward, 4 in backward (12 b B d FLOPs, float32 with
    autocast off: CUDA cores, no TF32), ~42 float32 passes over [b, B] (scale, self mask,
    masked_fill, cat, logsumexp, the diagnostics' masked_select/max; softmax and masks in
    backward), and ~20 passes over the gathered [B, d] (normalisation)."""
    d = PROJ
    flops = 12.0 * b_local * b_global * d
    bytes_ = 42 * 4.0 * b_local * b_global + 20 * 4.0 * b_global * d
    return flops / (a.fp32_tflops * 1e12) * 1e3 + bytes_ / (a.hbm_gbs * 1e9) * 1e3


# ---------------------------------------------------------------------------------------------
# NCCL collectives: the shape of NCCL's own cost model (src/graph/tuning.cc, ncclTopoTuneModel):
# time = latency(algorithm, protocol, ranks, nodes) + bytes / algorithm bandwidth, minimised
# over ring/tree and LL/LL128/Simple as NCCL's tuner does. Bus bandwidths are nccl-tests busbw.
# ---------------------------------------------------------------------------------------------

PROTOS = ("LL", "LL128", "Simple")
BASE_LAT = {"ring": (6.6, 14.0, 8.4), "tree": (6.8, 14.0, 8.4)}          # us
HW_LAT_NVLINK = {"ring": (0.6, 1.9, 3.4), "tree": (0.6, 1.25, 4.0)}     # us per step
HW_LAT_NET = {"ring": (2.7, 4.0, 14.0), "tree": (5.0, 8.5, 14.0)}       # us per step
NET_OVERHEAD_US = 1.0  # x3 for Simple (NCCL's default for x86 Intel hosts)
LL_MAX_BW_1NODE, LL_MAX_BW_2NODES, LL_MAX_BW_MORE = 141.0, 39.0, 20.4  # GB/s: Hopper / Intel hosts


def nccl_time_us(coll, nbytes, n, ppn, bus_intra, bus_inter):
    """coll: allreduce (nbytes = the buffer), allgather / reducescatter (nbytes = the gathered
    total, n x each rank's part). Returns (us, 'algo/proto')."""
    if n <= 1:
        return 0.0, "-"
    nodes = max(1, math.ceil(n / ppn))
    ppn = min(ppn, n)
    bus = bus_intra if nodes == 1 else min(bus_intra, bus_inter)
    ll_max = LL_MAX_BW_1NODE if nodes == 1 else LL_MAX_BW_2NODES if nodes == 2 else LL_MAX_BW_MORE
    ar = coll == "allreduce"
    nsteps = 2 * (n - 1) if ar else n - 1
    ninter = 0 if nodes == 1 else (2 * (nodes - 1) if ar else nodes - 1)
    best = (float("inf"), "")
    for algo in (("ring", "tree") if ar else ("ring",)):
        for pi, proto in enumerate(PROTOS):
            if algo == "ring":
                bw = {"LL": min(ll_max, 0.5 * bus), "LL128": 0.92 * bus, "Simple": bus}[proto]
                algbw = bw * n / nsteps
                intra = HW_LAT_NVLINK["ring"][pi]
                if nodes > 1:
                    intra = max(intra, NET_OVERHEAD_US * (3 if proto == "Simple" else 1))
                inter = HW_LAT_NET["tree" if ppn == 1 else "ring"][pi]
                lat = BASE_LAT["ring"][pi] + (nsteps - ninter) * intra + ninter * inter
            else:
                tree_bus = 0.92 * bus
                bw = {"LL": min(tree_bus / 3.8, ll_max),
                      "LL128": tree_bus * (7.0 / 9.0 if nodes == 1 else 120.0 / 128.0),
                      "Simple": tree_bus}[proto]
                algbw = 0.5 * bw
                log2n = int(math.floor(math.log2(nodes))) if nodes > 1 else 0
                lat = BASE_LAT["tree"][pi] + 2 * ((ppn - 1) * HW_LAT_NVLINK["tree"][pi]
                                                  + log2n * HW_LAT_NET["tree"][pi])
            t = lat + nbytes / (algbw * 1e9) * 1e6
            if t < best[0]:
                best = (t, algo + "/" + proto)
    return best


# ---------------------------------------------------------------------------------------------
# One step at n GPUs
# ---------------------------------------------------------------------------------------------

def step(a, n, b, comp, params, bucket_list, elem_bytes):
    ms = lambda us: us * 1e-3  # noqa: E731
    coll = lambda c, nbytes: ms(nccl_time_us(c, nbytes, n, a.gpus_per_node, a.intra_busbw, a.inter_busbw)[0])  # noqa: E731
    big = n * b
    emb_total = big * PROJ * 4  # one gathered [B, 256] float32 tensor
    # forward: 2 all-gathers (z~0, z^0) + the all-reduce of loss and diagnostics (~15 doubles);
    # backward: 2 reduce-scatters of [B, 256]. All block the compute stream: none is hidden.
    ag, rs, stats = coll("allgather", emb_total), coll("reducescatter", emb_total), coll("allreduce", 15 * 8)
    if a.fused_gather:  # one gather of [b, 512] (z~0 and z^0 side by side) and one reduce-scatter
        ag, rs = coll("allgather", 2 * emb_total) / 2, coll("reducescatter", 2 * emb_total) / 2
    gather = 2 * ag + 2 * rs + stats
    lg = logits_ms(a, b, big)
    # backward timeline: loss, the 2 reduce-scatters (compute waits), then the chunks; a bucket
    # is ready when its last gradient (in reverse order) is, and the buckets run one after
    # another on the communicator's one NCCL stream, in launch order.
    t, ready_at = 0.0, {}
    chunks = comp.backward_chunks()
    t += chunks[0][1] + lg * 0.5  # loss backward (about half of the logits work is backward)
    t += 2 * rs
    nccl_free = t
    for chunk, dur in chunks[1:]:
        t += dur
        ready_at[chunk] = t
    bwd_end = t
    comm_total, hidden, end = 0.0, 0.0, nccl_free
    for bk in bucket_list:
        nbytes = sum(params[i][1] for i in bk) * elem_bytes
        dur = coll("allreduce", nbytes)
        ready = max(ready_at[params[i][2]] for i in bk) if a.overlap else bwd_end
        start = max(ready, end)
        end = start + dur
        comm_total += dur
        hidden += max(0.0, min(end, bwd_end) - start)
    exposed = max(0.0, end - bwd_end)
    compute = comp.total_ms()
    total = compute + gather + lg + exposed + a.overlap_tax * hidden
    return {"n": n, "B": big, "compute": compute, "ar": comm_total, "exposed": exposed,
            "hidden": hidden, "gather": gather, "logits": lg, "step": total}


def build_compute(a, b):
    comp = Compute(a, b)
    if a.samples_per_s:  # gpu-check (d): 1 GPU, --measured-batch, no H2D copy, no comm
        ref = Compute(a, a.measured_batch)
        measured = a.measured_batch / a.samples_per_s * 1e3
        comp.scale = (measured - logits_ms(a, a.measured_batch, a.measured_batch)) / ref.model_ms()
    elif a.compute_ms:
        comp.scale = (a.compute_ms - comp.h2d) / comp.model_ms()
    return comp


def fmt_row(cols, widths):
    return " ".join(str(c).rjust(w) for c, w in zip(cols, widths))


def gpu_table(a):
    params = parameters()
    elem = 2 if a.grad_dtype == "bf16" else 4
    bl = buckets(params, int(a.bucket_mb * (1 << 20)), elem)
    grad_mb = sum(p[1] for p in params) * elem / 1e6
    ranks = [int(x) for x in a.gpus.split(",")]
    print("MART scaling model (nothing GPU-side measured: published figures and assumptions; docs/dist.md)")
    sizes = ["%.1f" % (sum(params[i][1] for i in bk) * elem / 1e6) for bk in bl]
    if len(sizes) > 12:
        sizes = sizes[:5] + ["..."] + sizes[-5:]
    print("model: %d parameters, %s gradients %.1f MB in %d buckets of <= %g MiB (launch order, MB): %s"
          % (sum(p[1] for p in params), a.grad_dtype, grad_mb, len(bl), a.bucket_mb, " ".join(sizes)))
    print("last bucket waits for: %s (backward's last gradient)" % params[bl[-1][-1]][2])
    print("network: NVLink busbw %g GB/s, inter-node busbw %g GB/s (%s), %d GPUs/node; overlap %s, overlap tax %g"
          % (a.intra_busbw, a.inter_busbw, a.net_desc, a.gpus_per_node, "on" if a.overlap else "off", a.overlap_tax))
    b0 = a.batch if not a.global_batch else None
    if b0:
        c = build_compute(a, b0)
        src = ("measured %g samples/s at batch %d" % (a.samples_per_s, a.measured_batch) if a.samples_per_s
               else "--compute-ms %g" % a.compute_ms if a.compute_ms
               else "estimate: %s, %g TFLOPS convs, %g GB/s HBM, %g us/small kernel" %
               (a.precision, a.tflops, a.hbm_gbs, a.kernel_us))
        enc_b = sum(v for k, v in c.backward_chunks() if k.startswith("enc"))
        print("compute per GPU at batch %d: %.1f ms = forward %.1f + backward %.1f (encoder %.1f) + Adam/reducer %.1f"
              " + input H2D %.1f  [%s]" % (b0, c.total_ms(), c.scale * sum(c.fwd.values()),
                                          c.scale * sum(c.bwd.values()), enc_b, c.scale * c.opt, c.h2d, src))
    print()
    head = ["GPUs", "global B", "compute", "grad AR", "exposed", "gather", "logits", "step ms", "eff", "samples/s"]
    w = [5, 8, 8, 8, 8, 7, 7, 8, 6, 10]
    print(fmt_row(head, w))
    rows = []
    for n in ranks:
        b = b0 if b0 else a.global_batch / n
        if not b0 and (b < 1 or b != int(b)):
            print(fmt_row([n, a.global_batch, "-", "-", "-", "-", "-", "-", "-", "-"], w) + "  (global batch does not split)")
            continue
        b = int(b)
        c = build_compute(a, b)
        r = step(a, n, b, c, params, bl, elem)
        if b0:  # weak scaling: the same per-GPU batch on one GPU, no communication
            r["eff"] = (c.total_ms() + logits_ms(a, b, b)) / r["step"]
        else:  # strong scaling: the whole global batch on one GPU (a model figure: memory aside)
            c1 = build_compute(a, a.global_batch)
            r["eff"] = (c1.total_ms() + logits_ms(a, a.global_batch, a.global_batch)) / (n * r["step"])
        rows.append(r)
        print(fmt_row([n, r["B"], "%.1f" % r["compute"], "%.2f" % r["ar"], "%.2f" % r["exposed"],
                       "%.2f" % r["gather"], "%.3f" % r["logits"], "%.1f" % r["step"],
                       "%.3f" % r["eff"], "%.0f" % (r["B"] / r["step"] * 1e3)], w))
    print("(ms per step; grad AR = all buckets' all-reduce time, exposed = what backward did not hide;"
          " gather = 2 all-gathers + 2 reduce-scatters of [B, 256] fp32 + the loss all-reduce;"
          " eff = %s)" % ("1-GPU step at the same batch / step" if b0 else "1-GPU step of the global batch / (GPUs x step)"))
    if b0:
        thresholds(a, b0, params, bl, elem)


def thresholds(a, b, params, bl, elem):
    """Smallest GPU count (a multiple of --gpus-per-node, per-GPU batch fixed) at which a term
    reaches --threshold of the step; the logits also in closed form (they are linear in B)."""
    c = build_compute(a, b)
    found = {}
    n = a.gpus_per_node
    while n <= a.max_gpus and len(found) < 3:
        r = step(a, n, b, c, params, bl, elem)
        for key in ("gather", "logits", "exposed"):
            if key not in found and r[key] >= a.threshold * r["step"]:
                found[key] = (n, r["B"], r[key], r["step"])
        n += a.gpus_per_node
    print()
    print("smallest GPU count (batch %d per GPU) where a term reaches %g%% of the step:" % (b, 100 * a.threshold))
    for key, what in (("exposed", "exposed gradient all-reduce"), ("gather", "embedding all-gather + reduce-scatter"),
                      ("logits", "B_local x B_global logits")):
        if key in found:
            n, big, v, s = found[key]
            print("  %-38s %6d GPUs, global batch %7d: %.2f of %.1f ms" % (what, n, big, v, s))
        else:
            print("  %-38s not up to %d GPUs" % (what, a.max_gpus))
    k = logits_ms(a, b, 1)  # ms per row of the global batch
    big = a.threshold * c.total_ms() / ((1 - a.threshold) * k)
    print("  logits against compute alone: %g%% at a global batch of %.0f (%.0f GPUs at b = %d)"
          % (100 * a.threshold, big, big / b, b))


def cpu_table(a):
    """MPI on CPUs (Open MPI over TCP or shared memory): the plain ring, t = 2(n-1)/n S/busbw +
    2(n-1) alpha per all-reduce, (n-1)/n S_total/busbw + (n-1) alpha per all-gather or
    reduce-scatter; no NCCL tuner."""
    params = parameters()
    grad_bytes = a.cpu_grad_mib * (1 << 20) if a.cpu_grad_mib else sum(p[1] for p in params) * 4
    nb = max(1, math.ceil(grad_bytes / (a.bucket_mb * (1 << 20))))
    sizes = [min(a.bucket_mb * (1 << 20), grad_bytes - i * a.bucket_mb * (1 << 20)) for i in range(nb)]
    busbw, alpha = a.busbw_gbs * 1e9, a.cpu_alpha_us * 1e-6
    print()
    print("CPU/MPI check: busbw %g GB/s, alpha %g us, compute %g ms per rank at batch %d per rank, gradients %.1f MB"
          " in %d buckets, overlap fraction %g of backward (%g of compute)"
          % (a.busbw_gbs, a.cpu_alpha_us, a.cpu_compute_ms, a.cpu_batch, grad_bytes / 1e6, nb,
             a.cpu_overlap, a.cpu_bwd_frac))
    head = ["ranks", "global B", "compute", "grad AR", "exposed", "gather", "comm", "step ms"]
    w = [5, 8, 8, 8, 8, 7, 7, 8]
    print(fmt_row(head, w))
    for n in (2, 4):
        ar = [(2.0 * (n - 1) / n * s / busbw + 2 * (n - 1) * alpha) * 1e3 for s in sizes]
        window = a.cpu_overlap * a.cpu_bwd_frac * a.cpu_compute_ms
        exposed = max(ar[-1], sum(ar) - window)
        total = n * a.cpu_batch * PROJ * 4.0
        one = ((n - 1.0) / n * total / busbw + (n - 1) * alpha) * 1e3
        gather = (4 * one + 2 * (n - 1) * alpha * 1e3) if a.cpu_gather else 0.0
        print(fmt_row([n, n * a.cpu_batch, "%.1f" % a.cpu_compute_ms, "%.1f" % sum(ar), "%.1f" % exposed,
                       "%.2f" % gather, "%.1f" % (exposed + gather), "%.1f" % (a.cpu_compute_ms + exposed + gather)], w))
    print("(comm = exposed + gather: what mart-train logs as 'comm ms' on CPUs, whose gather time also holds the"
          " wait for the slowest rank's forward; compare exposed with mart-bench-comm's 'exposed comm')")


NETS = {  # name: (NICs per node, achieved GB/s per NIC, description)
    "ndr8": (8, 45.0, "8 x 400 Gb/s NDR per node, 45 GB/s each"),
    "1x200g": (1, 20.0, "1 x 200 Gb/s per node, 20 GB/s"),
    "1x400g": (1, 45.0, "1 x 400 Gb/s per node, 45 GB/s"),
}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    g = p.add_argument_group("run")
    g.add_argument("--gpus", default="8,16,32,64,128,256", help="GPU counts (comma-separated)")
    g.add_argument("--gpus-per-node", type=int, default=8)
    g.add_argument("--batch", type=int, default=48, help="per-GPU batch (train.batch_size = batch x GPUs)")
    g.add_argument("--global-batch", type=int, default=0, help="fixed global batch instead (strong scaling)")
    g.add_argument("--n-mels", type=int, default=128)
    g.add_argument("--frames", type=int, default=128)
    g = p.add_argument_group("compute (per GPU)")
    g.add_argument("--samples-per-s", type=float, default=0, help="measured 1-GPU throughput (gpu-check (d)); overrides the estimate")
    g.add_argument("--measured-batch", type=int, default=48, help="the batch --samples-per-s was measured at")
    g.add_argument("--compute-ms", type=float, default=0, help="per-GPU step compute at --batch; overrides the estimate")
    g.add_argument("--precision", choices=("bf16", "fp32"), default="bf16", help="autocast (train.bf16) or fp32 (TF32 convs)")
    g.add_argument("--tflops", type=float, default=0, help="achieved conv TFLOPS (default 350 bf16, 175 TF32)")
    g.add_argument("--fp32-tflops", type=float, default=50.0, help="achieved fp32 (no TF32) matmul TFLOPS, for the logits")
    g.add_argument("--hbm-gbs", type=float, default=2700.0, help="achieved HBM GB/s for memory-bound kernels")
    g.add_argument("--kernel-us", type=float, default=3.0, help="cost of one small kernel (launch-bound), us")
    g.add_argument("--h2d-gbs", type=float, default=10.0, help="pageable host-to-device copy of the inputs, GB/s (0: off)")
    g = p.add_argument_group("communication")
    g.add_argument("--net", choices=sorted(NETS), default="ndr8", help="inter-node preset")
    g.add_argument("--nics-per-node", type=int, default=0)
    g.add_argument("--nic-gbs", type=float, default=0, help="achieved GB/s per NIC")
    g.add_argument("--intra-busbw", type=float, default=360.0, help="nccl-tests all_reduce busbw on one node, GB/s")
    g.add_argument("--grad-dtype", choices=("fp32", "bf16"), default="fp32")
    g.add_argument("--bucket-mb", type=float, default=25.0, help="train.bucket_mb (MiB)")
    g.add_argument("--no-overlap", dest="overlap", action="store_false", help="train.overlap = false")
    g.add_argument("--fused-gather", action="store_true",
                   help="one all-gather of [b, 512] instead of two of [b, 256] (not what run/step.cpp does)")
    g.add_argument("--overlap-tax", type=float, default=0.0,
                   help="compute lost per ms of communication hidden under backward (NCCL kernels share SMs/HBM)")
    g.add_argument("--threshold", type=float, default=0.05)
    g.add_argument("--max-gpus", type=int, default=16384)
    g = p.add_argument_group("CPU/MPI check (printed with --busbw-gbs)")
    g.add_argument("--busbw-gbs", type=float, default=0, help="measured all-reduce busbw (mart-bench-comm sweep)")
    g.add_argument("--cpu-alpha-us", type=float, default=30.0, help="per-step latency (small-message sweep time / 2(n-1))")
    g.add_argument("--cpu-compute-ms", type=float, default=0,
                   help="measured compute per step per rank, in the multi-rank run (step_s - comm_s of metrics.jsonl)")
    g.add_argument("--cpu-batch", type=int, default=8, help="per-rank batch")
    g.add_argument("--cpu-grad-mib", type=float, default=0,
                   help="gradient MiB, as mart-bench-comm prints it (default: the paper model's fp32 gradients)")
    g.add_argument("--cpu-bwd-frac", type=float, default=0.67, help="backward's share of compute")
    g.add_argument("--cpu-overlap", type=float, default=0.0, help="share of backward that hides the all-reduce (0: MPI without a progress thread)")
    g.add_argument("--cpu-gather", type=int, default=1, help="1: the step has the embedding gathers (mart-train), 0: not (mart-bench-comm)")
    a = p.parse_args(argv)
    if not a.tflops:
        a.tflops = 350.0 if a.precision == "bf16" else 175.0
    nics, nic, desc = NETS[a.net]
    if a.nics_per_node or a.nic_gbs:
        nics, nic = a.nics_per_node or nics, a.nic_gbs or nic
        desc = "%d NIC(s) x %g GB/s per node" % (nics, nic)
    a.inter_busbw = min(a.intra_busbw, nics * nic)
    a.net_desc = desc
    gpu_table(a)
    if a.busbw_gbs:
        if not a.cpu_compute_ms:
            p.error("--busbw-gbs needs --cpu-compute-ms (the measured compute per step per rank)")
        cpu_table(a)
    return 0


if __name__ == "__main__":
    sys.exit(main())
