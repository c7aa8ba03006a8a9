"""MART embeddings through the HEAR 2021 API (https://hearbenchmark.com/hear-api.html).

    import mart_hear
    model = mart_hear.load_model("run")                    # a mart-train run or checkpoint folder
    scene = mart_hear.get_scene_embeddings(audio, model)  # audio: [n_sounds, n_samples] at model.sample_rate
    emb, ts = mart_hear.get_timestamp_embeddings(audio, model)

What mart-embed computes, in torch: the checkpoint's log-mel (centered STFT with a periodic Hann
window, HTK mel filterbank without normalisation, log(mel + eps)) on the whole sound, the crop
hierarchies cut from it by the shards' crop rule (non-overlapping top clips plus one end-aligned
crop, a sound shorter than one top clip zero-padded to it), the model's embeddings after the
part-whole transformer (s^ of every level), the scene embedding as the mean of level 0 over crops.
Timestamp embeddings are those of one level (default: the finest, the densest in time), ordered
by time, with the centre of each clip in milliseconds.

Needs only python3-torch (Debian's /usr/bin/python3). The weights come from the checkpoint's
model.pt (a LibTorch archive, read with torch.jit.load) or from the run's model_state_dict.pt
(mart::model::export_state_dict); the model options from model.ini and the features from
state.json of the same checkpoint.
"""
import configparser
import glob
import json
import math
import os

import torch

from .model import MartModel

__all__ = ["load_model", "get_scene_embeddings", "get_timestamp_embeddings", "MartHear", "Features"]


class Features:
    """mart::features::FeatureConfig: the feature parameters and the sizes derived from them."""

    KEYS = ("sample_rate", "clip_samples", "levels", "parts", "frames", "n_fft", "n_mels", "f_min", "f_max",
            "log_eps", "window")

    def __init__(self, d):
        for k in self.KEYS:
            if k not in d:
                raise ValueError(f"features lack '{k}'")
            setattr(self, k, d[k])
        if self.window not in ("fixed", "scaled"):
            raise ValueError(f"unknown window policy '{self.window}'")

    def clips_at(self, level):
        return self.parts ** level

    def clips_total(self):
        return sum(self.clips_at(n) for n in range(self.levels))

    def level_samples(self, level):
        return self.clip_samples // self.clips_at(level)

    def hop(self, level):
        return self.level_samples(level) // self.frames

    def n_fft_at(self, level):
        return self.n_fft if self.window == "fixed" else max(self.n_fft, 2 * self.hop(level))

    def f_max_or_nyquist(self):
        return self.f_max if self.f_max > 0 else self.sample_rate / 2.0

    def stored_levels(self):
        # With the fixed window every level is the finest taken every M^(N-1-n) frames.
        return [self.levels - 1] if self.window == "fixed" else list(range(self.levels))


def mel_filterbank(sample_rate, n_fft, n_mels, f_min, f_max):
    """[n_freqs, n_mels]: torchaudio's melscale_fbanks(mel_scale="htk", norm=None), in float64 then float32."""
    n_freqs = n_fft // 2 + 1
    top = float(sample_rate // 2)  # integer division, as torchaudio
    freqs = torch.linspace(0, top, n_freqs, dtype=torch.float64) if n_freqs > 1 else torch.zeros(1, dtype=torch.float64)
    to_mel = lambda f: 2595.0 * math.log10(1.0 + f / 700.0)
    mels = torch.linspace(to_mel(f_min), to_mel(f_max), n_mels + 2, dtype=torch.float64)
    pts = 700.0 * (torch.pow(10.0, mels / 2595.0) - 1.0)
    down = (freqs[:, None] - pts[None, :-2]) / (pts[1:-1] - pts[:-2])[None, :]
    up = (pts[None, 2:] - freqs[:, None]) / (pts[2:] - pts[1:-1])[None, :]
    return torch.clamp(torch.minimum(down, up), min=0.0).to(torch.float32)


class LogMel(torch.nn.Module):
    """mart::audio::LogMel: [batch, n] -> [batch, frames, n_mels], frames = 1 + n // hop."""

    def __init__(self, f, level):
        super().__init__()
        self.n_fft, self.hop, self.eps = f.n_fft_at(level), f.hop(level), f.log_eps
        self.register_buffer("window", torch.hann_window(self.n_fft, periodic=True, dtype=torch.float32))
        self.register_buffer("fb", mel_filterbank(f.sample_rate, self.n_fft, f.n_mels, f.f_min, f.f_max_or_nyquist()))

    def forward(self, x):
        spec = torch.stft(x, self.n_fft, hop_length=self.hop, win_length=self.n_fft, window=self.window,
                          center=True, pad_mode="reflect", onesided=True, return_complex=True)
        power = spec.real.square() + spec.imag.square()  # [batch, n_freqs, frames]
        return torch.log(power.transpose(1, 2) @ self.fb + self.eps)


def cover_starts(f, samples, step):
    """mart::eval::cover_starts: top-clip starts (in top-level hops) that cover a sound."""
    valid = None
    for level in f.stored_levels():
        frames = 1 + samples // f.hop(level)
        per_top = f.clips_at(level)
        span = per_top * f.frames
        v = 0 if frames < span else (frames - span) // per_top + 1
        valid = v if valid is None else min(valid, v)
    if valid <= 0:
        raise ValueError(f"a sound of {samples} samples is shorter than one top clip ({f.clip_samples})")
    starts = list(range(0, valid, step))
    if starts[-1] != valid - 1:
        starts.append(valid - 1)  # the end-aligned crop: the tail gets an embedding too
    return starts


def crop_index(f, level, stored):
    """Source frame of every (clip, t) of `level` in crop 0 of stored level `stored` (data::crop_source);
    crop k adds k * M^stored."""
    per_clip = f.level_samples(level) // f.hop(stored)
    per_t = f.hop(level) // f.hop(stored)
    clips = torch.arange(f.clips_at(level))[:, None]
    t = torch.arange(f.frames)[None, :]
    return clips * per_clip + t * per_t  # [M^level, T]


class MartHear(torch.nn.Module):
    """A MART checkpoint behind the HEAR API. Attributes: sample_rate, scene_embedding_size,
    timestamp_embedding_size, features (Features), timestamp_level, options (the model's)."""

    def __init__(self, options, features, state_dict, timestamp_level=None, hop_ms=0.0, batch_crops=4):
        super().__init__()
        self.features, self.options = features, options
        self.model = MartModel(options)
        self.model.load_state_dict(state_dict, strict=True)
        self.model.eval()  # BatchNorm on running statistics
        f = features
        self.mels = torch.nn.ModuleList(LogMel(f, level) for level in f.stored_levels())
        self.sample_rate = f.sample_rate
        self.scene_embedding_size = options["dim"]
        self.timestamp_embedding_size = options["dim"]
        self.timestamp_level = f.levels - 1 if timestamp_level is None else int(timestamp_level)
        if not 0 <= self.timestamp_level < f.levels:
            raise ValueError(f"timestamp_level {timestamp_level} outside [0, {f.levels})")
        # Crop step in top-level hops (mart::eval::crop_step): 0 ms means non-overlapping crops.
        hop0 = f.hop(0)
        self.step = f.frames if hop_ms <= 0 else max(1, round(hop_ms / 1000.0 * f.sample_rate / hop0))
        self.batch_crops = batch_crops

    def crops(self, mels, starts):
        """[n_sounds, n_crops, clips_total, n_mels, T] from whole-sound log-mels (one per stored level)."""
        f = self.features
        stored = f.stored_levels()
        k = torch.tensor(starts)
        out = []
        for level in range(f.levels):
            src = stored.index(f.levels - 1 if f.window == "fixed" else level)
            idx = k[:, None, None] * f.clips_at(stored[src]) + crop_index(f, level, stored[src])  # [crops, M^l, T]
            m = mels[src]  # [n_sounds, frames, n_mels]
            g = m[:, idx.reshape(-1), :].reshape(m.shape[0], len(starts), f.clips_at(level), f.frames, f.n_mels)
            out.append(g.transpose(3, 4))  # a clip is [n_mels, T]
        return torch.cat(out, dim=2)

    def embed(self, audio):
        """Every level's embeddings [n_sounds, crops * M^l, D] (crop order), the crop starts, padded flag."""
        f = self.features
        if audio.dim() != 2:
            raise ValueError(f"audio must be [n_sounds, n_samples], got shape {tuple(audio.shape)}")
        x = audio.to(torch.float32)
        padded = x.shape[1] < f.clip_samples
        if padded:
            x = torch.nn.functional.pad(x, (0, f.clip_samples - x.shape[1]))
        starts = [0] if padded else cover_starts(f, x.shape[1], self.step)
        with torch.no_grad():
            mels = [m(x) for m in self.mels]
            crops = self.crops(mels, starts)  # [n_sounds, n_crops, clips_total, n_mels, T]
            levels = [[] for _ in range(f.levels)]
            for s in range(crops.shape[0]):  # a sound's crops in batches, in order, as mart-embed
                for b0 in range(0, len(starts), self.batch_crops):
                    _, hat = self.model.embed(crops[s, b0:b0 + self.batch_crops])
                    for n in range(f.levels):
                        levels[n].append(hat[n])
            n_sounds = crops.shape[0]
            per_level = [torch.cat(levels[n]).reshape(n_sounds, -1, self.options["dim"]) for n in range(f.levels)]
        return per_level, starts

    def timestamps_ms(self, starts, level):
        f = self.features
        return [(k * f.hop(0) + (c + 0.5) * f.level_samples(level)) / f.sample_rate * 1000.0
                for k in starts for c in range(f.clips_at(level))]


def _newest_checkpoint(path):
    if os.path.exists(os.path.join(path, "COMPLETE")):
        return path
    steps = [d for d in glob.glob(os.path.join(path, "checkpoints", "step-*"))
             if ".tmp" not in d and os.path.exists(os.path.join(d, "COMPLETE"))]
    if not steps:
        raise FileNotFoundError(f"'{path}' is neither a complete checkpoint folder nor a mart-train run with one: "
                                "give a run folder of mart-train or one of its checkpoints/step-N folders")
    return max(steps, key=lambda d: int(os.path.basename(d)[5:]))


def _model_options(ini_path, features):
    ini = configparser.ConfigParser()
    if not ini.read(ini_path):
        raise FileNotFoundError(f"no model.ini in the checkpoint: {ini_path}")
    m = ini["model"]
    ints = lambda s: [int(v) for v in s.split(",") if v.strip()]
    floats = lambda s: [float(v) for v in s.split(",") if v.strip()]
    # This module computes eqs. 1-2 as printed (double residual, parallel updates); a checkpoint
    # trained with another reading would embed differently, so it is refused rather than guessed.
    for key, literal in (("pwt_residual", "double"), ("pwt_order", "parallel")):
        if m.get(key, literal).strip() != literal:
            raise NotImplementedError(f"{ini_path}: model.{key} = {m[key].strip()} is not implemented in mart_hear "
                                      f"(only {literal}); use mart-embed for this checkpoint")
    return dict(levels=features.levels, parts=features.parts, n_mels=features.n_mels, frames=features.frames,
                channels=ints(m["fcn_channels"]), dim=int(m["dim"]), pwt_blocks=int(m["pwt_blocks"]),
                heads=int(m["heads"]), head_dim=int(m["head_dim"]), ff_dim=int(m["ff_dim"]),
                lambdas=floats(m.get("lambdas", "")), projection_dim=int(m["projection_dim"]),
                use_pwt=m.get("use_pwt", "true").strip().lower() in ("true", "1", "yes", "on"))


def _state_dict(ckpt, path):
    """The checkpoint's weights by name: its model.pt (LibTorch archive) or, failing that, the run's
    exported model_state_dict.pt when it belongs to this checkpoint (the run's newest)."""
    try:
        archive = torch.jit.load(os.path.join(ckpt, "model.pt"), map_location="cpu")
        return {k: v.clone() for k, v in archive.state_dict().items()}
    except (RuntimeError, ValueError, OSError):
        exported = os.path.join(path, "model_state_dict.pt")
        if os.path.exists(exported) and _newest_checkpoint(path) == ckpt:
            return torch.load(exported, map_location="cpu")
        raise


def load_model(model_file_path="", timestamp_level=None, hop_ms=0.0, batch_crops=4):
    """HEAR: the model of a mart-train run folder (its newest complete checkpoint) or of one
    checkpoint folder. `timestamp_level`: the level whose clips are the timestamp embeddings
    (default the finest); `hop_ms`: hop between crops as mart-embed's embed.hop_ms (0: none overlap)."""
    if not model_file_path:
        raise ValueError("give the folder of a mart-train run or checkpoint")
    ckpt = _newest_checkpoint(model_file_path)
    with open(os.path.join(ckpt, "state.json")) as fh:
        state = json.load(fh)
    if "features" not in state:
        raise ValueError(f"checkpoint '{ckpt}' predates stored features: its training data's features are unknown")
    features = Features(state["features"])
    options = _model_options(os.path.join(ckpt, "model.ini"), features)
    return MartHear(options, features, _state_dict(ckpt, model_file_path), timestamp_level, hop_ms, batch_crops)


def get_scene_embeddings(audio, model):
    """HEAR: [n_sounds, n_samples] at model.sample_rate -> [n_sounds, scene_embedding_size]: the mean
    over crops of level 0 (what mart-embed writes as `scene`)."""
    levels, _ = model.embed(audio)
    return levels[0].to(torch.float64).mean(dim=1).to(torch.float32)


def get_timestamp_embeddings(audio, model):
    """HEAR: [n_sounds, n_samples] -> ([n_sounds, n_timestamps, timestamp_embedding_size],
    [n_sounds, n_timestamps] in ms): the clips of model.timestamp_level ordered by their centres."""
    levels, starts = model.embed(audio)
    level = model.timestamp_level
    ts = torch.tensor(model.timestamps_ms(starts, level), dtype=torch.float64)
    order = torch.sort(ts, stable=True).indices  # the end-aligned crop overlaps the one before it
    emb = levels[level][:, order]
    return emb, ts[order].to(torch.float32).expand(emb.shape[0], -1).contiguous()
