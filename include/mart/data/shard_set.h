#pragma once
// The shards of one mart-preprocess run, each opened on first use and kept open (evaluation jobs
// that read crops track by track). No torch.
#include <cstdint>
#include <map>
#include <string>

#include "mart/data/manifest.h"
#include "mart/data/shard.h"

namespace mart::data {

class ShardSet {
 public:
  explicit ShardSet(const std::string& dir);  // reads dir/manifest.json
  const Manifest& manifest() const { return m_; }
  // The manifest's shard `index`, checked against the run's features; throws on a bad index.
  const ShardReader& shard(int64_t index);

 private:
  std::string dir_;
  Manifest m_;
  std::map<int64_t, ShardReader> readers_;
};

}  // namespace mart::data
