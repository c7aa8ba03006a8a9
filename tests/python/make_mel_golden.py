#!/usr/bin/python3
"""Golden log-mel values from torchaudio for tests/audio/test_logmel.cpp.

Run with Debian's python3 (python3-torchaudio):
    /usr/bin/python3 tests/python/make_mel_golden.py --out tests/audio/data/mel_golden.bin
    /usr/bin/python3 tests/python/make_mel_golden.py --out build/mel_golden_full.bin --full

Reference: torchaudio.transforms.MelSpectrogram(sample_rate, n_fft, hop_length=hop, f_min,
f_max, n_mels, power=2, center=True, pad_mode="reflect", onesided=True, norm=None,
mel_scale="htk") then log(mel + 1e-6), i.e. MART's log-mel.

File layout (little endian):
  b"MELG", u32 version=1, u32 n_signals, u32 n_cases
  per signal: i64 n, f32[n]
  per case:   u32 signal, i32 sample_rate, i32 n_fft, i32 hop, i32 n_mels, f64 f_min, f64 f_max,
              f64 log_eps, i64 frames, f32[frames * n_mels] (row-major [frames, n_mels])
Exit code 3 when torch/torchaudio are missing, so the C++ test can skip naming the package.
"""
import argparse
import struct
import sys

try:
    import numpy as np
    import torch
    import torchaudio
except ImportError as e:  # the caller turns this into GTEST_SKIP
    print(f"missing package: {e.name} (install python3-torchaudio)", file=sys.stderr)
    sys.exit(3)

LOG_EPS = 1e-6


def signals(full):
    rng = np.random.default_rng(1234)
    n, sr = 4096, 22050
    t = np.arange(n) / sr
    chirp = 0.5 * np.sin(2 * np.pi * (100 * t + 0.5 * 8000 / t[-1] * t * t))
    out = [(chirp + 0.05 * rng.standard_normal(n)).astype(np.float32)]
    if full:
        sines = sum(a * np.sin(2 * np.pi * f * t + p) for a, f, p in
                    [(0.4, 440.0, 0.1), (0.2, 1234.5, 1.0), (0.1, 5000.0, 2.0)])
        out.append(sines.astype(np.float32))
        clicks = 1e-4 * rng.standard_normal(5000)
        clicks[::997] = 0.9  # mostly near-silent: exercises the region where eps dominates
        out.append(clicks.astype(np.float32))
    return out


def cases(full, n_signals):
    """(signal, sample_rate, n_fft, hop, n_mels, f_min, f_max): MART's 4 levels, both policies."""
    hops = [1024, 512, 256, 128]
    c = []
    for s in range(n_signals):
        for hop in hops:  # fixed: the paper's 256-point window at every level
            c.append((s, 22050, 256, hop, 128, 0.0, 11025.0))
        for hop in hops:  # scaled: n_fft = max(256, 2 * hop)
            if max(256, 2 * hop) != 256:
                c.append((s, 22050, max(256, 2 * hop), hop, 128, 0.0, 11025.0))
    if full:  # another rate, band and mel count: the filterbank formula, not just one table
        c.append((0, 16000, 512, 160, 96, 30.0, 7000.0))
    return c


def logmel(x, sr, n_fft, hop, n_mels, f_min, f_max):
    mel = torchaudio.transforms.MelSpectrogram(
        sample_rate=sr, n_fft=n_fft, hop_length=hop, f_min=f_min, f_max=f_max, n_mels=n_mels,
        power=2.0, center=True, pad_mode="reflect", onesided=True, norm=None, mel_scale="htk")
    m = mel(torch.from_numpy(x))  # [n_mels, frames]
    return torch.log(m + LOG_EPS).T.contiguous().numpy().astype(np.float32)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--full", action="store_true", help="more signals and configurations")
    a = ap.parse_args()
    torch.set_num_threads(1)
    sig = signals(a.full)
    cs = cases(a.full, len(sig))
    with open(a.out, "wb") as f:
        f.write(b"MELG" + struct.pack("<III", 1, len(sig), len(cs)))
        for x in sig:
            f.write(struct.pack("<q", x.size) + x.tobytes())
        for s, sr, n_fft, hop, n_mels, f_min, f_max in cs:
            y = logmel(sig[s], sr, n_fft, hop, n_mels, f_min, f_max)
            f.write(struct.pack("<Iiiiidddq", s, sr, n_fft, hop, n_mels, f_min,
                                f_max, LOG_EPS, y.shape[0]))
            f.write(y.tobytes())
    print(f"wrote {a.out}: {len(sig)} signals, {len(cs)} cases")


if __name__ == "__main__":
    main()
