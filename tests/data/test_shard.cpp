// Shards: write synthetic whole-track log-mels, read every crop back and compare with slices
// computed independently from sample positions; format and config checks; atomic finish.
#include <gtest/gtest.h>
#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <random>
#include <thread>

#include "mart/core/error.h"
#include "mart/data/h5.h"
#include "mart/data/half.h"
#include "mart/data/shard.h"

using namespace mart;
using namespace mart::data;
namespace fs = std::filesystem;

namespace {

// Small shapes: T = 4 frames, 8 mel bands, finest hop 16 samples.
features::FeatureConfig small_config(int levels, int parts, features::WindowPolicy window) {
  features::FeatureConfig c;
  c.sample_rate = 8000;
  c.levels = levels;
  c.parts = parts;
  c.frames = 4;
  c.n_fft = 32;
  c.n_mels = 8;
  c.window = window;
  c.views = 2;
  int64_t finest = 1;
  for (int i = 1; i < levels; ++i) finest *= parts;
  c.clip_samples = finest * c.frames * 16;
  c.validate();
  return c;
}

// One track's synthetic data: inputs[view][stored level index] = frames * n_mels floats.
struct SyntheticTrack {
  TrackMeta meta;
  std::vector<std::vector<std::vector<float>>> mels;
};

SyntheticTrack make_track(const features::FeatureConfig& c, int index, int64_t samples,
                          std::mt19937& rng) {
  std::normal_distribution<float> logmel(-5.0f, 3.0f);  // the range of log(mel + 1e-6)
  SyntheticTrack t;
  t.meta.id = "track-" + std::to_string(index);
  t.meta.path = "/music/" + std::to_string(index) + ".mp3";
  t.meta.split = index % 3 == 0 ? "train" : index % 3 == 1 ? "valid" : "test";
  t.meta.samples = samples;
  t.meta.tags = {uint8_t(index % 2), uint8_t((index / 2) % 2), 1};
  t.meta.class_index = index % 3 - 1;
  t.meta.cover_group = index == 2 ? -1 : 100 + index / 2;
  for (int v = 0; v <= c.views; ++v) {
    t.mels.emplace_back();
    for (int level : stored_levels(c)) {
      std::vector<float> m(static_cast<size_t>(track_frames(c, level, samples) * c.n_mels));
      for (float& x : m) x = logmel(rng);
      t.mels.back().push_back(std::move(m));
    }
  }
  return t;
}

// What the shard holds for a float: its nearest half.
float as_stored(float x) { return half_to_float(float_to_half(x)); }

// The crop computed from sample positions alone: frame t of clip c at level n sits at sample
// k * hop_0 + c * L_n + t * hop_n; the stored row is that sample over the source level's hop.
std::vector<float> expected_crop(const features::FeatureConfig& c, const SyntheticTrack& t,
                                 int64_t k, int view) {
  const std::vector<int> stored = stored_levels(c);
  std::vector<float> out;
  for (int n = 0; n < c.levels; ++n) {
    const size_t li = c.levels_share_frames() ? 0 : size_t(n);
    const int64_t src_hop = c.hop(stored[li]);
    for (int64_t clip = 0; clip < c.clips_at(n); ++clip)
      for (int m = 0; m < c.n_mels; ++m)
        for (int64_t f = 0; f < c.frames; ++f) {
          const int64_t sample = k * c.hop(0) + clip * c.level_samples(n) + f * c.hop(n);
          EXPECT_EQ(sample % src_hop, 0);
          const int64_t row = sample / src_hop;
          out.push_back(as_stored(t.mels[size_t(view)][li][size_t(row * c.n_mels + m)]));
        }
  }
  return out;
}

// Brute force: starts k while every frame of every clip lies inside the stored frames.
int64_t brute_force_starts(const features::FeatureConfig& c, int64_t samples) {
  int64_t k = 0;
  for (;; ++k) {
    for (int n = 0; n < c.levels; ++n) {
      const int src = c.levels_share_frames() ? c.levels - 1 : n;
      const int64_t last = k * c.hop(0) + c.clip_samples - c.hop(n);  // last frame's centre
      if (last / c.hop(src) >= track_frames(c, src, samples)) return k;
    }
  }
}

class TempDir {
 public:
  TempDir() {
    path_ = fs::temp_directory_path() /
            ("mart_test_shard_" + std::to_string(::getpid()) + "_" + std::to_string(counter_++));
    fs::create_directories(path_);
  }
  ~TempDir() { fs::remove_all(path_); }
  std::string file(const std::string& name) const { return (path_ / name).string(); }

 private:
  fs::path path_;
  static inline int counter_ = 0;
};

LabelSchema schema() { return {{"rock", "piano", "loud"}, {"blues", "jazz"}}; }

// Writes tracks of these lengths (in top clips) and returns them.
std::vector<SyntheticTrack> write_shard(const std::string& path, const features::FeatureConfig& c,
                                        const std::vector<double>& clips, uint64_t seed = 1) {
  std::mt19937 rng(static_cast<uint32_t>(seed));
  std::vector<SyntheticTrack> tracks;
  ShardWriter w(path, c, schema(), 0xabcdef0123456789ull);
  for (size_t i = 0; i < clips.size(); ++i) {
    tracks.push_back(make_track(c, int(i), int64_t(clips[i] * double(c.clip_samples)), rng));
    w.add_track(tracks.back().meta, tracks.back().mels);
  }
  w.finish();
  return tracks;
}

struct Shape {
  int levels, parts;
  features::WindowPolicy window;
};

class ShardShapes : public ::testing::TestWithParam<Shape> {};

}  // namespace

TEST(ShardLayout, StoredLevelsAndFrames) {
  const auto fixed = small_config(3, 2, features::WindowPolicy::fixed);
  const auto scaled = small_config(3, 2, features::WindowPolicy::scaled);
  EXPECT_EQ(stored_levels(fixed), std::vector<int>({2}));
  EXPECT_EQ(stored_levels(scaled), std::vector<int>({0, 1, 2}));
  EXPECT_EQ(track_frames(fixed, 2, 0), 1);
  EXPECT_EQ(track_frames(fixed, 2, 15), 1);   // centered frames: 1 + samples / hop
  EXPECT_EQ(track_frames(fixed, 2, 16), 2);
  EXPECT_EQ(track_frames(fixed, 0, 256), 5);  // hop_0 = 64
  // A track exactly one top clip long has exactly one start; one sample less has none... only
  // when the last frame's centre falls off the end.
  EXPECT_EQ(valid_top_starts(fixed, {track_frames(fixed, 2, 256)}), 1);
  EXPECT_EQ(valid_top_starts(fixed, {track_frames(fixed, 2, 256 - 16)}), 1);
  EXPECT_EQ(valid_top_starts(fixed, {track_frames(fixed, 2, 256 - 17)}), 0);
  EXPECT_EQ(valid_top_starts(fixed, {track_frames(fixed, 2, 256 + 64)}), 2);
}

TEST_P(ShardShapes, EveryCropOfEveryTrackAndViewMatchesSlicesOfTheInput) {
  const Shape s = GetParam();
  const features::FeatureConfig c = small_config(s.levels, s.parts, s.window);
  TempDir dir;
  const std::string path = dir.file("shard-00000.h5");
  // Lengths in top clips: several, exactly one, a fraction (no valid start), odd lengths.
  const auto tracks = write_shard(path, c, {3.3, 1.0, 0.6, 2.0, 5.77});
  ASSERT_TRUE(ShardReader::is_complete(path));
  ASSERT_TRUE(ShardReader::is_complete(path, c));

  const ShardReader r(path, c);
  ASSERT_EQ(r.num_tracks(), int64_t(tracks.size()));
  EXPECT_EQ(r.features().hash(), c.hash());
  EXPECT_EQ(r.config_hash(), 0xabcdef0123456789ull);
  EXPECT_EQ(r.labels().tag_names, schema().tag_names);
  EXPECT_EQ(r.labels().class_names, schema().class_names);
  int64_t total_crops = 0;
  for (size_t i = 0; i < tracks.size(); ++i) {
    const TrackMeta& m = tracks[i].meta;
    const ShardTrack& got = r.track(int64_t(i));
    EXPECT_EQ(got.id, m.id);
    EXPECT_EQ(got.path, m.path);
    EXPECT_EQ(got.split, m.split);
    EXPECT_EQ(got.samples, m.samples);
    EXPECT_DOUBLE_EQ(got.duration_s, double(m.samples) / c.sample_rate);
    EXPECT_EQ(got.tags, m.tags);
    EXPECT_EQ(got.class_index, m.class_index);
    EXPECT_EQ(got.cover_group, m.cover_group);

    const int64_t starts = r.valid_starts(int64_t(i));
    EXPECT_EQ(starts, brute_force_starts(c, m.samples)) << m.id;
    if (i == 2) {
      EXPECT_EQ(starts, 0) << "a track shorter than a top clip has no crop";
    }
    if (i == 1) {
      EXPECT_EQ(starts, 1) << "a track of exactly one top clip has one crop";
    }
    for (int v = 0; v <= c.views; ++v) {
      for (int64_t k = 0; k < starts; ++k, ++total_crops) {
        const std::vector<float> crop = r.crop(int64_t(i), k, v);
        ASSERT_EQ(crop.size(), size_t(c.clips_total() * c.n_mels * c.frames));
        ASSERT_EQ(crop, expected_crop(c, tracks[i], k, v)) << m.id << " view " << v << " k " << k;
        // The top clip alone (the loader's view A) is the hierarchy's first clip, byte for byte.
        std::vector<float> top(size_t(c.n_mels * c.frames));
        r.top_clip_into(int64_t(i), k, v, top.data());
        ASSERT_EQ(top, std::vector<float>(crop.begin(), crop.begin() + std::ptrdiff_t(top.size())))
            << m.id << " view " << v << " k " << k;
      }
      EXPECT_THROW(r.crop(int64_t(i), starts, v), Error);  // past the last valid start
      std::vector<float> top(size_t(c.n_mels * c.frames));
      EXPECT_THROW(r.top_clip_into(int64_t(i), starts, v, top.data()), Error);
      // Whole-track arrays come back as the half-rounded input.
      const auto stored = stored_levels(c);
      for (size_t li = 0; li < stored.size(); ++li) {
        const std::vector<float> whole = r.track_level(int64_t(i), v, stored[li]);
        const auto& in = tracks[i].mels[size_t(v)][li];
        ASSERT_EQ(whole.size(), in.size());
        for (size_t j = 0; j < in.size(); ++j) ASSERT_EQ(whole[j], as_stored(in[j]));
      }
    }
  }
  EXPECT_GT(total_crops, 20);
  EXPECT_THROW(r.crop(0, 0, c.views + 1), Error);
  EXPECT_THROW(r.track(int64_t(tracks.size())), Error);
}

INSTANTIATE_TEST_SUITE_P(
    Shapes, ShardShapes,
    ::testing::Values(Shape{3, 2, features::WindowPolicy::fixed}, Shape{2, 3, features::WindowPolicy::fixed},
                      Shape{3, 2, features::WindowPolicy::scaled},
                      Shape{2, 3, features::WindowPolicy::scaled}),
    [](const auto& info) {
      return "N" + std::to_string(info.param.levels) + "M" + std::to_string(info.param.parts) +
             "_" + features::to_string(info.param.window);
    });

TEST(ShardLayout, FixedCropLevelsAreTheFinestTakenEveryStride) {
  // The identity DESIGN.md relies on: with the fixed window, level n's frame t of clip c is the
  // finest frame (k * M^(N-1) + c * T * stride_n + t * stride_n).
  const auto c = small_config(4, 2, features::WindowPolicy::fixed);
  for (int n = 0; n < c.levels; ++n)
    for (int64_t clip = 0; clip < c.clips_at(n); ++clip)
      for (int64_t t = 0; t < c.frames; ++t) {
        const CropSource s = crop_source(c, 3, n, clip, t);
        EXPECT_EQ(s.stored_level, c.levels - 1);
        EXPECT_EQ(s.frame, 3 * c.frame_stride(0) + (clip * c.frames + t) * c.frame_stride(n));
      }
}

TEST(Shard, ZeroTrackShardIsValid) {
  const auto c = small_config(3, 2, features::WindowPolicy::fixed);
  TempDir dir;
  const std::string path = dir.file("empty.h5");
  write_shard(path, c, {});
  ASSERT_TRUE(ShardReader::is_complete(path));
  EXPECT_EQ(ShardReader(path, c).num_tracks(), 0);
}

TEST(Shard, FeatureMismatchNamesTheFileTheParametersAndTheFix) {
  const auto c = small_config(3, 2, features::WindowPolicy::fixed);
  TempDir dir;
  const std::string path = dir.file("a.h5");
  write_shard(path, c, {1.5});
  EXPECT_EQ(ShardReader::stored_features(path).canonical(), c.canonical());
  features::FeatureConfig other = c;
  other.n_mels = 16;
  other.window = features::WindowPolicy::scaled;
  EXPECT_FALSE(ShardReader::is_complete(path, other));
  try {
    ShardReader r(path, other);
    FAIL() << "expected a ConfigError";
  } catch (const ConfigError& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find(path), std::string::npos) << msg;
    EXPECT_NE(msg.find("n_mels: shard has 8, expected 16"), std::string::npos) << msg;
    EXPECT_NE(msg.find("window: shard has fixed, expected scaled"), std::string::npos) << msg;
    EXPECT_EQ(msg.find("levels:"), std::string::npos) << "only differing keys: " << msg;
    EXPECT_NE(msg.find("rerun mart-preprocess"), std::string::npos) << msg;
  }
}

TEST(Shard, FormatVersionMismatchIsAConfigError) {
  const auto c = small_config(3, 2, features::WindowPolicy::fixed);
  TempDir dir;
  const std::string path = dir.file("v.h5");
  write_shard(path, c, {1.5});
  {
    h5::Lock lock;
    h5::File f(H5Fopen(path.c_str(), H5F_ACC_RDWR, H5P_DEFAULT));
    ASSERT_TRUE(f);
    h5::write_attr(f.get(), "format_version", int64_t{kShardFormatVersion + 1});
  }
  EXPECT_FALSE(ShardReader::is_complete(path));
  try {
    ShardReader r(path, c);
    FAIL() << "expected a ConfigError";
  } catch (const ConfigError& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find(path), std::string::npos) << msg;
    EXPECT_NE(msg.find("format version 2"), std::string::npos) << msg;
    EXPECT_NE(msg.find("rerun mart-preprocess"), std::string::npos) << msg;
  }
}

TEST(Shard, UnfinishedWriterLeavesNothing) {
  const auto c = small_config(3, 2, features::WindowPolicy::fixed);
  TempDir dir;
  const std::string path = dir.file("killed.h5");
  std::mt19937 rng(3);
  std::ofstream(path + ".tmp") << "left by a killed job";  // a rerun writes over it
  {
    ShardWriter w(path, c, schema(), 1);
    const auto t = make_track(c, 0, 2 * c.clip_samples, rng);
    w.add_track(t.meta, t.mels);
    EXPECT_TRUE(fs::exists(w.temp_path()));
    EXPECT_EQ(w.temp_path(), path + ".tmp");
    EXPECT_FALSE(fs::exists(path)) << "the final name appears only at finish()";
    EXPECT_FALSE(ShardReader::is_complete(w.temp_path())) << "a temp file is never complete";
  }
  EXPECT_FALSE(fs::exists(path + ".tmp"));
  EXPECT_FALSE(fs::exists(path));
  // The same writer, finished, leaves exactly the final file.
  {
    ShardWriter w(path, c, schema(), 1);
    const auto t = make_track(c, 0, 2 * c.clip_samples, rng);
    w.add_track(t.meta, t.mels);
    w.finish();
    EXPECT_THROW(w.finish(), Error);
    EXPECT_THROW(w.add_track(t.meta, t.mels), Error);
  }
  EXPECT_FALSE(fs::exists(path + ".tmp"));
  EXPECT_TRUE(ShardReader::is_complete(path));
}

TEST(Shard, WriterRejectsWrongShapesBeforeWriting) {
  const auto c = small_config(3, 2, features::WindowPolicy::scaled);
  TempDir dir;
  const std::string path = dir.file("bad.h5");
  std::mt19937 rng(4);
  ShardWriter w(path, c, schema(), 1);
  auto t = make_track(c, 0, 2 * c.clip_samples, rng);
  auto longer_view = t;
  longer_view.mels[1][2].resize(longer_view.mels[1][2].size() + size_t(c.n_mels));
  EXPECT_THROW(w.add_track(longer_view.meta, longer_view.mels), Error);  // views must agree
  auto missing_view = t;
  missing_view.mels.pop_back();
  EXPECT_THROW(w.add_track(missing_view.meta, missing_view.mels), Error);
  auto bad_split = t;
  bad_split.meta.split = "training";
  EXPECT_THROW(w.add_track(bad_split.meta, bad_split.mels), Error);
  auto bad_class = t;
  bad_class.meta.class_index = 2;
  EXPECT_THROW(w.add_track(bad_class.meta, bad_class.mels), Error);
  EXPECT_EQ(w.tracks(), 0);
  w.add_track(t.meta, t.mels);
  w.finish();
  const ShardReader r(path, c);
  ASSERT_EQ(r.num_tracks(), 1);  // the rejected tracks left no rows behind
  EXPECT_EQ(r.frames(0, 2), track_frames(c, 2, t.meta.samples));
  EXPECT_EQ(w.frames(), track_frames(c, 2, t.meta.samples));
}

TEST(Shard, IsCompleteRejectsGarbageTruncatedAndMissingFiles) {
  const auto c = small_config(3, 2, features::WindowPolicy::fixed);
  TempDir dir;
  const std::string good = dir.file("good.h5");
  write_shard(good, c, {2.0, 3.0});
  ASSERT_TRUE(ShardReader::is_complete(good));

  const std::string garbage = dir.file("garbage.h5");
  std::ofstream(garbage) << "this is not an HDF5 file";
  EXPECT_FALSE(ShardReader::is_complete(garbage));

  const std::string truncated = dir.file("truncated.h5");
  fs::copy_file(good, truncated);
  fs::resize_file(truncated, fs::file_size(good) / 2);
  EXPECT_FALSE(ShardReader::is_complete(truncated));
  EXPECT_THROW(ShardReader(truncated, c), ConfigError);

  EXPECT_FALSE(ShardReader::is_complete(dir.file("missing.h5")));

  const std::string unmarked = dir.file("unmarked.h5");
  fs::copy_file(good, unmarked);
  {
    h5::Lock lock;
    h5::File f(H5Fopen(unmarked.c_str(), H5F_ACC_RDWR, H5P_DEFAULT));
    ASSERT_TRUE(f);
    ASSERT_GE(H5Adelete(f.get(), "complete"), 0);
  }
  EXPECT_FALSE(ShardReader::is_complete(unmarked));
}

TEST(Shard, ConcurrentReadersGiveTheSameCrops) {
  const auto c = small_config(3, 2, features::WindowPolicy::scaled);
  TempDir dir;
  const std::string path = dir.file("threads.h5");
  write_shard(path, c, {4.0, 4.0});
  const ShardReader r(path, c);
  const std::vector<float> want = r.crop(1, 3, 2);
  std::vector<std::thread> threads;
  std::atomic<int> bad{0};
  for (int i = 0; i < 4; ++i)
    threads.emplace_back([&] {
      for (int j = 0; j < 50; ++j)
        if (r.crop(1, 3, 2) != want) ++bad;
    });
  for (auto& t : threads) t.join();
  EXPECT_EQ(bad.load(), 0);
}

// h5py reads the shard as written (float16, no help) and agrees with the C++ reader; the
// Python side recomputes crops from the documented rule on its own.
TEST(Shard, H5pyReadsTheShardAndAgreesWithTheReader) {
  const char* python = "/usr/bin/python3";
  if (std::system((std::string(python) + " -c 'import h5py, numpy' 2>/dev/null").c_str()) != 0)
    GTEST_SKIP() << python << " lacks h5py or numpy (apt install python3-h5py python3-numpy)";
  for (auto window : {features::WindowPolicy::fixed, features::WindowPolicy::scaled}) {
    const auto c = small_config(3, 2, window);
    TempDir dir;
    const std::string path = dir.file("py.h5");
    const auto tracks = write_shard(path, c, {2.5, 1.2, 0.5});
    const ShardReader r(path, c);
    nlohmann::json expected;
    expected["feature_hash"] = r.features().hash();
    expected["config_hash"] = r.config_hash();
    expected["tracks"] = nlohmann::json::array();
    for (int64_t i = 0; i < r.num_tracks(); ++i) {
      nlohmann::json t;
      t["id"] = r.track(i).id;
      t["path"] = r.track(i).path;
      t["split"] = r.track(i).split;
      t["samples"] = r.track(i).samples;
      t["tags"] = r.track(i).tags;
      t["class"] = r.track(i).class_index;
      t["cover_group"] = r.track(i).cover_group;
      t["valid_starts"] = r.valid_starts(i);
      for (int v = 0; v <= c.views; ++v)
        for (size_t li = 0; li < stored_levels(c).size(); ++li) {
          const int level = stored_levels(c)[li];
          const std::string key = std::to_string(v) + "/" + std::to_string(level);
          t["input"][key] = tracks[size_t(i)].mels[size_t(v)][li];
          t["reader"][key] = r.track_level(i, v, level);
        }
      for (int64_t k = 0; k < r.valid_starts(i); ++k)
        t["crops"].push_back({{"k", k}, {"view", k % (c.views + 1)},
                              {"values", r.crop(i, k, int(k % (c.views + 1)))}});
      expected["tracks"].push_back(t);
    }
    const std::string json_path = dir.file("expected.json");
    std::ofstream(json_path) << expected.dump();
    const std::string cmd = std::string(python) + " " + MART_SOURCE_DIR +
                            "/tests/python/check_shard_h5py.py " + path + " " + json_path;
    EXPECT_EQ(std::system(cmd.c_str()), 0) << cmd;
  }
}
