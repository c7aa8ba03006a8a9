// mart-preprocess end to end: rank-count independence, kill and resume, broken files, and the
// output-folder rules. Each test runs the real executable under mpirun.
#include <gtest/gtest.h>
#include <signal.h>
#include <sndfile.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <thread>

#include "../util/proc.h"
#include "mart/audio/cqt.h"
#include "mart/audio/decode.h"
#include "mart/data/manifest.h"
#include "mart/data/shard.h"

namespace fs = std::filesystem;
using mart::test::mpirun;
using mart::test::run;

namespace {

const std::string kShape = " --features.clip_samples 16384 --features.levels 3 --features.frames 32 --features.views 1";
const std::string kFeatures = kShape + " --features.n_mels 32";

std::string corpus_dir() { return (fs::temp_directory_path() / "mart_pp_corpus").string(); }

class PreprocessStage : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    fs::remove_all(corpus_dir());
    auto r = run(std::string(MART_SYNTH) + " --output " + corpus_dir() +
                 " --synth.tracks 12 --synth.versions 3 --synth.seconds 3 --synth.seed 5");
    ASSERT_EQ(r.code, 0) << r.output;
  }
  static std::string preprocess(int np, const std::string& out, const std::string& extra = "",
                                const std::string& features = kFeatures) {
    return mpirun(np) + MART_PREPROCESS + " --dataset.kind synth --input " + corpus_dir() + " --output " + out +
           features + " --preprocess.unit_tracks 2 " + extra;
  }
};

// Every shard of `a` equals the one of `b`: metadata, labels and every stored array.
void expect_same_contents(const std::string& a, const std::string& b) {
  const auto ma = mart::data::load_manifest(a + "/manifest.json");
  const auto mb = mart::data::load_manifest(b + "/manifest.json");
  ASSERT_EQ(ma.shards.size(), mb.shards.size());
  EXPECT_EQ(ma.failures.size(), mb.failures.size());
  EXPECT_EQ(ma.labels.tag_names, mb.labels.tag_names);
  const auto levels = mart::data::stored_levels(ma.features);
  for (size_t s = 0; s < ma.shards.size(); ++s) {
    ASSERT_EQ(ma.shards[s].file, mb.shards[s].file);
    mart::data::ShardReader ra(a + "/" + ma.shards[s].file, ma.features), rb(b + "/" + mb.shards[s].file, mb.features);
    ASSERT_EQ(ra.num_tracks(), rb.num_tracks());
    for (int64_t t = 0; t < ra.num_tracks(); ++t) {
      EXPECT_EQ(ra.track(t).id, rb.track(t).id);
      EXPECT_EQ(ra.track(t).tags, rb.track(t).tags);
      EXPECT_EQ(ra.track(t).class_index, rb.track(t).class_index);
      EXPECT_EQ(ra.track(t).cover_group, rb.track(t).cover_group);
      for (int v = 0; v <= ma.features.views; ++v)
        for (int level : levels) EXPECT_EQ(ra.track_level(t, v, level), rb.track_level(t, v, level)) << ra.track(t).id;
    }
  }
}

TEST_F(PreprocessStage, OneAndTwoRanksWriteTheSameShards) {
  const auto one = mart::test::fresh_dir("mart_pp_one"), two = mart::test::fresh_dir("mart_pp_two");
  auto r1 = run(preprocess(1, one));
  ASSERT_EQ(r1.code, 0) << r1.output;
  auto r2 = run(preprocess(2, two));
  ASSERT_EQ(r2.code, 0) << r2.output;
  const auto m = mart::data::load_manifest(two + "/manifest.json");
  EXPECT_EQ(m.total_tracks(), 12);
  EXPECT_EQ(m.shards.size(), 6u);  // 12 tracks in units of 2, whatever the rank count
  expect_same_contents(one, two);
}

// --features.cqt true: every shard carries the clean audio's constant-Q, 20-frame means, equal to
// what mart/audio/cqt.h computes from the decoded file; without it a shard has none, and the
// option changes the content hash (a run without it cannot be resumed with it).
TEST_F(PreprocessStage, ConstantQIsStoredWhenAsked) {
  const auto out = mart::test::fresh_dir("mart_pp_cqt");
  auto r = run(preprocess(2, out, "--features.cqt true"));
  ASSERT_EQ(r.code, 0) << r.output;
  const auto m = mart::data::load_manifest(out + "/manifest.json");
  int64_t checked = 0;
  mart::audio::ConstantQ cqt(mart::audio::CqtParams{});
  for (const auto& sh : m.shards) {
    mart::data::ShardReader reader(out + "/" + sh.file, m.features);
    ASSERT_EQ(reader.cqt_bins(), 84);
    reader.verify_all();  // the constant-Q's checksums too
    for (int64_t t = 0; t < reader.num_tracks(); ++t) {
      mart::audio::DecodeOptions d;
      d.target_rate = m.features.sample_rate;
      const auto x = mart::audio::decode_mono(reader.track(t).path, d);
      const auto want = mart::audio::ConstantQ::block_mean(cqt.magnitude(x.data(), static_cast<int64_t>(x.size())), 84, 20);
      const auto got = reader.track_cqt(t);
      ASSERT_EQ(got.size(), want.size()) << reader.track(t).id;
      EXPECT_EQ(got, want) << reader.track(t).id;
      ++checked;
    }
  }
  EXPECT_EQ(checked, 12);
  const auto plain = mart::test::fresh_dir("mart_pp_nocqt");
  ASSERT_EQ(run(preprocess(1, plain)).code, 0);
  const auto mp = mart::data::load_manifest(plain + "/manifest.json");
  EXPECT_EQ(mart::data::ShardReader(plain + "/" + mp.shards[0].file, mp.features).cqt_bins(), 0);
  auto resumed = run(preprocess(1, plain, "--features.cqt true --preprocess.resume true"));
  EXPECT_NE(resumed.code, 0) << "a run without the constant-Q resumed with it";
}

// Each rank of the killed run stops itself (SIGSTOP, mart/core/failpoint.h) once its first unit
// is on disk, so the kill lands mid-run whatever the machine's speed. Polling the clock instead
// raced on fast machines: the run finished before the kill.
TEST_F(PreprocessStage, KilledRunResumesToTheSameContents) {
  const auto full = mart::test::fresh_dir("mart_pp_full"), killed = mart::test::fresh_dir("mart_pp_killed");
  ASSERT_EQ(run(preprocess(2, full)).code, 0);
  auto finished_units = [&] {
    int64_t n = 0;
    if (fs::is_directory(killed))
      for (const auto& e : fs::directory_iterator(killed)) {
        const auto name = e.path().filename().string();
        n += name.rfind("shard-", 0) == 0 && e.path().extension() == ".json";
      }
    return n;
  };
  // Start a run in its own process group, kill -9 the whole group once a unit is finished.
  const pid_t pid = fork();
  if (pid == 0) {
    setsid();
    const std::string cmd = "MART_FAILPOINT=preprocess.unit_done@1 " + preprocess(2, killed) + " >/dev/null 2>&1";
    execl("/bin/sh", "sh", "-c", cmd.c_str(), static_cast<char*>(nullptr));
    _exit(127);
  }
  for (int i = 0; i < 1200 && finished_units() < 1; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(50));
  kill(-pid, SIGKILL);
  int status = 0;
  waitpid(pid, &status, 0);
  ASSERT_GE(finished_units(), 1) << "no unit finished before the kill";
  EXPECT_FALSE(fs::exists(killed + "/manifest.json")) << "the run finished before it could be killed";
  // Without --resume the folder is refused; with it the run completes.
  auto refused = run(preprocess(2, killed));
  EXPECT_EQ(refused.code, 2) << refused.output;
  EXPECT_NE(refused.output.find("--preprocess.resume"), std::string::npos) << refused.output;
  auto resumed = run(preprocess(2, killed, "--preprocess.resume"));
  ASSERT_EQ(resumed.code, 0) << resumed.output;
  expect_same_contents(full, killed);
  for (const auto& e : fs::directory_iterator(killed))
    EXPECT_EQ(e.path().string().find(".tmp"), std::string::npos) << "temporary file left: " << e.path();
}

TEST_F(PreprocessStage, AnotherConfigInTheOutputFolderStopsBeforeWork) {
  const auto out = mart::test::fresh_dir("mart_pp_other");
  auto first = run(preprocess(1, out, "", kShape + " --features.n_mels 128"));
  ASSERT_EQ(first.code, 0) << first.output;
  // 128 mels on a 256-point FFT leave filters empty (DESIGN.md): the stage says so once.
  EXPECT_NE(first.output.find("of 128 mel filters are empty"), std::string::npos) << first.output;
  auto r = run(preprocess(2, out, "--features.n_fft 512 --preprocess.resume", kShape + " --features.n_mels 128"));
  EXPECT_EQ(r.code, 2) << r.output;
  EXPECT_NE(r.output.find("another preprocess configuration"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("--preprocess.force"), std::string::npos) << r.output;
  auto forced = run(preprocess(2, out, "--features.n_fft 512 --preprocess.force", kShape + " --features.n_mels 128"));
  EXPECT_EQ(forced.code, 0) << forced.output;
  EXPECT_EQ(mart::data::load_manifest(out + "/manifest.json").features.n_fft, 512);
}

void write_wav(const std::string& path, const std::vector<float>& x) {
  SF_INFO info{};
  info.samplerate = 22050;
  info.channels = 1;
  info.format = SF_FORMAT_WAV | SF_FORMAT_PCM_16;
  SNDFILE* f = sf_open(path.c_str(), SFM_WRITE, &info);
  sf_writef_float(f, x.data(), static_cast<sf_count_t>(x.size()));
  sf_close(f);
}

TEST_F(PreprocessStage, BrokenFilesAreReportedAndSkipped) {
  const auto in = mart::test::fresh_dir("mart_pp_broken_in"), out = mart::test::fresh_dir("mart_pp_broken_out");
  fs::create_directories(in);
  fs::copy_file(corpus_dir() + "/audio/synth-000000.wav", in + "/good.wav");
  std::ofstream(in + "/empty.wav").close();
  {  // truncated: the header promises more data than the file holds
    std::ifstream src(corpus_dir() + "/audio/synth-000001.wav", std::ios::binary);
    std::string bytes((std::istreambuf_iterator<char>(src)), {});
    std::ofstream(in + "/truncated.wav", std::ios::binary) << bytes.substr(0, bytes.size() / 3);
  }
  std::ofstream(in + "/garbage.mp3", std::ios::binary) << std::string(5000, '\x5a');
  std::ofstream(in + "/unsupported.flac", std::ios::binary) << "this is not audio at all";
  write_wav(in + "/silent.wav", std::vector<float>(22050 * 2, 0.f));
  write_wav(in + "/short.wav", std::vector<float>(4000, 0.3f));
  const std::string cmd = mpirun(2) + MART_PREPROCESS + " --input " + in + " --output " + out + kFeatures;
  auto r = run(cmd + " --preprocess.max_failures 1.0");
  ASSERT_EQ(r.code, 0) << r.output;
  const auto m = mart::data::load_manifest(out + "/manifest.json");
  EXPECT_EQ(m.total_tracks(), 1);
  ASSERT_EQ(m.failures.size(), 6u);
  std::map<std::string, std::string> why;
  for (const auto& f : m.failures) why[fs::path(f.path).filename().string()] = f.reason;
  EXPECT_NE(why["empty.wav"].find("empty"), std::string::npos) << why["empty.wav"];
  EXPECT_NE(why["truncated.wav"].find("truncated"), std::string::npos) << why["truncated.wav"];
  EXPECT_NE(why["silent.wav"].find("silent"), std::string::npos) << why["silent.wav"];
  EXPECT_NE(why["short.wav"].find("too short"), std::string::npos) << why["short.wav"];
  EXPECT_FALSE(why["garbage.mp3"].empty());
  EXPECT_FALSE(why["unsupported.flac"].empty());
  // Too many failures make the run an error, after the manifest is written.
  auto strict = run(cmd + " --preprocess.force --preprocess.max_failures 0.5");
  EXPECT_EQ(strict.code, 1) << strict.output;
  EXPECT_NE(strict.output.find("preprocess.max_failures"), std::string::npos) << strict.output;
  EXPECT_TRUE(fs::exists(out + "/manifest.json"));
}

TEST_F(PreprocessStage, MissingInputAndBadFeaturesStopBeforeWork) {
  const auto out = mart::test::fresh_dir("mart_pp_bad");
  auto r = run(mpirun(2) + MART_PREPROCESS + " --input /nonexistent/music --output " + out);
  EXPECT_EQ(r.code, 2) << r.output;
  EXPECT_NE(r.output.find("/nonexistent/music"), std::string::npos) << r.output;
  auto f = run(mpirun(1) + MART_PREPROCESS + " --input " + corpus_dir() + " --output " + out +
               " --features.clip_samples 1000");
  EXPECT_EQ(f.code, 2) << f.output;
  EXPECT_NE(f.output.find("features.clip_samples"), std::string::npos) << f.output;
}

}  // namespace
