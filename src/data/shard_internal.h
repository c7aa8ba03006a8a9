#pragma once
// Names and helpers shared by the shard writer and reader (not part of the public API).
#include <string>

#include "mart/data/h5.h"
#include "mart/features/features.h"

namespace mart::data::detail {

inline const char* kFormatName = "mart-shard";

inline std::string level_group(int view, int level) {
  return "/views/" + std::to_string(view) + "/level_" + std::to_string(level);
}
inline std::string mel_path(int view, int level) { return level_group(view, level) + "/mel"; }
inline std::string offsets_path(int view, int level) { return level_group(view, level) + "/offsets"; }

// Every FeatureConfig parameter as its own root attribute, plus canonical() and hash().
void write_feature_attrs(hid_t file, const features::FeatureConfig& cfg);
features::FeatureConfig read_feature_attrs(hid_t file);

}  // namespace mart::data::detail
