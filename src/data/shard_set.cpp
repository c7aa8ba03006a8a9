#include "mart/data/shard_set.h"

#include "mart/core/error.h"

namespace mart::data {

ShardSet::ShardSet(const std::string& dir) : dir_(dir), m_(load_manifest(dir + "/manifest.json")) {}

const ShardReader& ShardSet::shard(int64_t index) {
  auto it = readers_.find(index);
  if (it == readers_.end()) {
    MART_CHECK(index >= 0 && static_cast<size_t>(index) < m_.shards.size(), "shard ", index, " of '", dir_,
               "' does not exist (the manifest lists ", m_.shards.size(), ")");
    it = readers_.emplace(index, ShardReader(dir_ + "/" + m_.shards[static_cast<size_t>(index)].file, m_.features)).first;
  }
  return it->second;
}

}  // namespace mart::data
