// mart-train end to end under mpirun: resume after SIGKILL, preemption by SIGUSR1, a dying rank,
// and the errors that must come before the first step.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <torch/torch.h>
#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <thread>

#include "../util/proc.h"
#include "mart/model/mart_model.h"
#include "mart/run/checkpoint.h"

namespace fs = std::filesystem;
using mart::test::mpirun;
using mart::test::run;

namespace {

std::string tmp(const std::string& n) { return (fs::temp_directory_path() / n).string(); }
const std::string kData = tmp("mart_train_data");

const std::string kModelOnly =
    " --model.fcn_channels 4,4,8,8,8,8,16 --model.dim 16 --model.heads 2 --model.head_dim 4 --model.ff_dim 16"
    " --model.projection_dim 8 --train.threads 1";
const std::string kModel = kModelOnly + " --train.log_every 1";

class TrainStage : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    const std::string corpus = tmp("mart_train_corpus");
    fs::remove_all(corpus);
    fs::remove_all(kData);
    auto s = run(std::string(MART_SYNTH) + " --output " + corpus + " --synth.tracks 8 --synth.seconds 3");
    ASSERT_EQ(s.code, 0) << s.output;
    auto p = run(mpirun(2) + MART_PREPROCESS + " --dataset.kind synth --input " + corpus + " --output " + kData +
                 " --features.clip_samples 8192 --features.levels 3 --features.frames 16 --features.n_mels 16"
                 " --features.views 1 --preprocess.unit_tracks 4");
    ASSERT_EQ(p.code, 0) << p.output;
  }
  static std::string train(int np, const std::string& run_dir, const std::string& extra, int batch = 4) {
    return mpirun(np) + MART_TRAIN + " --data " + kData + " --run " + run_dir + kModel +
           " --train.splits train,valid,test --train.batch_size " + std::to_string(batch) + " " + extra;
  }
};

// The final parameters of a run, from its PyTorch export.
std::vector<torch::Tensor> weights(const std::string& run_dir) {
  std::vector<torch::Tensor> out;
  for (auto& [name, t] : mart::model::read_exported_state_dict(run_dir + "/model_state_dict.pt")) out.push_back(t);
  return out;
}

// Starts `cmd` (mpirun ...) as its own process group; returns the pid of the shell that runs it.
pid_t spawn(const std::string& cmd) {
  const pid_t pid = fork();
  if (pid == 0) {
    setsid();
    execl("/bin/sh", "sh", "-c", ("exec " + cmd + " >/dev/null 2>&1").c_str(), static_cast<char*>(nullptr));
    _exit(127);
  }
  return pid;
}

bool wait_for(const std::string& path, double seconds) {
  for (int i = 0; i < seconds * 20; ++i) {
    if (fs::exists(path)) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  return false;
}

int wait_exit(pid_t pid, double seconds, bool* in_time) {
  int status = 0;
  for (int i = 0; i < seconds * 20; ++i) {
    if (waitpid(pid, &status, WNOHANG) == pid) {
      *in_time = true;
      return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  *in_time = false;
  kill(-pid, SIGKILL);
  waitpid(pid, &status, 0);
  return -1;
}

// Fresh augmentation (every effect likely in each batch) and independent crops for A and B: a
// resumed run must draw the same augmentations and crops as the uninterrupted one.
const std::string kAugment =
    " --train.augment.enabled true --train.augment.p_noise 0.5 --train.augment.p_delay 0.5 --train.crop_offset_s 0.2";

TEST_F(TrainStage, KilledRunResumesToTheSameParameters) {
  const auto full = mart::test::fresh_dir("mart_train_full"), killed = mart::test::fresh_dir("mart_train_killed");
  auto r = run(train(2, full, "--train.max_steps 10 --train.checkpoint_every 2" + kAugment), 300);
  ASSERT_EQ(r.code, 0) << r.output;
  EXPECT_TRUE(fs::exists(full + "/model_state_dict.pt"));
  const pid_t pid = spawn(train(2, killed, "--train.max_steps 10 --train.checkpoint_every 2" + kAugment));
  const bool reached = wait_for(mart::run::checkpoint_dir(killed, 6) + "/COMPLETE", 240);
  kill(-pid, SIGKILL);
  waitpid(pid, nullptr, 0);
  ASSERT_TRUE(reached) << "the run never reached step 6";
  auto again = run(train(2, killed, "--train.max_steps 10 --train.checkpoint_every 2" + kAugment), 60);
  EXPECT_EQ(again.code, 2) << "a run directory with checkpoints needs --train.resume\n" << again.output;
  auto resumed = run(train(2, killed, "--train.max_steps 10 --train.checkpoint_every 2 --train.resume" + kAugment), 300);
  ASSERT_EQ(resumed.code, 0) << resumed.output;
  EXPECT_NE(resumed.output.find("resumed from"), std::string::npos) << resumed.output;
  const auto a = weights(full), b = weights(killed);
  ASSERT_EQ(a.size(), b.size());
  ASSERT_FALSE(a.empty());
  for (size_t i = 0; i < a.size(); ++i) EXPECT_TRUE(torch::equal(a[i], b[i])) << "tensor " << i;
}

TEST_F(TrainStage, SigusrToOneRankCheckpointsAllRanksAtOneStepAndExits75) {
  const auto dir = mart::test::fresh_dir("mart_train_preempt");
  const pid_t pid = spawn(train(2, dir, "--train.max_steps 100000 --train.checkpoint_every 2"));
  ASSERT_TRUE(wait_for(mart::run::checkpoint_dir(dir, 2) + "/COMPLETE", 240));
  const auto ranks = mart::test::ranks_of(pid, "mart-train");
  ASSERT_EQ(ranks.size(), 2u);
  kill(ranks[1], SIGUSR1);
  bool in_time = false;
  const int code = wait_exit(pid, 120, &in_time);
  ASSERT_TRUE(in_time);
  EXPECT_EQ(code, 75);
  // Both ranks logged the same step, and that step's checkpoint is complete.
  auto step_in = [&](int rank) {
    std::ifstream log(dir + "/logs/rank-" + std::to_string(rank) + ".log");
    std::string line, step;
    while (std::getline(log, line)) {
      const auto at = line.find("checkpointing at step ");
      if (at != std::string::npos) step = line.substr(at + 22, line.find(' ', at + 22) - at - 22);
    }
    return step;
  };
  const std::string s0 = step_in(0), s1 = step_in(1);
  ASSERT_FALSE(s0.empty());
  EXPECT_EQ(s0, s1);
  EXPECT_TRUE(fs::exists(mart::run::checkpoint_dir(dir, std::stoll(s0)) + "/COMPLETE"));
}

TEST_F(TrainStage, ARankThatDiesEndsTheJobWithinAMinute) {
  const auto dir = mart::test::fresh_dir("mart_train_fault");
  const pid_t pid = spawn(train(2, dir, "--train.max_steps 100000 --train.checkpoint_every 2"));
  ASSERT_TRUE(wait_for(mart::run::checkpoint_dir(dir, 2) + "/COMPLETE", 240));
  const auto ranks = mart::test::ranks_of(pid, "mart-train");
  ASSERT_EQ(ranks.size(), 2u);
  const auto t0 = std::chrono::steady_clock::now();
  kill(ranks[1], SIGKILL);
  bool in_time = false;
  const int code = wait_exit(pid, 60, &in_time);
  EXPECT_TRUE(in_time) << "the job hung after a rank died";
  EXPECT_NE(code, 0);
  EXPECT_LT(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count(), 60);
}

TEST_F(TrainStage, BadInputStopsBeforeTheFirstStep) {
  const auto dir = mart::test::fresh_dir("mart_train_bad");
  // A batch that does not split over the ranks.
  auto r = run(train(2, dir, "--train.max_steps 1", 3), 60);
  EXPECT_EQ(r.code, 2) << r.output;
  EXPECT_NE(r.output.find("does not split evenly"), std::string::npos) << r.output;
  // A batch the data cannot fill.
  r = run(train(1, dir, "--train.max_steps 1", 4000), 60);
  EXPECT_EQ(r.code, 2) << r.output;
  EXPECT_NE(r.output.find("fewer than one global batch"), std::string::npos) << r.output;
  // A missing shard.
  const auto broken = mart::test::fresh_dir("mart_train_broken_data");
  fs::copy(kData, broken, fs::copy_options::recursive);
  fs::remove(broken + "/shard-000001.h5");
  r = run(mpirun(1) + MART_TRAIN + " --data " + broken + " --run " + dir + kModel + " --train.max_steps 1", 60);
  EXPECT_EQ(r.code, 2) << r.output;
  EXPECT_NE(r.output.find("shard-000001.h5"), std::string::npos) << r.output;
  // A model option that the config gets wrong.
  r = run(train(1, dir, "--model.dim 17 --train.max_steps 1"), 60);
  EXPECT_EQ(r.code, 2) << r.output;
  EXPECT_NE(r.output.find("dim"), std::string::npos) << r.output;
  // One lambda per level of the data (3 here), not of the model's default 4 levels.
  r = run(train(1, dir, "--model.lambdas 1,0.5,2,1 --train.max_steps 1"), 60);
  EXPECT_EQ(r.code, 2) << r.output;
  EXPECT_NE(r.output.find("lambdas has 4 values"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("one per level (3)"), std::string::npos) << r.output;
  EXPECT_FALSE(fs::exists(dir + "/metrics.jsonl")) << "the check must come before any work";
  const auto ok = mart::test::fresh_dir("mart_train_lambdas");
  r = run(train(1, ok, "--model.lambdas 1,0.5,2 --train.max_steps 1"), 120);
  EXPECT_EQ(r.code, 0) << r.output;
}

std::vector<nlohmann::json> metrics_lines(const std::string& run_dir) {
  std::vector<nlohmann::json> out;
  std::ifstream in(run_dir + "/metrics.jsonl");
  for (std::string line; std::getline(in, line);) out.push_back(nlohmann::json::parse(line));
  return out;
}

// Issue 27: a step that does not log reads nothing back from its device. Every step still gets
// its metrics line (the losses are copied once per log window), the diagnostics come with the
// log steps, and those lines count the reads the quiet steps made: none.
TEST_F(TrainStage, StepsThatDoNotLogReadNothingBack) {
  const auto dir = mart::test::fresh_dir("mart_train_quiet");
  auto r = run(mpirun(2) + MART_TRAIN + " --data " + kData + " --run " + dir + kModelOnly +
                   " --train.splits train,valid,test --train.batch_size 4 --train.max_steps 12 --train.log_every 4"
                   " --train.checkpoint_every 6",
               300);
  ASSERT_EQ(r.code, 0) << r.output;
  const auto lines = metrics_lines(dir);
  ASSERT_EQ(lines.size(), 12u);
  for (size_t i = 0; i < lines.size(); ++i) {
    EXPECT_EQ(lines[i]["step"].get<int64_t>(), static_cast<int64_t>(i + 1));
    EXPECT_TRUE(std::isfinite(lines[i]["loss"].get<double>()));
    const bool logs = (i + 1) % 4 == 0;
    EXPECT_EQ(lines[i].contains("top1"), logs) << lines[i].dump();
    if (logs) {
      EXPECT_EQ(lines[i]["host_reads"].get<int64_t>(), 0) << lines[i].dump();
    }
  }
}

// The pairing switches (issue 26) and the supervised positive control run end to end; the
// supervised model's head has one output per class, and data without classes is refused.
TEST_F(TrainStage, PairingSwitchesAndTheSupervisedControlTrain) {
  const auto pairing = mart::test::fresh_dir("mart_train_pairing");
  auto r = run(train(2, pairing,
                     "--train.max_steps 3 --model.same_track masked --model.anchors both --train.stored_views false"
                     " --train.crop_offset_s 100 --train.crops_per_track 2"),
               300);
  ASSERT_EQ(r.code, 0) << r.output;
  const auto supervised = mart::test::fresh_dir("mart_train_supervised");
  r = run(train(2, supervised, "--train.max_steps 3 --train.objective supervised"), 300);
  ASSERT_EQ(r.code, 0) << r.output;
  const auto classes = nlohmann::json::parse(std::ifstream(kData + "/manifest.json"))["labels"]["class_names"].size();
  std::ifstream ini(mart::run::checkpoint_dir(supervised, 3) + "/model.ini");
  std::stringstream text;
  text << ini.rdbuf();
  EXPECT_NE(text.str().find("projection_dim = " + std::to_string(classes) + "\n"), std::string::npos) << text.str();
  // The same audio without labels: no class to train on.
  const auto unlabelled = mart::test::fresh_dir("mart_train_unlabelled");
  auto p = run(mpirun(1) + MART_PREPROCESS + " --dataset.kind folder --input " + tmp("mart_train_corpus") +
                   "/audio --output " + unlabelled +
                   " --features.clip_samples 8192 --features.levels 3 --features.frames 16 --features.n_mels 16"
                   " --features.views 1",
               120);
  ASSERT_EQ(p.code, 0) << p.output;
  r = run(mpirun(1) + MART_TRAIN + " --data " + unlabelled + " --run " + mart::test::fresh_dir("mart_train_nolabels") +
              kModel + " --train.batch_size 4 --train.max_steps 1 --train.objective supervised",
          120);
  EXPECT_EQ(r.code, 2) << r.output;
  EXPECT_NE(r.output.find("needs a class for every training track"), std::string::npos) << r.output;
}

}  // namespace
