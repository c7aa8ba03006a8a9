// mart-embed end to end: its crops are the shards' crops, its level-0 embeddings are mart-eval's
// up to the float16 rounding of the shards, timestamps and row counts for hand-computed files,
// 1 and 2 ranks write the same numbers, bad input, and CSV / NPY that read back as the HDF5.
#include <gtest/gtest.h>
#include <sndfile.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <sstream>

#include "../util/proc.h"
#include "mart/audio/decode.h"
#include "mart/audio/logmel.h"
#include "mart/core/h5_check.h"
#include "mart/data/h5.h"
#include "mart/data/half.h"
#include "mart/data/manifest.h"
#include "mart/data/shard.h"
#include "mart/embed/embed_audio.h"
#include "mart/eval/probe.h"
#include "mart/run/checkpoint_info.h"

namespace fs = std::filesystem;
namespace h5 = mart::data::h5;
using mart::test::mpirun;
using mart::test::run;

namespace {

std::string tmp(const std::string& n) { return (fs::temp_directory_path() / n).string(); }
const std::string kCorpus = tmp("mart_embed_corpus"), kData = tmp("mart_embed_data"), kRun = tmp("mart_embed_trainrun");
const std::string kProbe = tmp("mart_embed_probe"), kProbeData = tmp("mart_embed_probedata"), kOut = tmp("mart_embed_out1");
// The eval test's small features: 22.05 kHz, L0 = 8192 (hop_0 = 512), 3 levels of 2 parts, T = 16.
const std::string kShape = " --features.clip_samples 8192 --features.levels 3 --features.frames 16 --features.n_mels 16";
constexpr int kRate = 22050;
constexpr int64_t kL0 = 8192, kHop0 = 512;
// mart-embed vs mart-eval, max |difference| over the embedding's norm (see LevelZero... below).
constexpr double kFloat16Tolerance = 1e-2;

// Something with structure in time and frequency, so different crops embed differently.
std::vector<float> music(int64_t n, int rate, uint64_t seed) {
  std::vector<float> x(static_cast<size_t>(n));
  uint64_t s = seed * 2654435761u + 1;
  for (int64_t i = 0; i < n; ++i) {
    const double t = static_cast<double>(i) / rate;
    const double f = 220.0 * std::pow(2.0, std::floor(t * 4 + static_cast<double>(seed)) / 12.0);  // a new note every 250 ms
    s = s * 6364136223846793005ull + 1442695040888963407ull;
    const double noise = (static_cast<double>(s >> 11) / 9007199254740992.0 - 0.5) * 0.05;
    x[static_cast<size_t>(i)] = static_cast<float>(0.3 * std::sin(2 * M_PI * f * t) * (0.6 + 0.4 * std::sin(2 * M_PI * 3 * t)) +
                                                   0.1 * std::sin(2 * M_PI * 3 * f * t) + noise);
  }
  return x;
}

void write_wav(const std::string& path, const std::vector<float>& x, int rate) {
  SF_INFO info{};
  info.samplerate = rate;
  info.channels = 1;
  info.format = SF_FORMAT_WAV | SF_FORMAT_FLOAT;
  SNDFILE* f = sf_open(path.c_str(), SFM_WRITE, &info);
  ASSERT_NE(f, nullptr) << path;
  ASSERT_EQ(sf_writef_float(f, x.data(), static_cast<sf_count_t>(x.size())), static_cast<sf_count_t>(x.size()));
  sf_close(f);
}

// embeddings.h5 as the test reads it.
struct Embedded {
  std::vector<std::string> paths, fail_paths, fail_reasons;
  std::vector<double> duration;
  std::vector<uint8_t> padded;
  std::vector<int64_t> crops;
  std::vector<float> scene;
  int64_t dim = 0, levels = 0;
  std::vector<std::vector<float>> emb;
  std::vector<std::vector<double>> ts;
  std::vector<std::vector<int64_t>> offsets;
  size_t file(const std::string& name) const {
    for (size_t i = 0; i < paths.size(); ++i)
      if (fs::path(paths[i]).filename() == name) return i;
    ADD_FAILURE() << name << " not in the embeddings";
    return 0;
  }
  // Level l's timestamps and rows of file i.
  std::vector<double> times(size_t i, int l) const {
    const auto& o = offsets[static_cast<size_t>(l)];
    return {ts[static_cast<size_t>(l)].begin() + o[i], ts[static_cast<size_t>(l)].begin() + o[i + 1]};
  }
  const float* row(size_t i, int l, int64_t r) const {
    return emb[static_cast<size_t>(l)].data() + (offsets[static_cast<size_t>(l)][i] + r) * dim;
  }
};

Embedded read_embedded(const std::string& path) {
  h5::Lock lock;
  h5::File f(H5Fopen(path.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT));
  EXPECT_GE(f.get(), 0) << path;
  Embedded e;
  e.dim = h5::read_attr_int(f.get(), "dim");
  e.levels = h5::read_attr_int(f.get(), "levels");
  e.paths = h5::read_strings(f.get(), "files/path");
  e.duration = h5::read_array<double>(f.get(), "files/duration_s");
  e.padded = h5::read_array<uint8_t>(f.get(), "files/padded");
  e.crops = h5::read_array<int64_t>(f.get(), "files/crops");
  e.scene = h5::read_array<float>(f.get(), "scene");
  e.fail_paths = h5::read_strings(f.get(), "failures/path");
  e.fail_reasons = h5::read_strings(f.get(), "failures/reason");
  for (int64_t l = 0; l < e.levels; ++l) {
    const std::string g = "level_" + std::to_string(l);
    e.emb.push_back(h5::read_array<float>(f.get(), g + "/embedding"));
    e.ts.push_back(h5::read_array<double>(f.get(), g + "/timestamp_ms"));
    e.offsets.push_back(h5::read_array<int64_t>(f.get(), g + "/offsets"));
  }
  return e;
}

std::string embed_cmd(int np, const std::string& out, const std::string& args) {
  return mpirun(np) + MART_EMBED + " --checkpoint " + kRun + " --output " + out + " --embed.threads 1 " + args;
}

class EmbedAudio : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    for (const auto& d : {kCorpus, kData, kRun, kProbe, kProbeData, kOut}) fs::remove_all(d);
    auto s = run(std::string(MART_SYNTH) + " --output " + kCorpus + " --synth.tracks 12 --synth.seconds 2 --synth.seed 7");
    ASSERT_EQ(s.code, 0) << s.output;
    auto p = run(mpirun(2) + MART_PREPROCESS + " --dataset.kind synth --input " + kCorpus + " --output " + kData + kShape +
                 " --features.views 1 --preprocess.unit_tracks 4");
    ASSERT_EQ(p.code, 0) << p.output;
    // 40 steps, not 4: BatchNorm's running statistics must move away from their initial values,
    // or every crop embeds to nearly the same vector (1e-5 apart) and no comparison means much.
    auto t = run(mpirun(2) + MART_TRAIN + " --data " + kData + " --run " + kRun +
                     " --model.fcn_channels 4,4,8,8,8,8,16 --model.dim 16 --model.heads 2 --model.head_dim 4"
                     " --model.ff_dim 16 --model.projection_dim 8 --train.batch_size 4 --train.max_steps 40 --train.threads 1",
                 300);
    ASSERT_EQ(t.code, 0) << t.output;
    // The probe files: lengths chosen so the crops can be counted by hand.
    fs::create_directories(kProbe + "/sub");
    write_wav(kProbe + "/exact.wav", music(3 * kL0, kRate, 1), kRate);     // three crops, no tail
    write_wav(kProbe + "/tail.wav", music(20480, kRate, 2), kRate);        // 2.5 clips: an end-aligned third crop
    write_wav(kProbe + "/short.wav", music(5000, kRate, 3), kRate);        // shorter than a clip: padded
    write_wav(kProbe + "/sub/resampled.wav", music(44100, 44100, 4), 44100);  // 1 s at 44.1 kHz
    int copied = 0;  // two synth tracks (2 s: five regular crops and an end crop)
    for (const auto& e : fs::directory_iterator(kCorpus + "/audio"))
      if (copied < 2 && e.path().extension() == ".wav") fs::copy_file(e.path(), kProbe + "/synth" + std::to_string(copied++) + ".wav");
    // mart-eval's view of the same files: shards (short.wav is refused as too short).
    auto pp = run(mpirun(1) + MART_PREPROCESS + " --dataset.kind folder --input " + kProbe + " --output " + kProbeData +
                  kShape + " --features.views 0 --preprocess.max_failures 1");
    ASSERT_EQ(pp.code, 0) << pp.output;
    auto e = run(embed_cmd(1, kOut, "--input " + kProbe + " --embed.formats h5,csv,npy"), 120);
    ASSERT_EQ(e.code, 0) << e.output;
  }
};

// What mart-eval computes for a shard track (src/eval/embed.cpp, embed_shard): the non-overlapping
// crops k = 0, T, 2T, ... of view 0, all in one call to the feature source.
std::vector<float> eval_crops(const mart::data::ShardReader& r, int64_t t, mart::eval::FeatureSource& src,
                              std::vector<int64_t>* starts) {
  const auto& f = r.features();
  starts->clear();
  for (int64_t k = 0; k < r.valid_starts(t); k += f.frames) starts->push_back(k);
  const size_t hier = static_cast<size_t>(f.clips_total() * f.n_mels * f.frames);
  std::vector<float> buf(starts->size() * hier);
  for (size_t c = 0; c < starts->size(); ++c) r.crop_into(t, (*starts)[c], 0, buf.data() + c * hier);
  std::vector<std::vector<float>> out;
  src.embed(buf.data(), static_cast<int64_t>(starts->size()), &out);
  return out[0];
}

double norm(const float* x, int64_t d) {
  double s = 0;
  for (int64_t i = 0; i < d; ++i) s += double(x[i]) * x[i];
  return std::sqrt(s);
}

double max_abs_diff(const float* a, const float* b, int64_t d) {
  double m = 0;
  for (int64_t i = 0; i < d; ++i) m = std::max(m, std::abs(double(a[i]) - b[i]));
  return m;
}

TEST_F(EmbedAudio, CropsAreTheShardCropsUpToFloat16) {
  const auto m = mart::data::load_manifest(kProbeData + "/manifest.json");
  const auto& f = m.features;
  mart::audio::TrackLogMels mels(f);
  const int64_t hier = f.clips_total() * f.n_mels * f.frames;
  int tracks = 0;
  for (const auto& s : m.shards) {
    mart::data::ShardReader r(kProbeData + "/" + s.file, f);
    for (int64_t t = 0; t < r.num_tracks(); ++t, ++tracks) {
      mart::audio::DecodeOptions d;
      d.target_rate = f.sample_rate;
      std::vector<std::vector<float>> whole = mels.compute(mart::audio::decode_mono(r.track(t).path, d));
      for (auto& level : whole)  // what the shard stores
        for (float& v : level) v = mart::data::half_to_float(mart::data::float_to_half(v));
      // Every start the shard allows, the end-aligned ones included.
      std::vector<float> mine(static_cast<size_t>(hier));
      for (int64_t k = 0; k < r.valid_starts(t); ++k) {
        mart::embed::cut_crop(f, whole, k, mine.data());
        ASSERT_EQ(mine, r.crop(t, k, 0)) << r.track(t).path << " start " << k;
      }
    }
  }
  EXPECT_EQ(tracks, 5);  // all probe files but short.wav
}

TEST_F(EmbedAudio, LevelZeroIsMartEvalsCropEmbeddingUpToFloat16) {
  const auto e = read_embedded(kOut + "/embeddings.h5");
  const auto ckpt = mart::run::open_checkpoint(kRun);
  auto src = mart::eval::mart_source(ckpt.dir, ckpt.model, 1, 1);
  const auto m = mart::data::load_manifest(kProbeData + "/manifest.json");
  const auto& f = m.features;
  const int64_t D = e.dim;
  // The same crops cut from float32 log-mels (no float16 step), through the same feature source:
  // this isolates the float16 effect from anything else (decoding, geometry, batching).
  mart::audio::TrackLogMels mels(f);
  const size_t hier = static_cast<size_t>(f.clips_total() * f.n_mels * f.frames);
  double worst = 0, worst_f16 = 0, worst_f32 = 0, worst_scene = 0;
  int crops = 0;
  std::vector<std::vector<float>> all_crops;  // mart-eval's, to see how far apart different crops are
  for (const auto& s : m.shards) {
    mart::data::ShardReader r(kProbeData + "/" + s.file, f);
    for (int64_t t = 0; t < r.num_tracks(); ++t) {
      std::vector<int64_t> starts;
      const std::vector<float> eval = eval_crops(r, t, *src, &starts);
      const size_t i = e.file(fs::path(r.track(t).path).filename().string());
      ASSERT_EQ(e.paths[i], r.track(t).path);
      mart::audio::DecodeOptions d;
      d.target_rate = f.sample_rate;
      const auto whole = mels.compute(mart::audio::decode_mono(r.track(t).path, d));
      std::vector<float> buf(starts.size() * hier);
      for (size_t c = 0; c < starts.size(); ++c) mart::embed::cut_crop(f, whole, starts[c], buf.data() + c * hier);
      std::vector<std::vector<float>> out;
      src->embed(buf.data(), static_cast<int64_t>(starts.size()), &out);
      // mart-embed's level-0 rows are its crops in start order: the regular ones first.
      const auto times = e.times(i, 0);
      ASSERT_GE(times.size(), starts.size());
      std::vector<double> mean(static_cast<size_t>(D), 0.0);
      for (size_t c = 0; c < starts.size(); ++c, ++crops) {
        EXPECT_DOUBLE_EQ(times[c], (double(starts[c] * kHop0) + 0.5 * kL0) / kRate * 1000);
        const float* ours = e.row(i, 0, static_cast<int64_t>(c));
        const float* theirs = eval.data() + c * static_cast<size_t>(D);
        const double n = norm(theirs, D);
        all_crops.emplace_back(theirs, theirs + D);
        worst = std::max(worst, max_abs_diff(ours, theirs, D) / n);
        worst_f16 = std::max(worst_f16, max_abs_diff(out[0].data() + c * static_cast<size_t>(D), theirs, D) / n);
        worst_f32 = std::max(worst_f32, max_abs_diff(ours, out[0].data() + c * static_cast<size_t>(D), D) / n);
        for (int64_t x = 0; x < D; ++x) mean[static_cast<size_t>(x)] += ours[x] / double(starts.size());
      }
      // The track embedding mart-eval computes is the mean over the regular crops.
      std::vector<float> eval_track(static_cast<size_t>(D), 0.0f);
      for (int64_t x = 0; x < D; ++x) {
        double sum = 0;
        for (size_t c = 0; c < starts.size(); ++c) sum += eval[c * static_cast<size_t>(D) + static_cast<size_t>(x)];
        eval_track[static_cast<size_t>(x)] = static_cast<float>(sum / double(starts.size()));
      }
      const std::vector<float> mean_f(mean.begin(), mean.end());
      worst_scene = std::max(worst_scene, max_abs_diff(mean_f.data(), eval_track.data(), D) / norm(eval_track.data(), D));
      // The scene is the mean over all crops; with no end crop (exact.wav) it is mart-eval's track embedding.
      std::vector<double> all(static_cast<size_t>(D), 0.0);
      for (int64_t c = 0; c < e.crops[i]; ++c)
        for (int64_t x = 0; x < D; ++x) all[static_cast<size_t>(x)] += e.row(i, 0, c)[x] / double(e.crops[i]);
      for (int64_t x = 0; x < D; ++x) EXPECT_NEAR(e.scene[i * D + x], all[static_cast<size_t>(x)], 1e-6);
      if (fs::path(e.paths[i]).filename() == "exact.wav") {
        ASSERT_EQ(e.crops[i], static_cast<int64_t>(starts.size()));
        EXPECT_LT(max_abs_diff(e.scene.data() + i * D, eval_track.data(), D) / norm(eval_track.data(), D), kFloat16Tolerance);
      }
    }
  }
  EXPECT_EQ(crops, 3 + 2 + 2 + 5 + 5);  // exact, tail, resampled, two synth tracks
  double closest = 1e300;  // the smallest difference between two different crops, relative
  for (size_t a = 0; a < all_crops.size(); ++a)
    for (size_t b = a + 1; b < all_crops.size(); ++b)
      closest = std::min(closest, max_abs_diff(all_crops[a].data(), all_crops[b].data(), D) / norm(all_crops[a].data(), D));
  std::printf("level-0 max |diff| / |eval crop|: mart-embed vs mart-eval %.3g; float16 step alone %.3g; "
              "mart-embed vs float32 crops %.3g; track mean %.3g; two different crops at least %.3g apart\n",
              worst, worst_f16, worst_f32, worst_scene, closest);
  // Without the float16 step it is the same computation (only the batch differs): float32 rounding.
  EXPECT_LT(worst_f32, 1e-5);
  // So the whole gap to mart-eval is the float16 rounding of the shards' log-mels (relative error
  // up to 2^-11 = 4.9e-4, i.e. up to 0.008 on log-mels of magnitude <= 16), carried through the
  // encoder and the transformer: measured 2.3e-3 of the embedding's norm for this checkpoint. The
  // bound leaves a factor 4, and the gap must stay well below the distance between any two
  // different crops (measured 2.4e-2), so a crop taken at another start would fail here.
  EXPECT_LT(worst, kFloat16Tolerance);
  EXPECT_LT(worst, 0.5 * closest);
  EXPECT_LT(worst_scene, kFloat16Tolerance);
}

TEST_F(EmbedAudio, TimestampsAndRowsForHandComputedFiles) {
  const auto e = read_embedded(kOut + "/embeddings.h5");
  ASSERT_EQ(e.paths.size(), 6u);
  ASSERT_EQ(e.levels, 3);
  EXPECT_EQ(e.dim, 16);
  EXPECT_EQ(e.scene.size(), 6u * 16);
  EXPECT_TRUE(e.fail_paths.empty());
  for (int l = 0; l < 3; ++l) {
    EXPECT_EQ(e.offsets[static_cast<size_t>(l)].size(), 7u);
    EXPECT_EQ(static_cast<int64_t>(e.emb[static_cast<size_t>(l)].size()), e.offsets[static_cast<size_t>(l)].back() * e.dim);
  }
  auto ms = [](double sample) { return sample / kRate * 1000; };
  // Centres in samples of level l's clips for the crops starting at these top-level hops, sorted.
  auto centres = [&](std::vector<int64_t> starts, int l) {
    std::vector<double> t;
    const int64_t Ll = kL0 >> l;
    for (int64_t k : starts)
      for (int64_t c = 0; c < (int64_t{1} << l); ++c) t.push_back(ms(double(k * kHop0) + (double(c) + 0.5) * double(Ll)));
    std::stable_sort(t.begin(), t.end());
    return t;
  };
  struct Case {
    const char* name;
    double duration;
    bool padded;
    std::vector<int64_t> starts;  // top-level hops
  };
  const std::vector<Case> cases = {
      {"exact.wav", 3.0 * kL0 / kRate, false, {0, 16, 32}},
      // 20480 samples: frames 1 + 20480/128 = 161; valid starts (161 - 64) / 4 + 1 = 25; the last is 24.
      {"tail.wav", 20480.0 / kRate, false, {0, 16, 24}},
      {"short.wav", 5000.0 / kRate, true, {0}},
      // 22050 samples after resampling: frames 173, valid starts (173 - 64) / 4 + 1 = 28.
      {"resampled.wav", 1.0, false, {0, 16, 27}},
      // 44100 samples: frames 345, valid starts 71.
      {"synth0.wav", 2.0, false, {0, 16, 32, 48, 64, 70}},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.name);
    const size_t i = e.file(c.name);
    EXPECT_NEAR(e.duration[i], c.duration, 1e-9);
    EXPECT_EQ(e.padded[i], c.padded ? 1 : 0);
    EXPECT_EQ(e.crops[i], static_cast<int64_t>(c.starts.size()));
    for (int l = 0; l < 3; ++l) {
      const auto got = e.times(i, l), want = centres(c.starts, l);
      ASSERT_EQ(got.size(), want.size()) << "level " << l;
      for (size_t r = 0; r < got.size(); ++r) EXPECT_NEAR(got[r], want[r], 1e-9) << "level " << l << " row " << r;
    }
  }
  // The tail file's level-1 rows by hand: 2048, 6144, 10240, 14336 (crop 16), 14336 (end crop), 18432 samples.
  const auto t1 = e.times(e.file("tail.wav"), 1);
  const std::vector<double> want{ms(2048), ms(6144), ms(10240), ms(14336), ms(14336), ms(18432)};
  ASSERT_EQ(t1.size(), want.size());
  for (size_t r = 0; r < want.size(); ++r) EXPECT_NEAR(t1[r], want[r], 1e-9);
  // Equal times keep crop order: row 3 is crop 16's second half, row 4 the end crop's first half,
  // and they differ (the audio around them differs).
  const size_t tail = e.file("tail.wav");
  EXPECT_GT(max_abs_diff(e.row(tail, 1, 3), e.row(tail, 1, 4), e.dim), 0.0);
}

TEST_F(EmbedAudio, OneAndTwoRanksWriteTheSameEmbeddings) {
  const std::string two = mart::test::fresh_dir("mart_embed_out2");
  // One file per rank per round: several rounds, and files land on both ranks.
  auto r = run(embed_cmd(2, two, "--input " + kProbe + " --embed.files_per_round 1"), 120);
  ASSERT_EQ(r.code, 0) << r.output;
  EXPECT_NE(r.output.find("6/6 files embedded"), std::string::npos) << r.output;
  const auto a = read_embedded(kOut + "/embeddings.h5"), b = read_embedded(two + "/embeddings.h5");
  EXPECT_EQ(a.paths, b.paths);
  EXPECT_EQ(a.duration, b.duration);
  EXPECT_EQ(a.padded, b.padded);
  EXPECT_EQ(a.crops, b.crops);
  EXPECT_EQ(a.scene, b.scene);  // bit for bit
  EXPECT_EQ(a.emb, b.emb);
  EXPECT_EQ(a.ts, b.ts);
  EXPECT_EQ(a.offsets, b.offsets);
  EXPECT_FALSE(fs::exists(two + "/scene.csv"));  // h5 only by default
}

TEST_F(EmbedAudio, BadFilesAreSkippedAndBadInputIsRefused) {
  const std::string dir = mart::test::fresh_dir("mart_embed_bad");
  fs::create_directories(dir + "/empty");
  {
    std::ofstream g(dir + "/garbage.wav", std::ios::binary);
    for (int i = 0; i < 5000; ++i) g.put(static_cast<char>((i * 7919) % 251));
  }
  std::ofstream(dir + "/list.txt") << "# a comment\n" << kProbe << "/exact.wav\n\ngarbage.wav\n" << kProbe << "/tail.wav\n";
  auto r = run(embed_cmd(2, dir + "/out", "--input_list " + dir + "/list.txt"), 120);
  ASSERT_EQ(r.code, 0) << r.output;
  EXPECT_NE(r.output.find("garbage.wav"), std::string::npos) << r.output;
  const auto e = read_embedded(dir + "/out/embeddings.h5");
  ASSERT_EQ(e.paths.size(), 2u);
  ASSERT_EQ(e.fail_paths.size(), 1u);
  EXPECT_EQ(e.fail_paths[0], dir + "/garbage.wav");  // relative to the list's folder
  EXPECT_FALSE(e.fail_reasons[0].empty());
  const auto failures = nlohmann::json::parse(std::ifstream(dir + "/out/failures.json"));
  ASSERT_EQ(failures.size(), 1u);
  EXPECT_EQ(failures[0]["path"], dir + "/garbage.wav");
  // The others are embedded as in the run over the folder.
  const auto all = read_embedded(kOut + "/embeddings.h5");
  for (const char* name : {"exact.wav", "tail.wav"}) {
    const size_t i = e.file(name), j = all.file(name);
    for (int l = 0; l < 3; ++l) EXPECT_EQ(e.times(i, l), all.times(j, l)) << name;
    EXPECT_EQ(std::vector<float>(e.row(i, 2, 0), e.row(i, 2, 0) + e.dim), std::vector<float>(all.row(j, 2, 0), all.row(j, 2, 0) + e.dim));
  }
  // Only bad files: an error, with the failures still written.
  std::ofstream(dir + "/bad.txt") << dir << "/garbage.wav\n";
  auto only = run(embed_cmd(1, dir + "/out_bad", "--input_list " + dir + "/bad.txt"), 120);
  EXPECT_EQ(only.code, 1) << only.output;
  EXPECT_TRUE(fs::exists(dir + "/out_bad/failures.json"));
  // A limit on failures: 1 of 3 is more than 10%.
  auto limit = run(embed_cmd(1, dir + "/out_limit", "--input_list " + dir + "/list.txt --embed.max_failures 0.1"), 120);
  EXPECT_EQ(limit.code, 1) << limit.output;
  // Configuration errors: exit 2 before any work, naming the path.
  const std::string missing = dir + "/no/such/file.wav";
  auto m = run(embed_cmd(2, dir + "/out_missing", "--input " + missing), 60);
  EXPECT_EQ(m.code, 2) << m.output;
  EXPECT_NE(m.output.find(missing), std::string::npos) << m.output;
  auto empty = run(embed_cmd(1, dir + "/out_empty", "--input " + dir + "/empty"), 60);
  EXPECT_EQ(empty.code, 2) << empty.output;
  EXPECT_NE(empty.output.find("holds no audio"), std::string::npos) << empty.output;
  auto fmt = run(embed_cmd(1, dir + "/out_fmt", "--input " + kProbe + " --embed.formats parquet"), 60);
  EXPECT_EQ(fmt.code, 2) << fmt.output;
  // A checkpoint written before features were stored.
  const auto ckpt = mart::run::open_checkpoint(kRun);
  const std::string old = dir + "/old_ckpt";
  fs::copy(ckpt.dir, old);
  auto state = nlohmann::json::parse(std::ifstream(old + "/state.json"));
  ASSERT_TRUE(state.contains("features"));
  state.erase("features");
  state.erase("files");  // nor file hashes: an older checkpoint's marker is a bare "ok"
  std::ofstream(old + "/state.json") << state.dump();
  std::ofstream(old + "/COMPLETE") << "ok\n";
  auto o = run(mpirun(1) + MART_EMBED + " --checkpoint " + old + " --output " + dir + "/out_old --input " + kProbe, 60);
  EXPECT_EQ(o.code, 2) << o.output;
  EXPECT_NE(o.output.find("predates stored features"), std::string::npos) << o.output;
}

std::vector<std::string> split(const std::string& line) {
  std::vector<std::string> out;
  std::stringstream in(line);
  for (std::string x; std::getline(in, x, ',');) out.push_back(x);
  return out;
}

// .npy: magic, version 1.0, header length, a dict header, then the data.
template <typename T>
std::vector<T> read_npy(const std::string& path, std::string* header) {
  std::ifstream in(path, std::ios::binary);
  std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  EXPECT_EQ(bytes.substr(0, 8), std::string("\x93NUMPY\x01\x00", 8)) << path;
  const size_t len = static_cast<uint8_t>(bytes[8]) | (static_cast<size_t>(static_cast<uint8_t>(bytes[9])) << 8);
  EXPECT_EQ((10 + len) % 64, 0u);
  *header = bytes.substr(10, len);
  std::vector<T> v((bytes.size() - 10 - len) / sizeof(T));
  std::memcpy(v.data(), bytes.data() + 10 + len, v.size() * sizeof(T));
  return v;
}

TEST_F(EmbedAudio, CsvAndNpyReadBackAsTheHdf5) {
  const auto e = read_embedded(kOut + "/embeddings.h5");
  const int64_t D = e.dim;
  {
    std::ifstream in(kOut + "/scene.csv");
    std::string line;
    std::getline(in, line);
    EXPECT_EQ(split(line).size(), static_cast<size_t>(1 + D));
    EXPECT_EQ(line.substr(0, 8), "path,e0,");
    size_t i = 0;
    for (; std::getline(in, line); ++i) {
      const auto f = split(line);
      ASSERT_EQ(f.size(), static_cast<size_t>(1 + D));
      EXPECT_EQ(f[0], e.paths[i]);
      // Shortest round-trip text: the same float, not just close to it.
      for (int64_t d = 0; d < D; ++d) EXPECT_EQ(std::stof(f[static_cast<size_t>(1 + d)]), e.scene[i * D + d]);
    }
    EXPECT_EQ(i, e.paths.size());
  }
  for (int l = 0; l < 3; ++l) {
    std::ifstream in(kOut + "/level_" + std::to_string(l) + ".csv");
    std::string line;
    std::getline(in, line);
    EXPECT_EQ(line.substr(0, 21), "path,timestamp_ms,e0,");
    size_t r = 0;
    for (; std::getline(in, line); ++r) {
      const auto f = split(line);
      ASSERT_EQ(f.size(), static_cast<size_t>(2 + D));
      size_t file = 0;
      while (static_cast<int64_t>(r) >= e.offsets[static_cast<size_t>(l)][file + 1]) ++file;
      EXPECT_EQ(f[0], e.paths[file]);
      EXPECT_EQ(std::stod(f[1]), e.ts[static_cast<size_t>(l)][r]);
      for (int64_t d = 0; d < D; ++d) EXPECT_EQ(std::stof(f[static_cast<size_t>(2 + d)]), e.emb[static_cast<size_t>(l)][r * D + d]);
    }
    EXPECT_EQ(static_cast<int64_t>(r), e.offsets[static_cast<size_t>(l)].back());
  }
  // NPY per file, named by input index and stem.
  const size_t i = e.file("tail.wav");
  char num[16];
  std::snprintf(num, sizeof(num), "%06zu", i);
  const std::string base = kOut + "/npy/" + num + "_tail";
  std::string header;
  EXPECT_EQ(read_npy<float>(base + ".scene.npy", &header), std::vector<float>(e.scene.begin() + i * D, e.scene.begin() + (i + 1) * D));
  EXPECT_NE(header.find("'descr': '<f4', 'fortran_order': False, 'shape': (16,)"), std::string::npos) << header;
  const auto emb = read_npy<float>(base + ".level_2.npy", &header);
  EXPECT_NE(header.find("'shape': (12, 16)"), std::string::npos) << header;
  EXPECT_EQ(emb, std::vector<float>(e.row(i, 2, 0), e.row(i, 2, 0) + 12 * D));
  EXPECT_EQ(read_npy<double>(base + ".level_2.timestamp_ms.npy", &header), e.times(i, 2));
  EXPECT_NE(header.find("'descr': '<f8'"), std::string::npos) << header;
}

}  // namespace
