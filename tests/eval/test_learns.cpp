// Learning must happen: a few hundred steps of pretraining on a small synthetic corpus lift the
// frozen linear probes above the same architecture at its random initialisation by a set margin.
// Deterministic (one rank, one thread, fixed seeds): it fails when learning breaks (a loss sign,
// a detached gradient, collapsed embeddings), not by chance.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>

#include "../util/proc.h"

namespace fs = std::filesystem;
using mart::test::mpirun;
using mart::test::run;

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

constexpr int kSteps = 300;
// Margins at about half the lift measured when the test was written (docs/results.md, section 1:
// L_pw separate, +0.04 tagging ROC-AUC and +0.06 classification ROC-AUC over random init).
// Accuracy is not used: the 15-track test split moves it in steps of 0.067.
const std::map<std::string, double> kMargin = {{"tagging ROC-AUC", 0.02}, {"classification ROC-AUC", 0.03}};

TEST(Learning, PretrainingLiftsTheProbesAboveRandomInit) {
  const std::string corpus = tmp("mart_learn_corpus"), data = tmp("mart_learn_data"), runs = tmp("mart_learn_run"),
                    out = tmp("mart_learn_eval");
  for (const auto& d : {corpus, data, runs, out}) fs::remove_all(d);
  auto s = run(std::string(MART_SYNTH) + " --output " + corpus + " --synth.tracks 90 --synth.seconds 4 --synth.seed 3");
  ASSERT_EQ(s.code, 0) << s.output;
  auto p = run(mpirun(2) + MART_PREPROCESS + " --dataset.kind synth --input " + corpus + " --output " + data +
               " --features.clip_samples 8192 --features.levels 3 --features.frames 16 --features.n_mels 32"
               " --features.views 2 --preprocess.unit_tracks 16");
  ASSERT_EQ(p.code, 0) << p.output;
  auto t = run(mpirun(1) + MART_TRAIN + " --data " + data + " --run " + runs +
                   " --model.fcn_channels 8,8,16,16,16,16,32 --model.dim 32 --model.heads 2 --model.head_dim 8"
                   " --model.ff_dim 64 --model.projection_dim 16 --train.batch_size 16 --train.max_steps " +
                   std::to_string(kSteps) + " --train.lr 1e-3 --train.warmup_steps 10 --train.cosine true"
                   " --train.crops_per_track 4 --train.threads 1 --train.seed 1 --train.log_every 50"
                   " --train.splits train,valid,test",
               900);
  ASSERT_EQ(t.code, 0) << t.output;
  auto e = run(mpirun(1) + MART_EVAL + " --data " + data + " --checkpoint " + runs + " --run " + out +
                   " --eval.tasks tagging,classification --eval.seeds 2 --eval.max_epochs 60 --eval.threads 1",
               900);
  ASSERT_EQ(e.code, 0) << e.output;
  auto m = frozen_means(out);
  for (const char* metric : {"tagging ROC-AUC", "classification ROC-AUC"}) {
    const double trained = m.at(std::string("mart ") + metric), random = m.at(std::string("random_init ") + metric);
    EXPECT_GT(trained, random + kMargin.at(metric)) << metric << ": pretrained " << trained << " vs random init " << random
                                                    << "\n" << e.output;
  }
}

}  // namespace
