// manifest.json: round trip through the file, and every validation the loader promises.
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "mart/core/error.h"
#include "mart/core/fs.h"
#include "mart/core/hash.h"
#include "mart/data/manifest.h"

using namespace mart;
using namespace mart::data;
namespace fs = std::filesystem;

namespace {

Manifest sample() {
  Manifest m;
  m.features.levels = 3;
  m.features.window = features::WindowPolicy::scaled;
  m.features.views = 1;
  m.preprocess_config = "[features]\nlevels = 3\n";
  m.preprocess_hash = 0xfedcba9876543210ull;
  m.labels = {{"guitar", "piano"}, {"blues", "jazz", "rock"}};
  // The first as an older run wrote it (no size or hash), the second with both.
  m.shards = {{"shard-00000.h5", 64, 81920, -1, ""}, {"shard-00001.h5", 13, 9001, 123456, "00ff00ff00ff00ff"}};
  m.failures = {{"/music/broken.mp3", "corrupt: libsndfile: unknown format"},
                {"/music/silent.wav", "silent: peak below -100 dBFS"}};
  return m;
}

std::string temp_file(const std::string& name) {
  return (fs::temp_directory_path() / ("mart_test_manifest_" + std::to_string(::getpid()) + "_" + name))
      .string();
}

// Loading `j` fails with a ConfigError whose text contains `needle`.
void expect_rejected(const nlohmann::json& j, const std::string& needle) {
  try {
    Manifest::from_json(j, "m.json");
    ADD_FAILURE() << "accepted a manifest that should fail with '" << needle << "'";
  } catch (const ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
  }
}

}  // namespace

TEST(Manifest, RoundTripsThroughTheFile) {
  const Manifest m = sample();
  const std::string path = temp_file("manifest.json");
  write_manifest(path, m);
  const Manifest back = load_manifest(path, m.features);
  fs::remove(path);
  EXPECT_EQ(back.features.canonical(), m.features.canonical());
  EXPECT_EQ(back.preprocess_config, m.preprocess_config);
  EXPECT_EQ(back.preprocess_hash, m.preprocess_hash);
  EXPECT_EQ(back.labels.tag_names, m.labels.tag_names);
  EXPECT_EQ(back.labels.class_names, m.labels.class_names);
  ASSERT_EQ(back.shards.size(), 2u);
  EXPECT_EQ(back.shards[1].file, "shard-00001.h5");
  EXPECT_EQ(back.shards[1].tracks, 13);
  EXPECT_EQ(back.shards[1].frames, 9001);
  EXPECT_EQ(back.shards[1].bytes, 123456);
  EXPECT_EQ(back.shards[1].fnv1a64, "00ff00ff00ff00ff");
  EXPECT_EQ(back.shards[0].bytes, -1);  // not recorded: verify reads every chunk instead
  EXPECT_FALSE(m.to_json()["shards"][0].contains("bytes"));
  ASSERT_EQ(back.failures.size(), 2u);
  EXPECT_EQ(back.failures[0].path, "/music/broken.mp3");
  EXPECT_EQ(back.failures[0].reason, "corrupt: libsndfile: unknown format");
  EXPECT_EQ(back.total_tracks(), 77);
  EXPECT_EQ(back.total_frames(), 81920 + 9001);
  EXPECT_EQ(back.to_json(), m.to_json());
}

TEST(Manifest, JsonCarriesTotalsAndHashes) {
  const nlohmann::json j = sample().to_json();
  EXPECT_EQ(j["totals"]["tracks"], 77);
  EXPECT_EQ(j["totals"]["shards"], 2);
  EXPECT_EQ(j["totals"]["failures"], 2);
  EXPECT_EQ(j["feature_hash"], hex64(sample().features.hash()));
  EXPECT_EQ(j["preprocess_hash"], "fedcba9876543210");
  EXPECT_EQ(j["features"]["window"], "scaled");
}

TEST(Manifest, LoaderRejectsInconsistentManifests) {
  const nlohmann::json good = sample().to_json();
  auto edited = [&](auto change) {
    nlohmann::json j = good;
    change(j);
    return j;
  };
  expect_rejected(edited([](auto& j) { j["format_version"] = 2; }), "format version 2");
  expect_rejected(edited([](auto& j) { j["format"] = "other"; }), "not a mart manifest");
  expect_rejected(edited([](auto& j) { j["features"]["n_mels"] = 64; }), "feature_hash");
  expect_rejected(edited([](auto& j) { j["totals"]["tracks"] = 78; }), "totals");
  expect_rejected(edited([](auto& j) { j["shards"][1]["file"] = "shard-00000.h5"; }), "repeated");
  expect_rejected(edited([](auto& j) { j.erase("failures"); }), "missing key 'failures'");
  expect_rejected(edited([](auto& j) { j["shards"][0]["tracks"] = "many"; }), "wrong type");
  expect_rejected(edited([](auto& j) { j["preprocess_hash"] = "xyz"; }), "not a hex hash");
}

TEST(Manifest, LoadChecksFeaturesAndJson) {
  const std::string path = temp_file("m2.json");
  write_manifest(path, sample());
  features::FeatureConfig other = sample().features;
  other.views = 4;
  try {
    load_manifest(path, other);
    ADD_FAILURE() << "accepted other features";
  } catch (const ConfigError& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find(path), std::string::npos) << msg;
    EXPECT_NE(msg.find("views=4"), std::string::npos) << msg;
    EXPECT_NE(msg.find("rerun mart-preprocess"), std::string::npos) << msg;
  }
  std::ofstream(path) << "{ not json";
  EXPECT_THROW(load_manifest(path), ConfigError);
  fs::remove(path);
  EXPECT_THROW(load_manifest(path), ConfigError);  // missing file
}
