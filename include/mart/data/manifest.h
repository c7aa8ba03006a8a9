#pragma once
// manifest.json: what a preprocess run wrote (DESIGN.md section 2). Rank 0 writes it atomically
// after the shards; the trainer and eval load it to find the shards and to check that they were
// made with the features they expect.
#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "mart/data/shard.h"
#include "mart/features/features.h"

namespace mart::data {

constexpr int64_t kManifestFormatVersion = 1;

struct ManifestShard {
  std::string file;     // relative to the manifest's directory
  int64_t tracks = 0;
  int64_t frames = 0;   // finest-level frames of view 0 (one view's worth of audio)
  // The file as written: its size and FNV-1a 64 hash (core::file_digest), so --preprocess.verify
  // and --preprocess.resume find a shard whose bytes changed. bytes < 0: not recorded (older runs).
  int64_t bytes = -1;
  std::string fnv1a64;
};

struct ManifestFailure {
  std::string path;    // the input file
  std::string reason;  // the decoder's (or the stage's) reason
};

struct Manifest {
  features::FeatureConfig features;
  std::string preprocess_config;  // the resolved INI of the run (Config::resolved_ini())
  uint64_t preprocess_hash = 0;   // Config::hash() of it; shards store the same value
  LabelSchema labels;
  std::vector<ManifestShard> shards;
  std::vector<ManifestFailure> failures;

  int64_t total_tracks() const;
  int64_t total_frames() const;

  nlohmann::json to_json() const;
  // Validates everything (format version, required keys and types, feature hash against the
  // stored parameters, totals against the shard list, unique shard files); `origin` names the
  // source in errors. Throws ConfigError.
  static Manifest from_json(const nlohmann::json& j, const std::string& origin);
};

// The feature parameters as a JSON object and back (checkpoints store them too); `origin` names
// the source in a ConfigError about a missing or mistyped key.
nlohmann::json features_to_json(const features::FeatureConfig& c);
features::FeatureConfig features_from_json(const nlohmann::json& j, const std::string& origin);

// Writes `dir`/manifest.json (or the given file path) atomically.
void write_manifest(const std::string& path, const Manifest& m);
// Loads and validates a manifest; with `expected`, also requires its feature config (ConfigError
// naming both hashes and the fix otherwise).
Manifest load_manifest(const std::string& path);
Manifest load_manifest(const std::string& path, const features::FeatureConfig& expected);

}  // namespace mart::data
