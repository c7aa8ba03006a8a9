#include "mart/embed/embed_audio.h"

#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <numeric>

#include "mart/audio/decode.h"
#include "mart/audio/logmel.h"
#include "mart/core/error.h"
#include "mart/data/shard.h"
#include "mart/model/mart_model.h"
#include "mart/run/checkpoint_info.h"

namespace mart::embed {

// ---- Geometry ---------------------------------------------------------------------------------

std::vector<int64_t> cover_starts(const features::FeatureConfig& f, int64_t samples, int64_t step) {
  MART_CHECK(step >= 1, "crop step must be at least one top-level hop, got ", step);
  std::vector<int64_t> frames;
  for (int level : data::stored_levels(f)) frames.push_back(data::track_frames(f, level, samples));
  const int64_t valid = data::valid_top_starts(f, frames);
  MART_CHECK(valid > 0, "a track of ", samples, " samples is shorter than one top clip (", f.clip_samples,
             "): pad it first");
  std::vector<int64_t> starts;
  for (int64_t k = 0; k < valid; k += step) starts.push_back(k);
  // The last valid start reaches the end of the track (to within one top-level hop): without it
  // the tail after the last regular crop would have no embedding.
  if (starts.back() != valid - 1) starts.push_back(valid - 1);
  return starts;
}

double clip_center_ms(const features::FeatureConfig& f, int64_t k, int level, int64_t clip) {
  const double sample = static_cast<double>(k * f.hop(0)) + (static_cast<double>(clip) + 0.5) * static_cast<double>(f.level_samples(level));
  return sample / f.sample_rate * 1000.0;
}

int64_t crop_step(const features::FeatureConfig& f, double hop_ms) {
  if (hop_ms <= 0) return f.frames;  // a top clip spans T top-level hops
  const double hops = hop_ms / 1000.0 * f.sample_rate / static_cast<double>(f.hop(0));
  return std::max<int64_t>(1, std::llround(hops));
}

void cut_crop(const features::FeatureConfig& f, const std::vector<std::vector<float>>& mels, int64_t k, float* out) {
  const std::vector<int> stored = data::stored_levels(f);
  MART_CHECK(mels.size() == stored.size(), "expected the log-mels of ", stored.size(), " stored levels, got ", mels.size());
  const int64_t T = f.frames, F = f.n_mels;
  float* clip_out = out;
  for (int level = 0; level < f.levels; ++level) {
    for (int64_t clip = 0; clip < f.clips_at(level); ++clip, clip_out += F * T) {
      for (int64_t t = 0; t < T; ++t) {
        const data::CropSource src = data::crop_source(f, k, level, clip, t);
        const size_t i = static_cast<size_t>(std::find(stored.begin(), stored.end(), src.stored_level) - stored.begin());
        MART_CHECK(i < stored.size() && (src.frame + 1) * F <= static_cast<int64_t>(mels[i].size()),
                   "crop start ", k, " reads frame ", src.frame, " of level ", src.stored_level, " outside the track");
        // The track is [frames, n_mels] (a shard's layout); a clip is [n_mels, T] (the model's input).
        const float* row = mels[i].data() + src.frame * F;
        for (int64_t m = 0; m < F; ++m) clip_out[m * T + t] = row[m];
      }
    }
  }
}

// ---- One file ---------------------------------------------------------------------------------

struct AudioEmbedder::Impl {
  Impl(const std::string& ckpt, const model::ModelOptions& m, const features::FeatureConfig& feat, int64_t st, int64_t b)
      // Seed 1: every parameter is overwritten by the checkpoint; the seed only fixes the order of things.
      : f(feat), step(st), batch(b), model(model::inference_model(m, ckpt, 1)), mels(feat) {}
  features::FeatureConfig f;
  int64_t step, batch;
  model::MartModel model;
  audio::TrackLogMels mels;  // exactly mart-preprocess's log-mels
};

AudioEmbedder::AudioEmbedder(const std::string& checkpoint_dir, const model::ModelOptions& m,
                             const features::FeatureConfig& f, int64_t step, int64_t batch_crops)
    : impl_(std::make_unique<Impl>(checkpoint_dir, m, f, step, batch_crops)) {
  MART_CHECK(step >= 1 && batch_crops >= 1, "crop step and batch must be positive");
}
AudioEmbedder::~AudioEmbedder() = default;

int64_t AudioEmbedder::dim() const { return impl_->model->options.dim; }

FileEmbedding AudioEmbedder::embed_file(const std::string& path) {
  audio::DecodeOptions d;
  d.target_rate = impl_->f.sample_rate;
  d.reject_silent = false;
  return embed_samples(audio::decode_mono(path, d), path);
}

FileEmbedding AudioEmbedder::embed_samples(std::vector<float> x, const std::string& path) {
  const features::FeatureConfig& f = impl_->f;
  const int64_t D = dim(), hier = f.clips_total() * f.n_mels * f.frames;
  if (x.empty()) throw audio::DecodeError(audio::DecodeFailure::empty, path, "no samples");
  FileEmbedding r;
  r.path = path;
  r.duration_s = static_cast<double>(x.size()) / f.sample_rate;
  if (static_cast<int64_t>(x.size()) < f.clip_samples) {
    r.padded = true;
    x.resize(static_cast<size_t>(f.clip_samples), 0.0f);
  }
  const std::vector<std::vector<float>> mels = impl_->mels.compute(x);
  const std::vector<int64_t> starts =
      r.padded ? std::vector<int64_t>{0} : cover_starts(f, static_cast<int64_t>(x.size()), impl_->step);
  const int64_t n = static_cast<int64_t>(starts.size());
  r.crops = n;
  r.level.assign(static_cast<size_t>(f.levels), {});
  r.timestamp_ms.assign(static_cast<size_t>(f.levels), {});
  for (int l = 0; l < f.levels; ++l) {
    r.level[static_cast<size_t>(l)].resize(static_cast<size_t>(n * f.clips_at(l) * D));
    for (int64_t k : starts)
      for (int64_t c = 0; c < f.clips_at(l); ++c) r.timestamp_ms[static_cast<size_t>(l)].push_back(clip_center_ms(f, k, l, c));
  }
  // Batches of a file's crops in order: the same batches whatever rank embeds the file.
  std::vector<float> buf;
  torch::NoGradGuard no_grad;
  for (int64_t b0 = 0; b0 < n; b0 += impl_->batch) {
    const int64_t nb = std::min(impl_->batch, n - b0);
    buf.resize(static_cast<size_t>(nb * hier));
    for (int64_t i = 0; i < nb; ++i) cut_crop(f, mels, starts[static_cast<size_t>(b0 + i)], buf.data() + i * hier);
    const auto x_t = torch::from_blob(buf.data(), {nb, f.clips_total(), f.n_mels, f.frames});
    const model::Embeddings e = impl_->model->embed(x_t);
    for (int l = 0; l < f.levels; ++l) {
      const auto hat = e.hat[static_cast<size_t>(l)].contiguous();  // [nb, M^l, D], clips in time order
      std::copy(hat.data_ptr<float>(), hat.data_ptr<float>() + hat.numel(),
                r.level[static_cast<size_t>(l)].begin() + b0 * f.clips_at(l) * D);
    }
  }
  // The scene: the mean over crops of s^0, as mart-eval's track embedding.
  r.scene.resize(static_cast<size_t>(D));
  for (int64_t d = 0; d < D; ++d) {
    double s = 0;
    for (int64_t c = 0; c < n; ++c) s += r.level[0][static_cast<size_t>(c * D + d)];
    r.scene[static_cast<size_t>(d)] = static_cast<float>(s / static_cast<double>(n));
  }
  // The end-aligned crop overlaps the one before it: order every level's rows by time (stable,
  // so equal times keep crop order). Level 0 is in order already.
  for (size_t l = 1; l < r.level.size(); ++l) {
    auto& ts = r.timestamp_ms[l];
    if (std::is_sorted(ts.begin(), ts.end())) continue;
    std::vector<size_t> order(ts.size());
    std::iota(order.begin(), order.end(), size_t{0});
    std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) { return ts[a] < ts[b]; });
    std::vector<float> e(r.level[l].size());
    std::vector<double> t(ts.size());
    for (size_t i = 0; i < order.size(); ++i) {
      t[i] = ts[order[i]];
      std::copy_n(r.level[l].begin() + static_cast<std::ptrdiff_t>(order[i] * static_cast<size_t>(D)), D,
                  e.begin() + static_cast<std::ptrdiff_t>(i * static_cast<size_t>(D)));
    }
    r.level[l] = std::move(e);
    ts = std::move(t);
  }
  return r;
}

}  // namespace mart::embed
