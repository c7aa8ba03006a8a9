#!/usr/bin/python3
"""torchaudio doing what mart-bench-audio's C++ side does, on the same files, one thread.

Called by mart-bench-audio; prints "key seconds" lines (best of --repeat):
  decode_s         torchaudio.load + mean over channels + torchaudio.functional.resample
  augment_s        the same (track, view) parameters as the C++ run: polarity, noise, gain,
                   high/low-pass biquad, delay, pitch (sox "pitch" + "rate", as CLMR)
  logmel_fixed_s   MelSpectrogram + log at MART's 4 levels, n_fft 256 (the paper)
  logmel_scaled_s  the same with n_fft = max(256, 2 * hop)
  logmel_finest_s  the finest level only
"""
import argparse
import sys
import time

import torch
import torchaudio
import torchaudio.functional as F

RATE = 22050
HOPS = [1024, 512, 256, 128]


def best(repeat, fn):
    t = 1e30
    for _ in range(repeat):
        t0 = time.process_time()  # CPU seconds, as the C++ side measures them
        fn()
        t = min(t, time.process_time() - t0)
    return t


def decode(path):
    x, sr = torchaudio.load(path)
    x = x.mean(0, keepdim=True)
    return F.resample(x, sr, RATE) if sr != RATE else x


def augment(x, p):
    polarity, noise, gain_db, filt, cutoff, delay_ms, cents = p
    if polarity:
        x = -x
    if noise > 0:
        x = x + noise * x.std() * torch.randn_like(x)
    if gain_db != 0:
        x = F.gain(x, gain_db)
    if filt == 1:
        x = F.highpass_biquad(x, RATE, cutoff)
    elif filt == 2:
        x = F.lowpass_biquad(x, RATE, cutoff)
    if delay_ms > 0:
        off = delay_ms * RATE // 1000
        d = torch.zeros_like(x)
        d[:, off:] = x[:, :-off]
        x = (x + 0.5 * d) / 2
    if cents != 0:
        n = x.shape[1]
        x, _ = torchaudio.sox_effects.apply_effects_tensor(
            x, RATE, [["pitch", f"{cents:.10g}"], ["rate", str(RATE)]])
        x = x[:, :n] if x.shape[1] >= n else torch.nn.functional.pad(x, (0, n - x.shape[1]))
    return x


def mels(n_ffts):
    return [torchaudio.transforms.MelSpectrogram(
        sample_rate=RATE, n_fft=nf, hop_length=h, n_mels=128, power=2.0, center=True,
        pad_mode="reflect", norm=None, mel_scale="htk") for nf, h in n_ffts]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--files", required=True)
    ap.add_argument("--params", required=True)
    ap.add_argument("--repeat", type=int, default=3)
    a = ap.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    files = [l.strip() for l in open(a.files) if l.strip()]
    params = []
    for line in open(a.params):
        t, v, pol, noise, gain, filt, cut, delay, cents = line.split()
        params.append((int(t), (int(pol), float(noise), float(gain), int(filt), float(cut),
                                int(delay), float(cents))))

    tracks = [decode(f) for f in files]  # warm-up, and the tracks for the next stages
    out = {"decode_s": best(a.repeat, lambda: [decode(f) for f in files])}
    out["augment_s"] = best(a.repeat, lambda: [augment(tracks[t], p) for t, p in params])
    with torch.no_grad():
        for key, cfg in [("logmel_fixed_s", [(256, h) for h in HOPS]),
                         ("logmel_scaled_s", [(max(256, 2 * h), h) for h in HOPS]),
                         ("logmel_finest_s", [(256, HOPS[-1])])]:
            ms = mels(cfg)
            run = lambda: [torch.log(m(x) + 1e-6) for x in tracks for m in ms]
            run()  # warm-up
            out[key] = best(a.repeat, run)
    for k, v in out.items():
        print(f"{k} {v:.6f}")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
