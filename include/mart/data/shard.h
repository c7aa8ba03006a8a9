#pragma once
// MART's shard: one HDF5 file per unit of tracks, holding the whole-track multi-level log-mels of
// the clean audio (view 0) and V augmented views, plus per-track metadata and labels. Crops are
// taken at read time. The layout is documented in docs/shards.md; in short:
//
//   /views/<v>/level_<n>/mel      float16 [total_frames_n, n_mels]  tracks concatenated
//   /views/<v>/level_<n>/offsets  int64   [tracks + 1]              track i = rows [o[i], o[i+1])
//   /tracks/{id,path,split}       utf-8   [tracks]
//   /tracks/{samples,duration}    int64 / float64 [tracks]
//   /labels/{tags [tracks, n_tags] uint8, tag_names, class int32, class_names, cover_group int64}
//   /cqt/data float32 [rows, bins], /cqt/offsets int64 [tracks + 1]   only with features.cqt:
//                    the clean audio's constant-Q magnitude, 20-frame means (audio/cqt.h)
//   attributes on /: format_version, every FeatureConfig parameter, feature_canonical,
//                    feature_hash, config_hash, track_count, complete
//
// Frame convention (torchaudio's center=True): frame f of level n is centred on sample f * hop_n
// of the track, and a track of S samples has 1 + S / hop_n frames at level n.
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "mart/core/error.h"
#include "mart/features/features.h"

namespace mart::data {

constexpr int64_t kShardFormatVersion = 1;

// Levels a shard stores: with the fixed window policy level n is the finest level taken every
// frame_stride(n) frames, so only the finest (N-1) is stored; with scaled every level is.
std::vector<int> stored_levels(const features::FeatureConfig& cfg);

// Frames of a whole track of `samples` samples at `level`: 1 + samples / hop_n (centered STFT).
int64_t track_frames(const features::FeatureConfig& cfg, int level, int64_t samples);

// Number of valid top-clip starts k = 0, 1, ..., K-1 for a track whose stored levels have
// `frames[i]` frames (i indexing stored_levels). Start k means the top clip S^0 covers samples
// [k * hop_0, k * hop_0 + L0). 0 when the track is shorter than one top clip: such tracks are
// never cropped (no padding); mart-preprocess reports them.
int64_t valid_top_starts(const features::FeatureConfig& cfg, const std::vector<int64_t>& frames);

// The crop rule, as a pure function: for top-clip start k, the frame of the stored source array
// that gives frame t of clip c at level n. The source is the finest level (fixed policy, taken
// every frame_stride(n) frames) or level n itself (scaled).
struct CropSource {
  int stored_level;  // which stored level to read
  int64_t frame;     // row in that level's whole-track array
};
CropSource crop_source(const features::FeatureConfig& cfg, int64_t k, int level, int64_t clip,
                       int64_t t);

// Names shared by all tracks of a run (and by every shard of it).
struct LabelSchema {
  std::vector<std::string> tag_names;    // multi-hot tags, in column order
  std::vector<std::string> class_names;  // single-label classes; class index c names class_names[c]
};

struct TrackMeta {
  std::string id;           // unique within the run
  std::string path;         // source audio file
  std::string split;        // "train", "valid", "test", or "" (no split)
  int64_t samples = 0;      // decoded length at the feature sample rate
  std::vector<uint8_t> tags;  // 0/1 per tag_names entry; empty = no tag
  int32_t class_index = -1;   // -1 = none
  int64_t cover_group = -1;   // work id of a cover set; -1 = none
  double duration_s(int sample_rate) const { return double(samples) / sample_rate; }
};

// One level's whole-track log-mel: `frames` rows of n_mels floats, row-major.
struct LevelMel {
  const float* data = nullptr;
  int64_t frames = 0;
};
// mels[view][i]: view 0..V, i indexing stored_levels(cfg).
using TrackMels = std::vector<std::vector<LevelMel>>;

// Writes one shard to "<path>.tmp" and renames it to `path` in finish(), so a killed job leaves
// only whole shards. Every mel chunk and metadata array carries HDF5's Fletcher-32 checksum, and
// the file's own metadata its checksums (the HDF5 1.10 format). A failed write throws OutputError. Tracks are appended to chunked, extendible datasets as they come: memory
// holds one track's conversion buffer and the (small) metadata, never the whole shard.
class ShardWriter {
 public:
  // checksum = false only to measure what the Fletcher-32 checksums cost (bench/data).
  ShardWriter(std::string path, const features::FeatureConfig& cfg, LabelSchema labels,
              uint64_t config_hash, bool checksum = true);
  ~ShardWriter();  // without finish(): closes and removes the temporary file
  ShardWriter(const ShardWriter&) = delete;
  ShardWriter& operator=(const ShardWriter&) = delete;

  // Checks the shapes (V+1 views, one entry per stored level, frames == track_frames(samples),
  // the same frames in every view: augmentations keep the length) and the labels; throws on a
  // mismatch before writing anything of the track.
  void add_track(const TrackMeta& meta, const TrackMels& mels);
  // Convenience: mels[view][i] holds frames * n_mels floats.
  void add_track(const TrackMeta& meta, const std::vector<std::vector<std::vector<float>>>& mels);
  // Stores a constant-Q block ([rows, bins] floats) per track beside the log-mels: call once,
  // before the first add_track; then every track needs one (add_cqt right after its add_track).
  // `about` ("bins=84;bins_per_octave=12;...") becomes the root attribute cqt_params.
  void store_cqt(int bins, const std::string& about);
  void add_cqt(const std::vector<float>& cqt);
  void finish();  // writes metadata and the completion mark, fsyncs, renames

  int64_t tracks() const;
  int64_t frames() const;  // finest-level frames of view 0, summed over tracks
  const std::string& path() const;
  std::string temp_path() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// A complete shard whose bytes changed after it was written: a chunk failed its Fletcher-32
// checksum or its metadata no longer parses. The message names the shard, the dataset and the
// track, and the fix (--preprocess.verify, --preprocess.resume).
class ShardDamaged : public ConfigError {
 public:
  using ConfigError::ConfigError;
};

// Per-track record as the reader exposes it.
struct ShardTrack {
  std::string id, path, split;
  int64_t samples = 0;
  double duration_s = 0;
  std::vector<uint8_t> tags;
  int32_t class_index = -1;
  int64_t cover_group = -1;
};

// Reads a complete shard. Thread-safe: every HDF5 call takes mart_data's global HDF5 lock.
class ShardReader {
 public:
  // Throws ConfigError (naming the file, the differing parameters and the fix) when the format
  // version or the feature config differs from `expected`, or the shard is incomplete.
  ShardReader(const std::string& path, const features::FeatureConfig& expected);
  ~ShardReader();
  ShardReader(ShardReader&&) noexcept;
  ShardReader& operator=(ShardReader&&) noexcept;

  // A finished, self-consistent mart shard of this format version (with `expected`'s features,
  // in the second form). Never throws: garbage, truncated and .tmp files answer false.
  static bool is_complete(const std::string& path);
  static bool is_complete(const std::string& path, const features::FeatureConfig& expected);
  // The feature parameters a shard was made with (for messages and inspection tools); checks the
  // format like the constructor, except for the expected features. Throws ConfigError.
  static features::FeatureConfig stored_features(const std::string& path);

  const std::string& path() const;
  const features::FeatureConfig& features() const;
  const LabelSchema& labels() const;
  uint64_t config_hash() const;  // of the preprocess run that wrote it

  int64_t num_tracks() const;
  const ShardTrack& track(int64_t i) const;
  int64_t frames(int64_t track, int level) const;  // whole-track frames of a stored level
  int64_t valid_starts(int64_t track) const;       // see valid_top_starts()

  // The crop hierarchy of top-clip start k (0 <= k < valid_starts) of `view`:
  // [clips_total, n_mels, T] floats, level 0's clip first, then level 1's M clips in time order...
  std::vector<float> crop(int64_t track, int64_t k, int view) const;
  void crop_into(int64_t track, int64_t k, int view, float* out) const;
  // Level 0's clip only, [n_mels, T]: the first n_mels * T floats of crop_into(), read alone.
  void top_clip_into(int64_t track, int64_t k, int view, float* out) const;
  // Reads every stored row of every view and level, so each chunk's Fletcher-32 checksum is
  // checked; throws ShardDamaged naming the first damaged dataset and track.
  void verify_all() const;
  // A stored level's whole-track log-mel, [frames, n_mels].
  std::vector<float> track_level(int64_t track, int view, int level) const;
  // The constant-Q bins stored with features.cqt (0: none), and a track's block, [rows, bins].
  int cqt_bins() const;
  std::vector<float> track_cqt(int64_t track) const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace mart::data
