// mart-bench-shard-read: what the shards' Fletcher-32 checksums cost the data loader. Writes the
// same synthetic shard twice, with and without checksums, then times random crops (the trainer's
// read: ShardReader::crop_into, view and start drawn at random) from each, alternating the order
// over several rounds so that a busy machine slows both alike; prints per-round rates and the
// median ratio. The files stay in the page cache: this is the CPU cost (whole chunks decoded and
// summed instead of the selected rows read directly), not a disk's.
//
//   mart-bench-shard-read [--dir /tmp] [--tracks 8] [--seconds 30] [--crops 400] [--rounds 7]
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <random>
#include <string>
#include <vector>

#include "mart/features/features.h"
#include "mart/data/shard.h"

namespace fs = std::filesystem;
using mart::features::FeatureConfig;
using mart::data::ShardReader;
using mart::data::ShardWriter;

namespace {

void write_shard(const std::string& path, const FeatureConfig& f, int tracks, double seconds, bool checksum) {
  ShardWriter w(path, f, {{}, {}}, 1, checksum);
  std::mt19937 rng(1);
  std::normal_distribution<float> mel(-4.0f, 2.0f);
  const auto levels = mart::data::stored_levels(f);
  for (int t = 0; t < tracks; ++t) {
    mart::data::TrackMeta m;
    m.id = "track" + std::to_string(t);
    m.split = "train";
    m.samples = static_cast<int64_t>(seconds * f.sample_rate);
    std::vector<std::vector<std::vector<float>>> views(static_cast<size_t>(f.views + 1));
    for (auto& v : views)
      for (int level : levels) {
        std::vector<float> x(static_cast<size_t>(mart::data::track_frames(f, level, m.samples) * f.n_mels));
        for (auto& y : x) y = mel(rng);
        v.push_back(std::move(x));
      }
    w.add_track(m, views);
  }
  w.finish();
}

// Crops per second over `crops` random (track, start, view) draws.
double crops_per_s(const ShardReader& r, int crops, uint64_t seed) {
  const auto& f = r.features();
  std::vector<float> out(static_cast<size_t>(f.clips_total() * f.n_mels * f.frames));
  std::mt19937_64 rng(seed);
  const auto t0 = std::chrono::steady_clock::now();
  for (int i = 0; i < crops; ++i) {
    const int64_t t = static_cast<int64_t>(rng() % static_cast<uint64_t>(r.num_tracks()));
    const int64_t k = static_cast<int64_t>(rng() % static_cast<uint64_t>(r.valid_starts(t)));
    r.crop_into(t, k, static_cast<int>(rng() % static_cast<uint64_t>(f.views + 1)), out.data());
  }
  return crops / std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

}  // namespace

int main(int argc, char** argv) {
  std::string dir = fs::temp_directory_path().string();
  int tracks = 8, crops = 400, rounds = 7;
  double seconds = 30;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string k = argv[i], v = argv[i + 1];
    if (k == "--dir") dir = v;
    else if (k == "--tracks") tracks = std::stoi(v);
    else if (k == "--seconds") seconds = std::stod(v);
    else if (k == "--crops") crops = std::stoi(v);
    else if (k == "--rounds") rounds = std::stoi(v);
    else {
      std::fprintf(stderr, "unknown option %s\n", k.c_str());
      return 2;
    }
  }
  const FeatureConfig f;  // the paper's features: 4 levels, 128 frames, 128 mels, 2 views
  const std::string with = dir + "/mart-bench-fletcher32.h5", without = dir + "/mart-bench-nochecksum.h5";
  write_shard(with, f, tracks, seconds, true);
  write_shard(without, f, tracks, seconds, false);
  std::printf("shard: %d tracks x %.0f s, paper features (%lld finest rows per crop); %lld / %lld bytes with / without checksums\n",
              tracks, seconds, static_cast<long long>(f.frames * f.clips_at(f.levels - 1)),
              static_cast<long long>(fs::file_size(with)), static_cast<long long>(fs::file_size(without)));
  ShardReader a(with, f), b(without, f);
  crops_per_s(a, crops / 4, 99), crops_per_s(b, crops / 4, 99);  // warm the page cache
  std::printf("%-6s %18s %18s %8s\n", "round", "fletcher32 crops/s", "none crops/s", "ratio");
  std::vector<double> ratios;
  for (int r = 0; r < rounds; ++r) {
    double x, y;
    if (r % 2 == 0) x = crops_per_s(a, crops, r), y = crops_per_s(b, crops, r);
    else y = crops_per_s(b, crops, r), x = crops_per_s(a, crops, r);
    ratios.push_back(y / x);
    std::printf("%-6d %18.1f %18.1f %8.3f\n", r, x, y, y / x);
  }
  std::sort(ratios.begin(), ratios.end());
  std::printf("median read time with / without checksums: %.3f (over %d alternating rounds)\n", ratios[ratios.size() / 2],
              rounds);
  fs::remove(with);
  fs::remove(without);
  return 0;
}
