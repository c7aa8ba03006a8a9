// Learning must happen: a few hundred steps of pretraining on a small synthetic corpus lift the
// frozen linear probes above the same architecture at its random initialisation, and a broken loss
// does not.
//
// One training run is one trajectory, and the trajectory depends on the CPU: oneDNN, OpenBLAS and
// ATen pick their kernels per machine, round differently, and 300 steps of one seed end somewhere
// else (issue 25: this test, asserting one seed's lift, passed on AVX2 and failed on AVX-512). So
// it trains five seeds and asserts the mean lift over them, with margins set between two spreads
// measured with tests/portability.sh under five kernel settings on an AVX-512 Xeon (native,
// skylakex, haswell, sandybridge, nehalem: four different trajectories per seed), seeds 1-5, each
// value the mean of 2 probe seeds. Lift = pretrained minus random init, mean of 5 seeds:
//
//   metric                  this build      the same with the loss's sign flipped
//   tagging ROC-AUC         +0.046..+0.059  -0.001..+0.013
//   tagging PR-AUC          +0.091..+0.101  +0.033..+0.051
//   classification ROC-AUC  +0.005..+0.028  -0.075..-0.056
//
// A sign-flipped loss still lifts tagging over random init a little (training moves BatchNorm's
// running statistics onto the data whatever the objective), so the margins sit between the two
// columns, about 3 standard deviations of a 5-seed mean from each side. One seed's lift spreads
// far wider (tagging ROC-AUC +0.025..+0.090, classification -0.035..+0.050), and 3 seeds were not
// enough: one flipped-sign triple in 40 cleared all three margins. Classification is a guard (it
// must not fall): its lift is too small at this budget to assert a rise.
// `tests/portability.sh --mutant` builds the flipped loss (-DMART_MUTANT_FLIP_LOSS_SIGN=ON) and
// checks that this test fails under every setting.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <future>
#include <map>
#include <nlohmann/json.hpp>
#include <sstream>

#include "../util/proc.h"

namespace fs = std::filesystem;
using mart::test::mpirun;
using mart::test::run;
using mart::test::Result;

namespace {

std::string tmp(const std::string& n) { return (fs::temp_directory_path() / n).string(); }

// mean over probe seeds of "model task metric" (frozen protocol)
std::map<std::string, double> frozen_means(const std::string& dir) {
  std::ifstream in(dir + "/results.json");
  const auto r = nlohmann::json::parse(in);
  std::map<std::string, double> sum, n;
  for (const auto& x : r) {
    if (x["protocol"] == "finetune") continue;
    const std::string k = x["model"].get<std::string>() + " " + x["task"].get<std::string>() + " " +
                          x["metric"].get<std::string>();
    sum[k] += x["value"].get<double>();
    n[k] += 1;
  }
  for (auto& [k, v] : sum) v /= n[k];
  return sum;
}

// Training seeds: 1-5, or MART_LEARNS_SEEDS (a comma list; tests/portability.sh sets more).
std::vector<int> training_seeds() {
  const char* env = std::getenv("MART_LEARNS_SEEDS");
  std::vector<int> seeds;
  std::stringstream in(env && *env ? env : "1,2,3,4,5");
  for (std::string s; std::getline(in, s, ',');) seeds.push_back(std::stoi(s));
  return seeds;
}

constexpr int kSteps = 300;
// Mean lift over the seeds must exceed these.
const std::map<std::string, double> kMargin = {
    {"tagging ROC-AUC", 0.03}, {"tagging PR-AUC", 0.07}, {"classification ROC-AUC", -0.03}};

// Pretrains one seed and evaluates it; the eval folder's results.json holds both models' scores.
Result pretrain_and_probe(const std::string& data, int seed, const std::string& runs, const std::string& out) {
  for (const auto& d : {runs, out}) fs::remove_all(d);
  auto t = run(mpirun(1) + MART_TRAIN + " --data " + data + " --run " + runs +
                   " --model.fcn_channels 8,8,16,16,16,16,32 --model.dim 32 --model.heads 2 --model.head_dim 8"
                   " --model.ff_dim 64 --model.projection_dim 16 --train.batch_size 16 --train.max_steps " +
                   std::to_string(kSteps) + " --train.lr 1e-3 --train.warmup_steps 10 --train.cosine true"
                   " --train.crops_per_track 4 --train.threads 1 --train.seed " + std::to_string(seed) +
                   " --train.log_every 50 --train.splits train,valid,test",
               900);
  if (t.code != 0) return t;
  return run(mpirun(1) + MART_EVAL + " --data " + data + " --checkpoint " + runs + " --run " + out +
                 " --eval.tasks tagging,classification --eval.seeds 2 --eval.max_epochs 60 --eval.threads 1",
             900);
}

TEST(Learning, PretrainingLiftsTheProbesAboveRandomInit) {
  const std::string corpus = tmp("mart_learn_corpus"), data = tmp("mart_learn_data");
  for (const auto& d : {corpus, data}) fs::remove_all(d);
  auto s = run(std::string(MART_SYNTH) + " --output " + corpus + " --synth.tracks 90 --synth.seconds 4 --synth.seed 3");
  ASSERT_EQ(s.code, 0) << s.output;
  auto p = run(mpirun(2) + MART_PREPROCESS + " --dataset.kind synth --input " + corpus + " --output " + data +
               " --features.clip_samples 8192 --features.levels 3 --features.frames 16 --features.n_mels 32"
               " --features.views 2 --preprocess.unit_tracks 16");
  ASSERT_EQ(p.code, 0) << p.output;

  // Seeds train two at a time (one thread each, the test machine has two cores).
  const auto seeds = training_seeds();
  ASSERT_FALSE(seeds.empty());
  std::vector<std::string> outs;
  std::vector<Result> results;
  for (size_t i = 0; i < seeds.size(); i += 2) {
    std::vector<std::future<Result>> pair;
    for (size_t j = i; j < std::min(i + 2, seeds.size()); ++j) {
      const std::string tag = std::to_string(seeds[j]);
      outs.push_back(tmp("mart_learn_eval_" + tag));
      pair.push_back(std::async(std::launch::async, pretrain_and_probe, data, seeds[j], tmp("mart_learn_run_" + tag),
                                outs.back()));
    }
    for (auto& job : pair) results.push_back(job.get());
  }
  std::map<std::string, double> mean_lift;
  for (size_t i = 0; i < seeds.size(); ++i) {
    ASSERT_EQ(results[i].code, 0) << "seed " << seeds[i] << "\n" << results[i].output;
    const auto m = frozen_means(outs[i]);
    // One line per seed and metric: tests/portability.sh reads these.
    for (const auto& margin : kMargin) {
      const std::string& metric = margin.first;
      const double trained = m.at("mart " + metric), random = m.at("random_init " + metric);
      std::printf("learns: seed %d | %s | pretrained %.4f | random init %.4f | lift %+.4f\n", seeds[i], metric.c_str(),
                  trained, random, trained - random);
      mean_lift[metric] += (trained - random) / static_cast<double>(seeds.size());
    }
  }
  for (const auto& [metric, margin] : kMargin) {
    std::printf("learns: mean of %zu seeds | %s lift %+.4f | margin %.3f\n", seeds.size(), metric.c_str(),
                mean_lift[metric], margin);
    EXPECT_GT(mean_lift[metric], margin) << metric << ": mean lift over " << seeds.size() << " training seeds";
  }
}

}  // namespace
