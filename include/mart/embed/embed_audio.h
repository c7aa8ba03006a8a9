#pragma once
// mart-embed: embeddings straight from audio files of any length, HEAR-style: a scene embedding
// per file and timestamped embeddings per level. A file is decoded and resampled to the features
// of the checkpoint's training data, its whole-track log-mels are computed exactly as
// mart-preprocess computes them, and crop hierarchies are cut from them with the shards' crop
// rule (data::crop_source), so a crop here is the crop mart-eval sees, up to the float16 rounding
// of the shards. No torch in this header.
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "mart/app/stage.h"
#include "mart/core/config.h"
#include "mart/features/features.h"
#include "mart/model/options.h"

namespace mart::embed {

// ---- Geometry (pure) --------------------------------------------------------------------------

// Which top-clip starts (in top-level hops; start k covers samples [k hop_0, k hop_0 + L0)) embed
// a track of `samples` samples. Every `step` hops (step = T: non-overlapping crops), plus one
// last crop at the last valid start when the tail is not covered yet, so the whole file is
// covered (its start is on the hop_0 grid, so up to hop_0 - 1 samples at the very end can stay
// outside). A track shorter than one top clip must be zero-padded to L0 first: it has one crop.
std::vector<int64_t> cover_starts(const features::FeatureConfig& f, int64_t samples, int64_t step);

// Centre of clip `clip` of `level` in the crop that starts at top-level hop k, in ms:
// (k hop_0 + (clip + 0.5) L_level) / sample_rate * 1000.
double clip_center_ms(const features::FeatureConfig& f, int64_t k, int level, int64_t clip);

// The top-level hops between crop starts for a requested hop in ms: 0 means non-overlapping
// (T hops); otherwise the nearest whole number of hops, at least 1.
int64_t crop_step(const features::FeatureConfig& f, double hop_ms);

// Cuts the crop hierarchy of top-level hop `start`, [clips_total, n_mels, T] (level 0's clip first,
// then level 1's M clips in time order, ...), out of whole-track log-mels `mels` (one
// [frames, n_mels] row-major matrix per data::stored_levels(features), as
// audio::TrackLogMels::compute returns them).
void cut_crop(const features::FeatureConfig& features, const std::vector<std::vector<float>>& mels, int64_t start,
              float* out);

// ---- One file ---------------------------------------------------------------------------------

struct FileEmbedding {
  std::string path;
  double duration_s = 0;  // decoded length at the feature sample rate, before any padding
  bool padded = false;    // shorter than one top clip: zero-padded at the end to L0 samples
  int64_t crops = 0;
  std::vector<float> scene;                      // [dim]: mean over crops of level 0 (s^0 after the PWT)
  std::vector<std::vector<float>> level;         // [level][rows * dim]
  std::vector<std::vector<double>> timestamp_ms;  // [level][rows], ascending
};

// The model of a checkpoint, applied to whole files. One object per thread.
class AudioEmbedder {
 public:
  // `step`: top-level hops between crop starts (crop_step); `batch_crops`: crops per forward.
  // A file's crops are batched in order, so its floats do not depend on which rank embeds it.
  AudioEmbedder(const std::string& checkpoint_dir, const model::ModelOptions& model_options,
                const features::FeatureConfig& features, int64_t step, int64_t batch_crops);
  ~AudioEmbedder();
  AudioEmbedder(const AudioEmbedder&) = delete;
  AudioEmbedder& operator=(const AudioEmbedder&) = delete;

  int64_t dim() const;
  // Decodes (audio::decode_mono; throws audio::DecodeError naming the file and the reason) and
  // embeds. Silent files are embedded, not refused: an embedding tool answers for any sound.
  FileEmbedding embed_file(const std::string& path);
  // A mono signal already at the feature sample rate.
  FileEmbedding embed_samples(std::vector<float> x, const std::string& path);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// ---- Inputs and outputs -----------------------------------------------------------------------

// The files to embed, in a fixed order: `input` (an audio file, or a folder searched recursively
// for wav, flac, ogg, oga, opus, mp3, au, aif, aiff, sorted by path) then the lines of
// `input_list` (one path per line; relative paths are relative to the list's folder; blank lines
// and lines starting with '#' are skipped). Throws ConfigError naming the path when `input` does
// not exist, a folder holds no audio, or the list cannot be read or is empty.
std::vector<std::string> list_inputs(const std::string& input, const std::string& input_list);

// A NumPy .npy file (format 1.0, little-endian float32 '<f4' or float64 '<f8', C order).
void write_npy(const std::string& path, const std::vector<float>& values, const std::vector<int64_t>& shape);
void write_npy(const std::string& path, const std::vector<double>& values, const std::vector<int64_t>& shape);

// ---- The stage --------------------------------------------------------------------------------

void declare_embed_options(Config& config);
void check_embed_options(const Config& config);  // inputs, checkpoint and its features: before any work
int run_embed(app::StageContext& ctx);

}  // namespace mart::embed
