// The fault-injection suite (ctest -L faults): every stage killed at a random point and rerun or
// resumed, a rank killed in every stage, a disk that fills up under every stage, and a flipped
// byte in a shard, a checkpoint and an embeddings file. Each case checks the exit code, the
// message and the files left behind. Tiny corpus and model: the suite takes a few minutes.
#include <gtest/gtest.h>
#include <fcntl.h>
#include <hdf5.h>
#include <signal.h>
#include <sys/statvfs.h>
#include <sys/wait.h>
#include <torch/torch.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <random>
#include <sstream>
#include <thread>

#include "../util/proc.h"
#include "mart/core/fs.h"
#include "mart/data/manifest.h"
#include "mart/eval/embed.h"
#include "mart/model/mart_model.h"
#include "mart/run/checkpoint.h"

namespace fs = std::filesystem;
using mart::test::fresh_dir;
using mart::test::mpirun;
using mart::test::run;

namespace {

std::string tmp(const std::string& n) { return (fs::temp_directory_path() / n).string(); }
const std::string kCorpus = tmp("mart_faults_corpus"), kData = tmp("mart_faults_data"), kRun = tmp("mart_faults_run"),
                  kEval = tmp("mart_faults_eval");
const std::string kFeatures =
    " --features.clip_samples 8192 --features.levels 3 --features.frames 16 --features.n_mels 16 --features.views 1";
const std::string kModel =
    " --model.fcn_channels 4,4,8,8,8,8,16 --model.dim 16 --model.heads 2 --model.head_dim 4 --model.ff_dim 16"
    " --model.projection_dim 8 --train.threads 1 --train.log_every 1 --train.splits train,valid,test --train.batch_size 4";
constexpr int kSteps = 8;

std::string preprocess(int np, const std::string& out, const std::string& extra = "") {
  return mpirun(np) + MART_PREPROCESS + " --dataset.kind synth --input " + kCorpus + " --output " + out + kFeatures +
         " --preprocess.unit_tracks 1 " + extra;
}
std::string train(int np, const std::string& dir, const std::string& extra = "", int steps = kSteps) {
  return mpirun(np) + MART_TRAIN + " --data " + kData + " --run " + dir + kModel + " --train.max_steps " +
         std::to_string(steps) + " --train.checkpoint_every 2 --train.keep_checkpoints 3 " + extra;
}
std::string eval(int np, const std::string& out, const std::string& extra = "") {
  return mpirun(np) + MART_EVAL + " --data " + kData + " --run " + out + " --checkpoint " + kRun +
         " --eval.tasks covers --eval.threads 1 " + extra;
}
std::string embed(int np, const std::string& out, const std::string& extra = "") {
  return mpirun(np) + MART_EMBED + " --checkpoint " + kRun + " --input " + kCorpus +
         "/audio --output " + out + " --embed.threads 1 --embed.files_per_round 1 --embed.formats h5,csv " + extra;
}

bool has(const std::string& text, const std::string& what) { return text.find(what) != std::string::npos; }

// ---- processes ----

// Starts `cmd` as its own process group (so the whole job can be killed); returns the shell's pid,
// which exec makes mpirun's.
pid_t spawn(const std::string& cmd) {
  const pid_t pid = fork();
  if (pid == 0) {
    setsid();
    execl("/bin/sh", "sh", "-c", ("exec " + cmd + " >/dev/null 2>&1").c_str(), static_cast<char*>(nullptr));
    _exit(127);
  }
  return pid;
}

bool wait_until(const std::function<bool()>& ready, double seconds) {
  for (int i = 0; i < seconds * 50; ++i) {
    if (ready()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return false;
}

int count_files(const std::string& dir, const std::string& prefix, const std::string& suffix) {
  int n = 0;
  if (!fs::is_directory(dir)) return 0;
  for (const auto& e : fs::directory_iterator(dir)) {
    const std::string name = e.path().filename().string();
    if (name.rfind(prefix, 0) == 0 && name.size() >= suffix.size() &&
        name.compare(name.size() - suffix.size(), suffix.size(), suffix) == 0)
      ++n;
  }
  return n;
}

void kill_job(pid_t pid) {
  kill(-pid, SIGKILL);
  waitpid(pid, nullptr, 0);
}

// The exit code of `pid` within `seconds` (-1, the job killed, when it took longer).
int wait_exit(pid_t pid, double seconds) {
  int status = 0;
  for (int i = 0; i < seconds * 50; ++i) {
    if (waitpid(pid, &status, WNOHANG) == pid) return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  kill_job(pid);
  return -1;
}

// A rank SIGKILLed once `ready`: the job must end, non-zero, within 60 s.
void expect_rank_kill_ends_job(const std::string& cmd, const std::string& exe, const std::function<bool()>& ready) {
  const pid_t pid = spawn(cmd);
  ASSERT_TRUE(wait_until(ready, 120)) << "the job never got going: " << cmd;
  std::vector<pid_t> ranks;
  wait_until([&] { return (ranks = mart::test::ranks_of(pid, exe)).size() == 2; }, 10);
  if (ranks.size() != 2) kill_job(pid);
  ASSERT_EQ(ranks.size(), 2u);
  const auto t0 = std::chrono::steady_clock::now();
  kill(ranks[1], SIGKILL);
  const int code = wait_exit(pid, 60);
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  EXPECT_NE(code, -1) << "the job hung for 60 s after a rank died";
  EXPECT_NE(code, 0);
  EXPECT_LT(s, 60);
}

// A random moment, reproducible from the seed printed on failure.
uint32_t seed() {
  static const uint32_t s = [] {
    const char* e = std::getenv("MART_FAULTS_SEED");
    return e ? static_cast<uint32_t>(std::stoul(e)) : static_cast<uint32_t>(std::random_device{}());
  }();
  return s;
}
int pick(int lo, int hi) {
  static std::mt19937 rng(seed());
  return std::uniform_int_distribution<int>(lo, hi)(rng);
}

// ---- files ----

std::string slurp(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

// Overwrites `n` bytes at `offset` with bytes that differ from the old ones.
void damage(const std::string& path, int64_t offset, int64_t n) {
  std::fstream f(path, std::ios::in | std::ios::out | std::ios::binary);
  std::mt19937 rng(seed());
  std::vector<char> buf(static_cast<size_t>(n));
  f.seekg(offset);
  f.read(buf.data(), n);
  for (auto& c : buf) c = static_cast<char>(c ^ (1 + rng() % 255));
  f.seekp(offset);
  f.write(buf.data(), n);
}

// Where the first chunk of an HDF5 dataset lies in its file: {offset, bytes}.
std::pair<int64_t, int64_t> first_chunk(const std::string& file, const std::string& dataset) {
  const hid_t f = H5Fopen(file.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT);
  const hid_t d = H5Dopen2(f, dataset.c_str(), H5P_DEFAULT);
  haddr_t addr = 0;
  hsize_t size = 0, offset[2];
  unsigned mask = 0;
  const hid_t space = H5Dget_space(d);
  const herr_t rc = H5Dget_chunk_info(d, space, 0, offset, &mask, &addr, &size);
  H5Sclose(space);
  H5Dclose(d);
  H5Fclose(f);
  EXPECT_GE(rc, 0) << file << " " << dataset;
  return {static_cast<int64_t>(addr), static_cast<int64_t>(size)};
}

std::vector<std::string> leftovers(const std::string& dir) {  // temporary files and folders
  std::vector<std::string> out;
  if (!fs::exists(dir)) return out;
  for (const auto& e : fs::recursive_directory_iterator(dir))
    if (has(e.path().filename().string(), ".tmp")) out.push_back(e.path().string());
  return out;
}

std::vector<std::pair<std::string, std::string>> shard_hashes(const std::string& dir) {
  std::vector<std::pair<std::string, std::string>> out;
  for (const auto& s : mart::data::load_manifest(dir + "/manifest.json").shards) out.emplace_back(s.file, s.fnv1a64);
  return out;
}

std::vector<torch::Tensor> weights(const std::string& run_dir) {
  std::vector<torch::Tensor> out;
  for (auto& [name, t] : mart::model::read_exported_state_dict(run_dir + "/model_state_dict.pt")) out.push_back(t);
  return out;
}

void expect_same_weights(const std::string& a_dir, const std::string& b_dir) {
  const auto a = weights(a_dir), b = weights(b_dir);
  ASSERT_EQ(a.size(), b.size());
  ASSERT_FALSE(a.empty());
  for (size_t i = 0; i < a.size(); ++i) EXPECT_TRUE(torch::equal(a[i], b[i])) << "tensor " << i;
}

// A folder on a disk that fills up: a small tmpfs where this process may mount one (root in a
// container that allows it), else a limit on the size of every file a command writes
// (RLIMIT_FSIZE via `ulimit -f`, with SIGXFSZ ignored so that write() fails with EFBIG instead of
// the signal killing the process). `reason` is the system's text the stages must report.
class SmallDisk {
 public:
  explicit SmallDisk(const std::string& name) : dir_(fresh_dir(name)) {
    fs::create_directories(dir_);
    const char* how = std::getenv("MART_FAULTS_DISK");  // "ulimit" forces the fallback
    tmpfs_ = !(how && std::string(how) == "ulimit") &&
             std::system(("mount -t tmpfs -o size=64m tmpfs " + dir_ + " 2>/dev/null").c_str()) == 0;
  }
  ~SmallDisk() {
    if (tmpfs_ && std::system(("umount " + dir_).c_str()) != 0) ADD_FAILURE() << "cannot unmount " << dir_;
  }
  const std::string& dir() const { return dir_; }
  std::string reason() const { return tmpfs_ ? "No space left on device" : "File too large"; }
  // `cmd` (mpirun ... exe args) run with `free` bytes left on the tmpfs, or (without one) with
  // the ranks' files limited to `largest` bytes: mpirun itself needs its shared-memory files, so
  // the limit wraps the rank command (dash's `ulimit -f` counts 512-byte blocks).
  std::string limited(const std::string& cmd, const std::string& exe, int64_t free, int64_t largest) {
    if (!tmpfs_) {
      const size_t at = cmd.find(exe);
      return cmd.substr(0, at) + "sh -c 'trap \"\" XFSZ; ulimit -f " + std::to_string(largest / 512) + "; exec " +
             cmd.substr(at) + "'";
    }
    const int64_t bytes = free;
    struct statvfs s{};
    statvfs(dir_.c_str(), &s);
    const int64_t used = static_cast<int64_t>(s.f_blocks - s.f_bfree) * static_cast<int64_t>(s.f_frsize);
    const int64_t size = (used + bytes + 4095) / 4096 * 4096;
    EXPECT_EQ(std::system(("mount -o remount,size=" + std::to_string(size) + " " + dir_).c_str()), 0);
    return cmd;
  }
  void unlimit() {
    if (tmpfs_) {
      EXPECT_EQ(std::system(("mount -o remount,size=64m " + dir_).c_str()), 0);
    }
  }

 private:
  std::string dir_;
  bool tmpfs_ = false;
};

class Faults : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    std::cout << "fault suite seed " << seed() << " (MART_FAULTS_SEED repeats it)\n";
    for (const auto& d : {kCorpus, kData, kRun, kEval}) fs::remove_all(d);
    auto s = run(std::string(MART_SYNTH) + " --output " + kCorpus + " --synth.tracks 18 --synth.seconds 2 --synth.seed 7");
    ASSERT_EQ(s.code, 0) << s.output;
    auto p = run(preprocess(2, kData), 300);
    ASSERT_EQ(p.code, 0) << p.output;
    auto t = run(train(2, kRun), 300);
    ASSERT_EQ(t.code, 0) << t.output;
    auto e = run(eval(2, kEval), 300);
    ASSERT_EQ(e.code, 0) << e.output;
  }
};

// ---- one writer per folder (issue 28) ----

// Two jobs on one folder: the first takes the folder's lock and is paused at once (SIGSTOP to its
// ranks and mpirun, so it cannot finish first), the second is refused with exit 2 naming the holder and
// what to do, and the first then ends as a lone run would (each caller compares its outputs). A
// small job can end within the poll that looks for its lock: then the pair runs again.
void expect_second_job_refused(const std::string& first, const std::string& second, const std::string& dir,
                               const std::string& stage) {
  for (int attempt = 0; attempt < 5; ++attempt) {
    fs::remove_all(dir);
    const pid_t pid = spawn(first);
    bool locked = false;
    for (int i = 0; i < 120000 && !locked; ++i) {  // every 1 ms, up to 2 minutes
      locked = fs::exists(dir + "/mart.lock");
      if (!locked) std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
    // mpirun starts its ranks in process groups of their own: stop each rank, then mpirun.
    const auto ranks = locked ? mart::test::ranks_of(pid, stage) : std::vector<pid_t>{};
    auto signal_all = [&](int sig) {
      for (pid_t r : ranks) kill(r, sig);
      kill(-pid, sig);
    };
    signal_all(SIGSTOP);
    if (!locked || ranks.empty() || !fs::exists(dir + "/mart.lock")) {  // released before the pause
      signal_all(SIGCONT);
      wait_exit(pid, 300);
      continue;
    }
    const auto r = run(second, 120);
    signal_all(SIGCONT);
    const int code = wait_exit(pid, 300);
    EXPECT_EQ(r.code, 2) << r.output;
    EXPECT_TRUE(has(r.output, "is in use by " + stage + " (pid ")) << r.output;
    EXPECT_TRUE(has(r.output, "--lock.force")) << r.output;
    EXPECT_EQ(code, 0) << "the first job failed after the second was refused";
    EXPECT_FALSE(fs::exists(dir + "/mart.lock")) << "the first job left its lock";
    return;
  }
  FAIL() << "the first job ended before it could be paused, five times: " << first;
}

// A lock as a job on another node would leave it; `age_s` back-dates its heartbeat.
void foreign_lock(const std::string& dir, double age_s) {
  fs::create_directories(dir);
  std::ofstream(dir + "/mart.lock") << "stage=mart-eval\nhost=node-elsewhere\nboot_id=b\npid=4242\nslurm_job=99\n"
                                       "slurm_step=0\nsince=2026-01-01T00:00:00Z\ncommand=mart-eval ...\n";
  const time_t t = std::time(nullptr) - static_cast<time_t>(age_s);
  const timespec times[2] = {{t, 0}, {t, 0}};
  utimensat(AT_FDCWD, (dir + "/mart.lock").c_str(), times, 0);
}

TEST_F(Faults, AFreshForeignLockIsRefusedAndAStaleOneTakenOver) {
  const auto dir = fresh_dir("mart_faults_lock_foreign");
  foreign_lock(dir, 10);
  auto r = run(eval(1, dir), 120);
  EXPECT_EQ(r.code, 2) << r.output;
  EXPECT_TRUE(has(r.output, "node-elsewhere") && has(r.output, "scancel 99")) << r.output;
  EXPECT_FALSE(fs::exists(dir + "/logs")) << "the refused job wrote its logs into the folder";
  foreign_lock(dir, 600);  // no heartbeat for 10 minutes: that job is gone (lock.stale_s 300)
  auto t = run(eval(1, dir), 300);
  EXPECT_EQ(t.code, 0) << t.output;
  EXPECT_TRUE(has(t.output, "took over the lock") && has(t.output, "node-elsewhere")) << t.output;
  EXPECT_FALSE(fs::exists(dir + "/mart.lock"));
}

TEST_F(Faults, PreprocessSecondJobOnTheFolderIsRefused) {
  const auto dir = fresh_dir("mart_faults_lock_pp");
  expect_second_job_refused(preprocess(2, dir), preprocess(2, dir, "--preprocess.resume"), dir, "mart-preprocess");
  for (const auto& [file, hash] : shard_hashes(kData)) EXPECT_EQ(slurp(dir + "/" + file), slurp(kData + "/" + file)) << file;
}

TEST_F(Faults, TrainSecondJobOnTheRunIsRefused) {
  const auto dir = fresh_dir("mart_faults_lock_train");
  expect_second_job_refused(train(2, dir), train(2, dir, "--train.resume"), dir, "mart-train");
  expect_same_weights(kRun, dir);
}

TEST_F(Faults, EvalSecondJobOnTheFolderIsRefused) {
  const auto dir = fresh_dir("mart_faults_lock_eval");
  expect_second_job_refused(eval(2, dir), eval(2, dir), dir, "mart-eval");
  EXPECT_EQ(nlohmann::json::parse(slurp(dir + "/results.json")), nlohmann::json::parse(slurp(kEval + "/results.json")));
}

TEST_F(Faults, EmbedSecondJobOnTheFolderIsRefused) {
  const auto lone = fresh_dir("mart_faults_lock_embed_lone"), dir = fresh_dir("mart_faults_lock_embed");
  auto a = run(embed(2, lone), 300);
  ASSERT_EQ(a.code, 0) << a.output;
  expect_second_job_refused(embed(2, dir), embed(2, dir), dir, "mart-embed");
  EXPECT_EQ(slurp(dir + "/scene.csv"), slurp(lone + "/scene.csv"));
}

// ---- mart-preprocess ----

TEST_F(Faults, PreprocessKilledThenResumedWritesTheSameBytes) {
  const auto dir = fresh_dir("mart_faults_pp_kill");
  const int after = pick(1, 5);  // shards finished before the kill (of 18)
  // The rank stops itself once `after` units are on disk (mart/core/failpoint.h): the kill cannot
  // come too late on a fast machine.
  const pid_t pid = spawn("env MART_FAILPOINT=preprocess.unit_done@" + std::to_string(after) + " " + preprocess(1, dir));
  const bool reached = wait_until([&] { return count_files(dir, "shard-", ".json") >= after; }, 120);
  kill_job(pid);
  ASSERT_TRUE(reached);
  EXPECT_FALSE(fs::exists(dir + "/manifest.json"));
  auto again = run(preprocess(2, dir), 60);
  EXPECT_EQ(again.code, 2) << again.output;
  EXPECT_TRUE(has(again.output, "--preprocess.resume")) << again.output;
  EXPECT_TRUE(has(again.output, "took over the lock")) << "the killed job's lock: " << again.output;
  auto resumed = run(preprocess(2, dir, "--preprocess.resume"), 300);
  ASSERT_EQ(resumed.code, 0) << resumed.output;
  EXPECT_EQ(shard_hashes(dir), shard_hashes(kData));
  for (const auto& [file, hash] : shard_hashes(kData)) EXPECT_EQ(slurp(dir + "/" + file), slurp(kData + "/" + file)) << file;
  EXPECT_TRUE(leftovers(dir).empty());
}

TEST_F(Faults, PreprocessRankKilledEndsTheJob) {
  const auto dir = fresh_dir("mart_faults_pp_rank");
  expect_rank_kill_ends_job(preprocess(2, dir), "mart-preprocess", [&] { return fs::exists(dir + "/logs/rank-1.log"); });
}

TEST_F(Faults, PreprocessDiskFullIsAnOutputErrorNotABadTrack) {
  SmallDisk disk("mart_faults_pp_disk");
  const std::string out = disk.dir() + "/shards";
  const int64_t shard = fs::file_size(kData + "/shard-000000.h5");
  auto r = run(disk.limited(preprocess(1, out), MART_PREPROCESS, 4 * shard, shard / 2), 300);
  EXPECT_EQ(r.code, 1) << r.output;
  EXPECT_TRUE(has(r.output, "cannot write shard")) << r.output;
  EXPECT_TRUE(has(r.output, disk.reason())) << r.output;
  EXPECT_FALSE(has(r.output, "skipping")) << "an output error was blamed on the audio:\n" << r.output;
  EXPECT_FALSE(has(r.output, "terminate called")) << r.output;
  EXPECT_FALSE(fs::exists(out + "/manifest.json"));
  EXPECT_TRUE(leftovers(out).empty()) << leftovers(out).front();
  // The shards it finished are whole: the bytes of the uninterrupted run.
  for (const auto& [file, hash] : shard_hashes(kData))
    if (fs::exists(out + "/" + file)) {
      EXPECT_EQ(slurp(out + "/" + file), slurp(kData + "/" + file)) << file;
    }
  // Space freed: --preprocess.resume finishes the run with the same shards.
  disk.unlimit();
  auto resumed = run(preprocess(1, out, "--preprocess.resume"), 300);
  ASSERT_EQ(resumed.code, 0) << resumed.output;
  EXPECT_EQ(shard_hashes(out), shard_hashes(kData));
}

TEST_F(Faults, DamagedShardIsNamedVerifiedAndRewritten) {
  const auto dir = fresh_dir("mart_faults_pp_flip");
  fs::copy(kData, dir, fs::copy_options::recursive);
  fs::remove_all(dir + "/logs");
  // 4 KiB of random bytes into the mel data of one shard (its first chunk).
  const std::string victim = "shard-000003.h5";
  const auto [at, bytes] = first_chunk(dir + "/" + victim, "/views/0/level_2/mel");
  damage(dir + "/" + victim, at, std::min<int64_t>(4096, bytes));
  // Training on it stops, naming the shard, the dataset, the track and the fix.
  auto t = run(mpirun(1) + MART_TRAIN + " --data " + dir + " --run " + dir + "/run" + kModel +
                   " --train.max_steps 40",
               120);
  EXPECT_NE(t.code, 0) << t.output;
  for (const char* s : {"shard-000003.h5", "/views/0/level_2/mel", "of track", "--preprocess.verify", "--preprocess.resume"})
    EXPECT_TRUE(has(t.output, s)) << s << "\n" << t.output;
  // --preprocess.verify lists it (and only it) and writes nothing.
  const std::string before = slurp(dir + "/" + victim);
  auto v = run(preprocess(2, dir, "--preprocess.verify"), 120);
  EXPECT_EQ(v.code, 1) << v.output;
  EXPECT_TRUE(has(v.output, "1 of " + std::to_string(shard_hashes(kData).size()) + " shards")) << v.output;
  EXPECT_TRUE(has(v.output, victim + ": content hash")) << v.output;
  EXPECT_EQ(slurp(dir + "/" + victim), before);
  // --preprocess.resume rewrites it to the original bytes; verify is then clean.
  auto r = run(preprocess(1, dir, "--preprocess.resume"), 300);  // one rank: its warning reaches the console
  ASSERT_EQ(r.code, 0) << r.output;
  EXPECT_TRUE(has(r.output, victim + " changed since it was written")) << r.output;
  EXPECT_EQ(slurp(dir + "/" + victim), slurp(kData + "/" + victim));
  auto v2 = run(preprocess(1, dir, "--preprocess.verify"), 120);
  EXPECT_EQ(v2.code, 0) << v2.output;
  EXPECT_TRUE(has(v2.output, "all intact")) << v2.output;
}

// ---- mart-train ----

TEST_F(Faults, TrainKilledThenResumedPastADamagedCheckpointGivesTheSameWeights) {
  const auto dir = fresh_dir("mart_faults_train_kill");
  const int step = 2 * pick(2, 3);  // the newest checkpoint at the kill: step 4 or 6
  const pid_t pid = spawn(train(2, dir));
  const bool reached = wait_until([&] { return fs::exists(mart::run::checkpoint_dir(dir, step) + "/COMPLETE"); }, 240);
  kill_job(pid);
  ASSERT_TRUE(reached);
  const auto newest = mart::run::latest_checkpoint(dir);
  ASSERT_TRUE(newest.has_value());
  // One flipped byte in the newest checkpoint's weights.
  damage(*newest + "/model.pt", static_cast<int64_t>(fs::file_size(*newest + "/model.pt") / 2), 1);
  EXPECT_TRUE(has(mart::run::checkpoint_damage(*newest), "model.pt has content hash"));
  // mart-eval refuses it by name.
  auto e = run(mpirun(1) + MART_EVAL + " --data " + kData + " --run " + dir + "/eval --checkpoint " + *newest +
                   " --eval.tasks covers --eval.threads 1",
               120);
  EXPECT_EQ(e.code, 2) << e.output;
  EXPECT_TRUE(has(e.output, *newest) && has(e.output, "is damaged") && has(e.output, "model.pt")) << e.output;
  // Resume falls back to the checkpoint before it and ends with the uninterrupted run's weights.
  auto r = run(train(2, dir, "--train.resume"), 300);
  ASSERT_EQ(r.code, 0) << r.output;
  EXPECT_TRUE(has(r.output, "took over the lock")) << "the killed job's lock: " << r.output;
  EXPECT_TRUE(has(r.output, "falling back")) << r.output;
  EXPECT_TRUE(has(r.output, "resumed from")) << r.output;
  expect_same_weights(kRun, dir);
  EXPECT_TRUE(leftovers(dir).empty());
}

TEST_F(Faults, TrainRankKilledEndsTheJob) {
  const auto dir = fresh_dir("mart_faults_train_rank");
  expect_rank_kill_ends_job(train(2, dir, "", 100000), "mart-train",
                            [&] { return fs::exists(mart::run::checkpoint_dir(dir, 2) + "/COMPLETE"); });
}

TEST_F(Faults, TrainDiskFullKeepsTheLastCheckpoint) {
  SmallDisk disk("mart_faults_train_disk");
  const std::string dir = disk.dir() + "/run";
  fs::copy(kRun, dir, fs::copy_options::recursive);
  const std::string last = mart::run::checkpoint_dir(dir, kSteps);
  ASSERT_EQ(mart::run::checkpoint_damage(last), "");
  // Continue for more steps with less room than a checkpoint needs.
  const int64_t model = fs::file_size(last + "/model.pt");
  auto r = run(disk.limited(train(1, dir, "--train.resume", 12), MART_TRAIN, model / 2, model / 2), 300);
  EXPECT_EQ(r.code, 1) << r.output;
  EXPECT_TRUE(has(r.output, "cannot write")) << r.output;
  EXPECT_TRUE(has(r.output, disk.reason())) << r.output;
  EXPECT_TRUE(has(r.output, "checkpoints/step-000000010")) << r.output;
  EXPECT_FALSE(has(r.output, "terminate called")) << r.output;
  EXPECT_TRUE(leftovers(dir).empty()) << leftovers(dir).front();
  EXPECT_EQ(mart::run::latest_checkpoint(dir), last);
  EXPECT_EQ(mart::run::checkpoint_damage(last), "");
}

// ---- mart-eval ----

TEST_F(Faults, EvalKilledThenRerunReusesFinishedEmbeddings) {
  const auto dir = fresh_dir("mart_faults_eval_kill");
  const pid_t pid = spawn(eval(2, dir));
  const bool reached = wait_until([&] { return count_files(dir, "embeddings-", ".h5") >= 1; }, 240);
  kill_job(pid);
  ASSERT_TRUE(reached);
  auto r = run(eval(2, dir), 300);
  ASSERT_EQ(r.code, 0) << r.output;
  EXPECT_TRUE(has(r.output, "reusing")) << r.output;
  EXPECT_EQ(nlohmann::json::parse(slurp(dir + "/results.json")), nlohmann::json::parse(slurp(kEval + "/results.json")));
  for (const char* src : {"mart", "random_init", "logmel_stats"}) {
    const auto a = mart::eval::read_embeddings(dir + "/embeddings-" + src + ".h5");
    const auto b = mart::eval::read_embeddings(kEval + "/embeddings-" + src + ".h5");
    EXPECT_EQ(a.crops, b.crops) << src;
  }
  EXPECT_TRUE(leftovers(dir).empty());
}

TEST_F(Faults, EvalRankKilledEndsTheJob) {
  const auto dir = fresh_dir("mart_faults_eval_rank");
  expect_rank_kill_ends_job(eval(2, dir), "mart-eval", [&] { return fs::exists(dir + "/logs/rank-1.log"); });
}

TEST_F(Faults, EvalDiskFullLeavesNoHalfEmbeddings) {
  SmallDisk disk("mart_faults_eval_disk");
  const std::string dir = disk.dir() + "/eval";
  const int64_t emb = fs::file_size(kEval + "/embeddings-mart.h5");
  auto r = run(disk.limited(eval(1, dir), MART_EVAL, emb / 2, emb / 2), 300);
  EXPECT_EQ(r.code, 1) << r.output;
  EXPECT_TRUE(has(r.output, "cannot write embeddings")) << r.output;
  EXPECT_TRUE(has(r.output, disk.reason())) << r.output;
  EXPECT_FALSE(has(r.output, "terminate called")) << r.output;
  EXPECT_TRUE(leftovers(dir).empty()) << leftovers(dir).front();
  EXPECT_FALSE(fs::exists(dir + "/results.json"));
}

TEST_F(Faults, DamagedEmbeddingsAreRefusedByName) {
  const auto dir = fresh_dir("mart_faults_eval_flip");
  fs::copy(kEval, dir, fs::copy_options::recursive);
  const std::string file = dir + "/embeddings-mart.h5";
  const auto [at, bytes] = first_chunk(file, "crops/level_0");
  damage(file, at + bytes / 2, 1);
  auto r = run(eval(1, dir), 120);
  EXPECT_EQ(r.code, 2) << r.output;
  EXPECT_TRUE(has(r.output, "embeddings '" + file + "' are damaged")) << r.output;
  EXPECT_TRUE(has(r.output, "--eval.force")) << r.output;
  // As the message says: --eval.force recomputes them.
  auto f = run(eval(2, dir, "--eval.force true"), 300);
  EXPECT_EQ(f.code, 0) << f.output;
}

// ---- mart-embed ----

TEST_F(Faults, EmbedKilledThenRerunWritesTheSameEmbeddings) {
  const auto full = fresh_dir("mart_faults_embed_full"), dir = fresh_dir("mart_faults_embed_kill");
  auto a = run(embed(2, full), 300);
  ASSERT_EQ(a.code, 0) << a.output;
  // On a quiet machine the whole job can end within the random delay after its .tmp appears; then
  // the kill hit nothing, so the next attempt kills as soon as the .tmp is seen.
  bool killed_mid_run = false;
  for (int attempt = 0; attempt < 5 && !killed_mid_run; ++attempt) {
    fs::remove_all(dir);
    const pid_t pid = spawn(embed(2, dir));
    const bool reached = wait_until([&] { return fs::exists(dir + "/embeddings.h5.tmp"); }, 120);
    std::this_thread::sleep_for(std::chrono::milliseconds(attempt == 0 ? pick(0, 300) : 0));
    kill_job(pid);
    ASSERT_TRUE(reached);
    killed_mid_run = !fs::exists(dir + "/embeddings.h5");
  }
  ASSERT_TRUE(killed_mid_run) << "mart-embed finished before every kill: the test corpus is too small to interrupt";
  auto b = run(embed(2, dir), 300);
  ASSERT_EQ(b.code, 0) << b.output;
  EXPECT_EQ(slurp(dir + "/scene.csv"), slurp(full + "/scene.csv"));
  EXPECT_EQ(slurp(dir + "/level_2.csv"), slurp(full + "/level_2.csv"));
  EXPECT_TRUE(leftovers(dir).empty());
}

TEST_F(Faults, EmbedRankKilledEndsTheJob) {
  const auto dir = fresh_dir("mart_faults_embed_rank");
  expect_rank_kill_ends_job(embed(2, dir), "mart-embed", [&] { return fs::exists(dir + "/logs/rank-1.log"); });
}

TEST_F(Faults, EmbedDiskFullIsFatalAndNamed) {
  SmallDisk disk("mart_faults_embed_disk");
  const std::string dir = disk.dir() + "/embed";
  auto r = run(disk.limited(embed(1, dir), MART_EMBED, 8192, 8192), 300);
  EXPECT_EQ(r.code, 1) << r.output;
  EXPECT_TRUE(has(r.output, disk.reason())) << r.output;
  EXPECT_TRUE(has(r.output, dir)) << r.output;
  EXPECT_FALSE(has(r.output, "skipping")) << r.output;
  EXPECT_FALSE(has(r.output, "terminate called")) << r.output;
  EXPECT_FALSE(fs::exists(dir + "/embeddings.h5"));
  EXPECT_TRUE(leftovers(dir).empty()) << leftovers(dir).front();
}

}  // namespace
