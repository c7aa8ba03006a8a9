#include "mart/data/manifest.h"

#include <nlohmann/json.hpp>
#include <set>

#include "mart/core/error.h"
#include "mart/core/fs.h"
#include "mart/core/hash.h"

namespace mart::data {

using nlohmann::json;

json features_to_json(const features::FeatureConfig& c) {
  return json{{"sample_rate", c.sample_rate}, {"clip_samples", c.clip_samples},
              {"levels", c.levels},           {"parts", c.parts},
              {"frames", c.frames},           {"n_fft", c.n_fft},
              {"n_mels", c.n_mels},           {"f_min", c.f_min},
              {"f_max", c.f_max},             {"log_eps", c.log_eps},
              {"window", features::to_string(c.window)}, {"views", c.views}};
}

namespace {

// j[key] as T, or a ConfigError naming the key and the file.
template <typename T>
T field(const json& j, const char* key, const std::string& origin) {
  if (!j.is_object() || !j.contains(key))
    MART_CONFIG_ERROR("manifest '", origin, "': missing key '", key, "'");
  try {
    return j.at(key).get<T>();
  } catch (const json::exception& e) {
    MART_CONFIG_ERROR("manifest '", origin, "': key '", key, "' has the wrong type: ", e.what());
  }
}

}  // namespace

features::FeatureConfig features_from_json(const json& j, const std::string& o) {
  features::FeatureConfig c;
  c.sample_rate = field<int>(j, "sample_rate", o);
  c.clip_samples = field<int64_t>(j, "clip_samples", o);
  c.levels = field<int>(j, "levels", o);
  c.parts = field<int>(j, "parts", o);
  c.frames = field<int>(j, "frames", o);
  c.n_fft = field<int>(j, "n_fft", o);
  c.n_mels = field<int>(j, "n_mels", o);
  c.f_min = field<double>(j, "f_min", o);
  c.f_max = field<double>(j, "f_max", o);
  c.log_eps = field<double>(j, "log_eps", o);
  c.window = features::parse_window_policy(field<std::string>(j, "window", o));
  c.views = field<int>(j, "views", o);
  return c;
}

namespace {

uint64_t parse_hex(const std::string& s, const char* key, const std::string& origin) {
  size_t used = 0;
  uint64_t v = 0;
  try {
    v = std::stoull(s, &used, 16);
  } catch (const std::exception&) {
    used = 0;
  }
  if (s.empty() || used != s.size())
    MART_CONFIG_ERROR("manifest '", origin, "': '", key, "' is not a hex hash: '", s, "'");
  return v;
}

}  // namespace

int64_t Manifest::total_tracks() const {
  int64_t n = 0;
  for (const auto& s : shards) n += s.tracks;
  return n;
}

int64_t Manifest::total_frames() const {
  int64_t n = 0;
  for (const auto& s : shards) n += s.frames;
  return n;
}

json Manifest::to_json() const {
  json j;
  j["format"] = "mart-manifest";
  j["format_version"] = kManifestFormatVersion;
  j["shard_format_version"] = kShardFormatVersion;
  j["features"] = features_to_json(features);
  j["feature_canonical"] = features.canonical();
  j["feature_hash"] = hex64(features.hash());
  j["preprocess_config"] = preprocess_config;
  j["preprocess_hash"] = hex64(preprocess_hash);
  j["labels"] = {{"tag_names", labels.tag_names}, {"class_names", labels.class_names}};
  j["shards"] = json::array();
  for (const auto& s : shards) {
    json e = {{"file", s.file}, {"tracks", s.tracks}, {"frames", s.frames}};
    if (s.bytes >= 0) e["bytes"] = s.bytes, e["fnv1a64"] = s.fnv1a64;
    j["shards"].push_back(e);
  }
  j["totals"] = {{"shards", shards.size()},
                 {"tracks", total_tracks()},
                 {"frames", total_frames()},
                 {"failures", failures.size()}};
  j["failures"] = json::array();
  for (const auto& f : failures) j["failures"].push_back({{"path", f.path}, {"reason", f.reason}});
  return j;
}

Manifest Manifest::from_json(const json& j, const std::string& o) {
  if (field<std::string>(j, "format", o) != "mart-manifest")
    MART_CONFIG_ERROR("'", o, "' is not a mart manifest (format is not 'mart-manifest')");
  const int64_t version = field<int64_t>(j, "format_version", o);
  if (version != kManifestFormatVersion)
    MART_CONFIG_ERROR("manifest '", o, "' has format version ", version, ", this build reads ",
                      kManifestFormatVersion, ". Fix: rerun mart-preprocess with this build.");
  Manifest m;
  m.features = features_from_json(field<json>(j, "features", o), o);
  if (parse_hex(field<std::string>(j, "feature_hash", o), "feature_hash", o) != m.features.hash())
    MART_CONFIG_ERROR("manifest '", o, "': feature_hash does not match its feature parameters; "
                      "the file was edited. Fix: rerun mart-preprocess.");
  m.preprocess_config = field<std::string>(j, "preprocess_config", o);
  m.preprocess_hash = parse_hex(field<std::string>(j, "preprocess_hash", o), "preprocess_hash", o);
  const json labels = field<json>(j, "labels", o);
  m.labels.tag_names = field<std::vector<std::string>>(labels, "tag_names", o);
  m.labels.class_names = field<std::vector<std::string>>(labels, "class_names", o);
  std::set<std::string> files;
  for (const json& s : field<json>(j, "shards", o)) {
    ManifestShard sh;
    sh.file = field<std::string>(s, "file", o);
    sh.tracks = field<int64_t>(s, "tracks", o);
    sh.frames = field<int64_t>(s, "frames", o);
    if (s.contains("bytes")) {
      sh.bytes = field<int64_t>(s, "bytes", o);
      sh.fnv1a64 = field<std::string>(s, "fnv1a64", o);
    }
    if (sh.file.empty() || sh.tracks < 0 || sh.frames < 0 || !files.insert(sh.file).second)
      MART_CONFIG_ERROR("manifest '", o, "': bad or repeated shard entry '", sh.file, "'");
    m.shards.push_back(sh);
  }
  for (const json& f : field<json>(j, "failures", o))
    m.failures.push_back({field<std::string>(f, "path", o), field<std::string>(f, "reason", o)});
  const json totals = field<json>(j, "totals", o);
  if (field<int64_t>(totals, "shards", o) != static_cast<int64_t>(m.shards.size()) ||
      field<int64_t>(totals, "tracks", o) != m.total_tracks() ||
      field<int64_t>(totals, "frames", o) != m.total_frames() ||
      field<int64_t>(totals, "failures", o) != static_cast<int64_t>(m.failures.size()))
    MART_CONFIG_ERROR("manifest '", o, "': totals disagree with the shard and failure lists");
  return m;
}

void write_manifest(const std::string& path, const Manifest& m) {
  write_file_atomic(path, m.to_json().dump(2) + "\n");
}

Manifest load_manifest(const std::string& path) {
  json j;
  try {
    j = json::parse(read_file(path));
  } catch (const json::parse_error& e) {
    MART_CONFIG_ERROR("manifest '", path, "' is not valid JSON: ", e.what(),
                      ". Fix: rerun mart-preprocess.");
  }
  return Manifest::from_json(j, path);
}

Manifest load_manifest(const std::string& path, const features::FeatureConfig& expected) {
  Manifest m = load_manifest(path);
  if (m.features.hash() != expected.hash())
    MART_CONFIG_ERROR("shards listed in '", path, "' were made with other feature parameters (",
                      m.features.canonical(), ", hash ", hex64(m.features.hash()),
                      ") than this config expects (", expected.canonical(), ", hash ",
                      hex64(expected.hash()), "). Fix: rerun mart-preprocess with this config, "
                      "or use the config the shards were made with.");
  return m;
}

}  // namespace mart::data
