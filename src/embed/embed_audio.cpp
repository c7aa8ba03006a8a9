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

std::vector<int64_t> cover_starts(const features::FeatureConfig& features, int64_t samples, int64_t step) {
  MART_CHECK(step >= 1, "crop step must be at least one top-level hop, got ", step);
  std::vector<int64_t> frames;
  for (int level : data::stored_levels(features)) frames.push_back(data::track_frames(features, level, samples));
  const int64_t valid = data::valid_top_starts(features, frames);
  MART_CHECK(valid > 0, "a track of ", samples, " samples is shorter than one top clip (", features.clip_samples,
             "): pad it first");
  std::vector<int64_t> starts;
  for (int64_t start = 0; start < valid; start += step) starts.push_back(start);
  // The last valid start reaches the end of the track (to within one top-level hop): without it
  // the tail after the last regular crop would have no embedding.
  if (starts.back() != valid - 1) starts.push_back(valid - 1);
  return starts;
}

double clip_center_ms(const features::FeatureConfig& f, int64_t k, int level, int64_t clip) {
  const double sample = static_cast<double>(k * f.hop(0)) +
                        (static_cast<double>(clip) + 0.5) * static_cast<double>(f.level_samples(level));
  return sample / f.sample_rate * 1000.0;
}

int64_t crop_step(const features::FeatureConfig& f, double hop_ms) {
  if (hop_ms <= 0) return f.frames;  // a top clip spans T top-level hops
  const double hops = hop_ms / 1000.0 * f.sample_rate / static_cast<double>(f.hop(0));
  return std::max<int64_t>(1, std::llround(hops));
}

void cut_crop(const features::FeatureConfig& features, const std::vector<std::vector<float>>& mels, int64_t start,
              float* out) {
  const std::vector<int> stored = data::stored_levels(features);
  MART_CHECK(mels.size() == stored.size(), "expected the log-mels of ", stored.size(), " stored levels, got ",
             mels.size());
  const int64_t frames = features.frames, n_mels = features.n_mels;
  float* clip_out = out;
  for (int level = 0; level < features.levels; ++level) {
    for (int64_t clip = 0; clip < features.clips_at(level); ++clip, clip_out += n_mels * frames) {
      for (int64_t frame = 0; frame < frames; ++frame) {
        const data::CropSource src = data::crop_source(features, start, level, clip, frame);
        const auto stored_at = static_cast<size_t>(std::find(stored.begin(), stored.end(), src.stored_level) -
                                                   stored.begin());
        MART_CHECK(
            stored_at < stored.size() && (src.frame + 1) * n_mels <= static_cast<int64_t>(mels[stored_at].size()),
            "crop start ", start, " reads frame ", src.frame, " of level ", src.stored_level, " outside the track");
        // The track is [frames, n_mels] (a shard's layout); a clip is [n_mels, T] (the model's input).
        const float* row = mels[stored_at].data() + src.frame * n_mels;
        for (int64_t mel = 0; mel < n_mels; ++mel) clip_out[mel * frames + frame] = row[mel];
      }
    }
  }
}

// ---- One file ---------------------------------------------------------------------------------

struct AudioEmbedder::Impl {
  Impl(const std::string& checkpoint_dir, const model::ModelOptions& model_options,
       const features::FeatureConfig& feature_config, int64_t crop_step, int64_t batch_crops)
      // Seed 1: every parameter is overwritten by the checkpoint; the seed only fixes the order of things.
      : features(feature_config),
        step(crop_step),
        batch(batch_crops),
        model(model::inference_model(model_options, checkpoint_dir, 1)),
        mels(feature_config) {}
  features::FeatureConfig features;
  int64_t step, batch;
  model::MartModel model;
  audio::TrackLogMels mels;  // exactly mart-preprocess's log-mels
};

AudioEmbedder::AudioEmbedder(const std::string& checkpoint_dir, const model::ModelOptions& model_options,
                             const features::FeatureConfig& features, int64_t step, int64_t batch_crops)
    : impl_(std::make_unique<Impl>(checkpoint_dir, model_options, features, step, batch_crops)) {
  MART_CHECK(step >= 1 && batch_crops >= 1, "crop step and batch must be positive");
}
AudioEmbedder::~AudioEmbedder() = default;

int64_t AudioEmbedder::dim() const { return impl_->model->options.dim; }

FileEmbedding AudioEmbedder::embed_file(const std::string& path) {
  audio::DecodeOptions decode;
  decode.target_rate = impl_->features.sample_rate;
  decode.reject_silent = false;
  return embed_samples(audio::decode_mono(path, decode), path);
}

namespace {

// The scene embedding: the mean over the crops of s^0 (level 0's rows, [crops, width]), as
// mart-eval's track embedding.
std::vector<float> scene_of(const std::vector<float>& level0, int64_t crops, int64_t width) {
  std::vector<float> scene(static_cast<size_t>(width));
  for (int64_t component = 0; component < width; ++component) {
    double sum = 0;
    for (int64_t crop = 0; crop < crops; ++crop) sum += level0[static_cast<size_t>(crop * width + component)];
    scene[static_cast<size_t>(component)] = static_cast<float>(sum / static_cast<double>(crops));
  }
  return scene;
}

// The end-aligned crop overlaps the one before it: orders every level's rows ([rows, width]) by
// time (stable, so equal times keep crop order). Level 0 is in order already.
void order_rows_by_time(FileEmbedding* embedding, int64_t width) {
  const auto row = static_cast<size_t>(width);
  for (size_t level = 1; level < embedding->level.size(); ++level) {
    auto& times = embedding->timestamp_ms[level];
    if (std::is_sorted(times.begin(), times.end())) continue;
    std::vector<size_t> order(times.size());
    std::iota(order.begin(), order.end(), size_t{0});
    std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) { return times[a] < times[b]; });
    const std::vector<float>& rows = embedding->level[level];
    std::vector<float> sorted_rows(rows.size());
    std::vector<double> sorted_times(times.size());
    for (size_t index = 0; index < order.size(); ++index) {
      sorted_times[index] = times[order[index]];
      std::copy_n(rows.begin() + static_cast<std::ptrdiff_t>(order[index] * row), width,
                  sorted_rows.begin() + static_cast<std::ptrdiff_t>(index * row));
    }
    embedding->level[level] = std::move(sorted_rows);
    times = std::move(sorted_times);
  }
}

}  // namespace

FileEmbedding AudioEmbedder::embed_samples(std::vector<float> samples, const std::string& path) {
  const features::FeatureConfig& features = impl_->features;
  const int64_t width = dim(), hier = features.clips_total() * features.n_mels * features.frames;
  if (samples.empty()) throw audio::DecodeError(audio::DecodeFailure::empty, path, "no samples");
  FileEmbedding result;
  result.path = path;
  result.duration_s = static_cast<double>(samples.size()) / features.sample_rate;
  if (static_cast<int64_t>(samples.size()) < features.clip_samples) {
    result.padded = true;
    samples.resize(static_cast<size_t>(features.clip_samples), 0.0f);
  }
  const std::vector<std::vector<float>> mels = impl_->mels.compute(samples);
  const std::vector<int64_t> starts = result.padded
                                         ? std::vector<int64_t>{0}
                                         : cover_starts(features, static_cast<int64_t>(samples.size()), impl_->step);
  const int64_t crops = static_cast<int64_t>(starts.size());
  result.crops = crops;
  result.level.assign(static_cast<size_t>(features.levels), {});
  result.timestamp_ms.assign(static_cast<size_t>(features.levels), {});
  for (int level = 0; level < features.levels; ++level) {
    const auto level_index = static_cast<size_t>(level);
    result.level[level_index].resize(static_cast<size_t>(crops * features.clips_at(level) * width));
    for (int64_t start : starts)
      for (int64_t clip = 0; clip < features.clips_at(level); ++clip)
        result.timestamp_ms[level_index].push_back(clip_center_ms(features, start, level, clip));
  }
  // Batches of a file's crops in order: the same batches whatever rank embeds the file.
  std::vector<float> buf;
  torch::NoGradGuard no_grad;
  for (int64_t first = 0; first < crops; first += impl_->batch) {
    const int64_t count = std::min(impl_->batch, crops - first);
    buf.resize(static_cast<size_t>(count * hier));
    for (int64_t i = 0; i < count; ++i)
      cut_crop(features, mels, starts[static_cast<size_t>(first + i)], buf.data() + i * hier);
    const auto batch = torch::from_blob(buf.data(), {count, features.clips_total(), features.n_mels, features.frames});
    const model::Embeddings embeddings = impl_->model->embed(batch);
    for (int level = 0; level < features.levels; ++level) {
      const auto level_index = static_cast<size_t>(level);
      const auto hat = embeddings.hat[level_index].contiguous();  // [count, M^level, width], clips in time order
      std::copy(hat.data_ptr<float>(), hat.data_ptr<float>() + hat.numel(),
                result.level[level_index].begin() + first * features.clips_at(level) * width);
    }
  }
  result.scene = scene_of(result.level[0], crops, width);
  order_rows_by_time(&result, width);
  return result;
}

}  // namespace mart::embed
