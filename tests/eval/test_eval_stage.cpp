// mart-eval end to end: 1 and 2 ranks give the same embeddings and metrics; a trained checkpoint
// is evaluated beside the baselines; bad input is refused with a clear error.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <iterator>
#include <map>
#include <set>
#include <sstream>
#include <nlohmann/json.hpp>

#include "../util/proc.h"
#include "mart/eval/embed.h"
#include "mart/metrics/retrieval.h"

namespace fs = std::filesystem;
using mart::test::mpirun;
using mart::test::run;

namespace {

std::string tmp(const std::string& n) { return (fs::temp_directory_path() / n).string(); }
const std::string kData = tmp("mart_eval_data"), kRun = tmp("mart_eval_trainrun");
const std::string kFeatures =
    " --features.clip_samples 8192 --features.levels 3 --features.frames 16 --features.n_mels 16 --features.views 1";

class EvalStage : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    const std::string corpus = tmp("mart_eval_corpus");
    for (const auto& d : {corpus, kData, kRun}) fs::remove_all(d);
    auto s = run(std::string(MART_SYNTH) + " --output " + corpus + " --synth.tracks 48 --synth.seconds 2 --synth.seed 7");  // seed 7: 27/9/12 tracks in train/valid/test
    ASSERT_EQ(s.code, 0) << s.output;
    auto p = run(mpirun(2) + MART_PREPROCESS + " --dataset.kind synth --input " + corpus + " --output " + kData +
                 kFeatures + " --preprocess.unit_tracks 4");
    ASSERT_EQ(p.code, 0) << p.output;
    auto t = run(mpirun(2) + MART_TRAIN + " --data " + kData + " --run " + kRun +
                     " --model.fcn_channels 4,4,8,8,8,8,16 --model.dim 16 --model.heads 2 --model.head_dim 4"
                     " --model.ff_dim 16 --model.projection_dim 8 --train.batch_size 4 --train.max_steps 4 --train.threads 1",
                 300);
    ASSERT_EQ(t.code, 0) << t.output;
  }
  static std::string eval(int np, const std::string& out, const std::string& extra = "") {
    return mpirun(np) + MART_EVAL + " --data " + kData + " --run " + out +
           " --eval.seeds 2 --eval.max_epochs 15 --eval.threads 1 " + extra;
  }
};

nlohmann::json results(const std::string& dir) {
  std::ifstream in(dir + "/results.json");
  return nlohmann::json::parse(in);
}

TEST_F(EvalStage, OneAndTwoRanksGiveTheSameEmbeddingsAndMetrics) {
  const auto one = mart::test::fresh_dir("mart_eval_one"), two = mart::test::fresh_dir("mart_eval_two");
  auto r1 = run(eval(1, one, "--checkpoint " + kRun), 600);
  ASSERT_EQ(r1.code, 0) << r1.output;
  auto r2 = run(eval(2, two, "--checkpoint " + kRun), 600);
  ASSERT_EQ(r2.code, 0) << r2.output;
  for (const char* src : {"mart", "random_init", "logmel_stats"}) {
    const auto a = mart::eval::read_embeddings(one + "/embeddings-" + src + ".h5");
    const auto b = mart::eval::read_embeddings(two + "/embeddings-" + src + ".h5");
    ASSERT_EQ(a.tracks.size(), b.tracks.size()) << src;
    EXPECT_GT(a.tracks.size(), 20u);
    EXPECT_EQ(a.crops, b.crops) << src;
    EXPECT_EQ(a.track_level, b.track_level) << src;
  }
  EXPECT_EQ(results(one), results(two));
  // The report has a row per model and the three tasks the demo labels allow.
  for (const char* s : {"| mart |", "| random_init |", "| logmel_stats |", "tagging ROC-AUC", "classification accuracy", "covers MAP"})
    EXPECT_NE(r2.output.find(s), std::string::npos) << s << "\n" << r2.output;
}

// The fine-tuning metrics of `r`, by "model task metric fraction".
std::map<std::string, double> finetuned(const nlohmann::json& r) {
  std::map<std::string, double> m;
  for (const auto& x : r)
    if (x["protocol"] == "finetune")
      m[x["model"].get<std::string>() + " " + x["task"].get<std::string>() + " " + x["metric"].get<std::string>() + " " +
        std::to_string(x["label_fraction"].get<double>())] = x["value"];
  return m;
}

TEST_F(EvalStage, FineTuningOnRankGroupsMatchesOneRank) {
  const std::string ft = "--checkpoint " + kRun + " --eval.tasks classification,tagging --eval.finetune_fractions 0.5,1"
                         " --eval.finetune_epochs 2 --eval.finetune_batch 8 --eval.finetune_seeds 1";
  const auto one = mart::test::fresh_dir("mart_ft_one"), groups = mart::test::fresh_dir("mart_ft_groups"),
             pair = mart::test::fresh_dir("mart_ft_pair");
  auto r1 = run(eval(1, one, ft), 600);
  ASSERT_EQ(r1.code, 0) << r1.output;
  auto rg = run(eval(2, groups, ft + " --eval.group_ranks 1"), 600);  // jobs dealt to two groups of one rank
  ASSERT_EQ(rg.code, 0) << rg.output;
  auto rp = run(eval(2, pair, ft + " --eval.group_ranks 2"), 600);  // every job on one group of two ranks
  ASSERT_EQ(rp.code, 0) << rp.output;
  EXPECT_NE(rp.output.find("1 group(s) of up to 2 rank(s)"), std::string::npos) << rp.output;
  // The from-scratch row normalises with BatchNorm statistics measured on its training crops.
  EXPECT_NE(r1.output.find("random initialisation: BatchNorm statistics measured on"), std::string::npos) << r1.output;
  const auto tuned = r1.output.find("Fine-tuned whole model");
  ASSERT_NE(tuned, std::string::npos) << r1.output;
  EXPECT_NE(r1.output.find("| mart |", tuned), std::string::npos) << r1.output;
  EXPECT_NE(r1.output.find("| random_init |", tuned), std::string::npos) << r1.output;
  const auto a = finetuned(results(one)), b = finetuned(results(groups)), c = finetuned(results(pair));
  // 2 models x 2 tasks x 2 fractions, with 2 (tagging) or 3 (classification) metrics each.
  EXPECT_EQ(a.size(), 20u);
  EXPECT_EQ(a, b);  // a job on a one-rank group is the same computation whatever group runs it
  ASSERT_EQ(a.size(), c.size());
  // Two ranks split each batch and average gradients: the same training up to the order of float
  // sums (BatchNorm uses running statistics), so the metrics agree up to a rare swapped pair of
  // nearly tied scores. A rank that trained on its half alone would be far off.
  for (const auto& [k, v] : a) EXPECT_NEAR(v, c.at(k), 0.02) << k;
}

TEST_F(EvalStage, RerunReusesEmbeddingsAndRefusesAnotherModels) {
  const auto out = mart::test::fresh_dir("mart_eval_rerun");
  const std::string args = " --eval.tasks classification";
  auto first = run(eval(1, out, "--checkpoint " + kRun + args), 600);
  ASSERT_EQ(first.code, 0) << first.output;
  const auto before = results(out);
  auto again = run(eval(1, out, "--checkpoint " + kRun + args), 600);
  ASSERT_EQ(again.code, 0) << again.output;
  EXPECT_NE(again.output.find("mart: reusing"), std::string::npos) << again.output;
  EXPECT_EQ(results(out), before);
  // Without the checkpoint the random encoder has the default small shape: another model than the
  // one whose embeddings the folder holds.
  auto other = run(eval(1, out, args), 600);
  EXPECT_EQ(other.code, 2) << other.output;
  EXPECT_NE(other.output.find("embeddings of another model"), std::string::npos) << other.output;
  EXPECT_NE(other.output.find("--eval.force"), std::string::npos) << other.output;
  auto forced = run(eval(1, out, args + " --eval.force true"), 600);
  EXPECT_EQ(forced.code, 0) << forced.output;
}

// GTZAN without split lists: every track is "train", and mart-eval makes its own stratified folds
// (each job on every fold) instead of refusing the data; eval.folds 0 refuses it with the fix.
TEST_F(EvalStage, GtzanWithoutSplitListsIsEvaluatedOnFolds) {
  // The demo corpus laid out as GTZAN: one folder per class (style), no split lists.
  const std::string corpus = tmp("mart_eval_corpus"), gtzan = tmp("mart_eval_gtzan"), data = tmp("mart_eval_gtzan_data");
  for (const auto& d : {gtzan, data}) fs::remove_all(d);
  std::ifstream manifest(corpus + "/manifest.csv");
  std::string line;
  std::getline(manifest, line);  // path,track_id,split,tags,class,...
  int n = 0;
  while (std::getline(manifest, line)) {
    std::vector<std::string> f;
    std::stringstream ss(line);
    for (std::string x; std::getline(ss, x, ',');) f.push_back(x);
    ASSERT_GE(f.size(), 5u) << line;
    fs::create_directories(gtzan + "/" + f[4]);
    fs::create_symlink(corpus + "/" + f[0], gtzan + "/" + f[4] + "/" + fs::path(f[0]).filename().string());
    ++n;
  }
  ASSERT_EQ(n, 48);
  auto p = run(mpirun(1) + MART_PREPROCESS + " --dataset.kind gtzan --input " + gtzan + " --output " + data + kFeatures +
               " --preprocess.unit_tracks 16");
  ASSERT_EQ(p.code, 0) << p.output;
  const auto out = mart::test::fresh_dir("mart_eval_gtzan_run");
  const std::string args = " --run " + out + " --data " + data + " --eval.tasks classification --eval.seeds 1"
                           " --eval.max_epochs 5 --eval.threads 1 --eval.folds 3";
  auto r = run(mpirun(1) + MART_EVAL + args, 300);
  ASSERT_EQ(r.code, 0) << r.output;
  EXPECT_NE(r.output.find("classification has no test split: 3 stratified folds"), std::string::npos) << r.output;
  std::map<std::string, std::set<int>> folds;  // model -> folds with an accuracy
  for (const auto& x : results(out))
    if (x["metric"] == "accuracy") folds[x["model"].get<std::string>()].insert(x["fold"].get<int>());
  EXPECT_EQ(folds["random_init"], (std::set<int>{0, 1, 2}));
  EXPECT_EQ(folds["logmel_stats"], (std::set<int>{0, 1, 2}));
  auto refused = run(mpirun(1) + MART_EVAL + args + " --eval.folds 0", 300);  // reuses the embeddings
  EXPECT_EQ(refused.code, 2) << refused.output;
  EXPECT_NE(refused.output.find("eval.folds"), std::string::npos) << refused.output;
  // A development run needs a valid split: refused, never silently folded.
  auto dev = run(mpirun(1) + MART_EVAL + args + " --eval.score_split valid", 300);
  EXPECT_EQ(dev.code, 2) << dev.output;
  EXPECT_NE(dev.output.find("have no valid split"), std::string::npos) << dev.output;
}

TEST_F(EvalStage, BadInputIsRefusedWithAClearError) {
  const auto out = mart::test::fresh_dir("mart_eval_bad");
  // Evaluation data preprocessed with other features than the checkpoint was trained on.
  const std::string other = tmp("mart_eval_otherdata");
  fs::remove_all(other);
  auto p = run(mpirun(1) + MART_PREPROCESS + " --dataset.kind synth --input " + tmp("mart_eval_corpus") + " --output " +
               other + " --features.clip_samples 8192 --features.levels 3 --features.frames 16 --features.n_mels 32"
               " --features.views 0 --preprocess.unit_tracks 8");
  ASSERT_EQ(p.code, 0) << p.output;
  auto r = run(mpirun(1) + MART_EVAL + " --data " + other + " --run " + out + " --checkpoint " + kRun, 120);
  EXPECT_EQ(r.code, 2) << r.output;
  EXPECT_NE(r.output.find("features"), std::string::npos) << r.output;
  // A task whose labels the shards lack.
  auto folder = run(mpirun(1) + MART_EVAL + " --data " + kData + " --run " + out + " --eval.tasks lyrics", 120);
  EXPECT_EQ(folder.code, 2) << folder.output;
  EXPECT_NE(folder.output.find("unknown task 'lyrics'"), std::string::npos) << folder.output;
  EXPECT_EQ(folder.output.find("embeddings"), std::string::npos) << "refused before any embedding:\n" << folder.output;
  // Tagging on a folder of audio without labels.
  const std::string unlabelled = tmp("mart_eval_unlabelled");
  fs::remove_all(unlabelled);
  auto u = run(mpirun(1) + MART_PREPROCESS + " --dataset.kind folder --input " + tmp("mart_eval_corpus") + "/audio --output " +
               unlabelled + kFeatures + " --preprocess.unit_tracks 16");
  ASSERT_EQ(u.code, 0) << u.output;
  auto untagged = run(mpirun(1) + MART_EVAL + " --data " + unlabelled + " --run " + out + " --eval.tasks tagging", 120);
  EXPECT_EQ(untagged.code, 2) << untagged.output;
  EXPECT_NE(untagged.output.find("task 'tagging' needs labels"), std::string::npos) << untagged.output;
  // Not a checkpoint.
  auto bad = run(mpirun(1) + MART_EVAL + " --data " + kData + " --run " + out + " --checkpoint " + out, 120);
  EXPECT_EQ(bad.code, 2) << bad.output;
  EXPECT_NE(bad.output.find("neither a complete checkpoint"), std::string::npos) << bad.output;
}

}  // namespace

// The rows of protocol covers_finetune, by "model task metric".
std::map<std::string, double> covers_rows(const nlohmann::json& r) {
  std::map<std::string, double> m;
  for (const auto& x : r)
    if (x["protocol"] == "covers_finetune")
      m[x["model"].get<std::string>() + " " + x["task"].get<std::string>() + " " + x["metric"].get<std::string>()] = x["value"];
  return m;
}

// The paper's table-3 protocol (issue 12): CQTNet from scratch and MART + CQTNet trained on the
// training works, stopped on the valid works, ranked on the test works and on a transfer set.
// Two ranks sharing each batch give one rank's metrics; only training tracks ever train.
TEST_F(EvalStage, CoversProtocolOnTwoRanksMatchesOneAndTrainsOnTrainingWorksOnly) {
  const std::string cqt = tmp("mart_eval_cqt"), transfer = tmp("mart_eval_transfer"), corpus2 = tmp("mart_eval_corpus2");
  for (const auto& d : {cqt, transfer, corpus2}) fs::remove_all(d);
  auto p = run(mpirun(2) + MART_PREPROCESS + " --dataset.kind synth --input " + tmp("mart_eval_corpus") + " --output " + cqt +
               kFeatures + " --features.cqt true --preprocess.unit_tracks 8");
  ASSERT_EQ(p.code, 0) << p.output;
  auto s = run(std::string(MART_SYNTH) + " --output " + corpus2 + " --synth.tracks 24 --synth.seconds 2 --synth.seed 11");
  ASSERT_EQ(s.code, 0) << s.output;
  auto t = run(mpirun(2) + MART_PREPROCESS + " --dataset.kind synth --input " + corpus2 + " --output " + transfer +
               kFeatures + " --features.cqt true --preprocess.unit_tracks 8");
  ASSERT_EQ(t.code, 0) << t.output;
  const std::string cov = " --eval.threads 1 --checkpoint " + kRun +
                          " --eval.tasks covers --eval.baselines false --eval.covers_models cqtnet,mart+cqtnet"
                          " --eval.covers_epochs 2 --eval.covers_batch 8 --eval.covers_bn_batch 4 --eval.covers_segments 200"
                          " --eval.covers_train_crops 2"
                          " --eval.covers_cqtnet_width 0.125 --eval.transfer_data " + transfer;
  const auto one = mart::test::fresh_dir("mart_cov_one"), pair = mart::test::fresh_dir("mart_cov_pair");
  auto r1 = run(mpirun(1) + MART_EVAL + " --data " + cqt + " --run " + one + cov, 600);
  ASSERT_EQ(r1.code, 0) << r1.output;
  auto r2 = run(mpirun(2) + MART_EVAL + " --data " + cqt + " --run " + pair + cov + " --eval.group_ranks 2", 600);
  ASSERT_EQ(r2.code, 0) << r2.output;
  const auto table3 = r1.output.find("Cover songs as the paper's table 3");
  ASSERT_NE(table3, std::string::npos) << r1.output;
  for (const char* row : {"| cqtnet (from scratch) |", "| mart+cqtnet (fine-tuned) |", "| mart (frozen) |", "covers_transfer MAP",
                          "| chance (random ranking) |"})
    EXPECT_NE(r1.output.find(row, table3), std::string::npos) << row << "\n" << r1.output;
  const auto a = covers_rows(results(one)), b = covers_rows(results(pair));
  EXPECT_EQ(a.size(), 12u);  // 2 models x (test, transfer) x (MAP, P@10, MR1)
  ASSERT_EQ(a.size(), b.size());
  // The same training up to the order of float sums (fixed BatchNorm micro-batches).
  for (const auto& [k, v] : a) EXPECT_NEAR(v, b.at(k), 0.02) << k;
  // The audit of what trained: exactly the training tracks that have a work, of this data only.
  const auto e = mart::eval::read_embeddings(one + "/embeddings-mart.h5");
  std::set<std::string> expected;
  for (const auto& x : e.tracks)
    if (x.split == "train" && x.cover_group >= 0) expected.insert(x.id);
  ASSERT_FALSE(expected.empty());
  // The chance row is the exact expectation of a random ranking of the ranked (test-side) tracks.
  std::vector<int64_t> test_groups;
  for (const auto& x : e.tracks)
    if (x.split == "test") test_groups.push_back(x.cover_group);
  const auto chance = mart::metrics::chance_retrieval(test_groups);
  int chance_rows = 0;
  for (const auto& x : results(one))
    if (x["model"] == "chance" && x["task"] == "covers") {
      ++chance_rows;
      const double want = x["metric"] == "MAP" ? chance.map : x["metric"] == "P@10" ? chance.precision_at_k : chance.mr1;
      EXPECT_NEAR(x["value"].get<double>(), want, 1e-12) << x.dump();
    }
  EXPECT_EQ(chance_rows, 3);
  for (const std::string& run_dir : {one, pair})  // the same list whatever the group size
  for (const char* model : {"cqtnet", "mart+cqtnet"}) {
    std::ifstream in(run_dir + "/covers-" + model + "-seed1-trained.tsv");
    ASSERT_TRUE(in.good()) << run_dir << " " << model;
    std::string line;
    std::getline(in, line);  // header
    std::set<std::string> seen;
    while (std::getline(in, line)) {
      std::istringstream f(line);
      std::string dir, id, split;
      std::getline(f, dir, '\t'), std::getline(f, id, '\t'), std::getline(f, split, '\t');
      EXPECT_EQ(dir, cqt) << line;  // never the transfer set
      EXPECT_EQ(split, "train") << line;
      seen.insert(id);
    }
    EXPECT_EQ(seen, expected) << run_dir << " " << model;
  }
  // Shards without the constant-Q are refused before any work, naming the fix.
  auto bad = run(mpirun(1) + MART_EVAL + " --data " + kData + " --run " + mart::test::fresh_dir("mart_cov_bad") +
                     " --checkpoint " + kRun + " --eval.covers_models cqtnet",
                 120);
  EXPECT_NE(bad.code, 0);
  EXPECT_NE(bad.output.find("--features.cqt true"), std::string::npos) << bad.output;
  // eval.covers_train_crops is read and checked before any work.
  auto zero = run(mpirun(1) + MART_EVAL + " --data " + cqt + " --run " + mart::test::fresh_dir("mart_cov_zero") +
                      " --checkpoint " + kRun + " --eval.covers_models mart --eval.covers_train_crops 0",
                  120);
  EXPECT_NE(zero.code, 0);
  EXPECT_NE(zero.output.find("_train_crops must be at least 1"), std::string::npos) << zero.output;
}

// eval.score_split valid, end to end: the report says it scored the valid split, the frozen
// ranking ranks the valid works' tracks, MART fine-tuned for covers trains on training works only
// (a tenth of them validate), and the transfer set, a test set, is not read.
TEST_F(EvalStage, ScoringTheValidSplitNeverReadsTheTestSplit) {
  const auto dev = mart::test::fresh_dir("mart_eval_dev");
  auto r = run(mpirun(1) + MART_EVAL + " --data " + kData + " --run " + dev + " --checkpoint " + kRun +
                   " --eval.threads 1 --eval.seeds 1 --eval.max_epochs 5 --eval.tasks tagging,covers --eval.baselines false"
                   " --eval.covers_models mart --eval.covers_epochs 1 --eval.covers_batch 8 --eval.covers_bn_batch 4"
                   " --eval.score_split valid --eval.transfer_data " + kData,
               600);
  ASSERT_EQ(r.code, 0) << r.output;
  const auto e = mart::eval::read_embeddings(dev + "/embeddings-mart.h5");
  std::map<std::string, std::string> split_of;
  size_t valid = 0;
  for (const auto& t : e.tracks) split_of[t.id] = t.split, valid += t.split == "valid";
  ASSERT_GT(valid, 0u);
  EXPECT_NE(r.output.find("the " + std::to_string(valid) + " test-side tracks are ranked"), std::string::npos) << r.output;
  std::ifstream md(dev + "/report.md");
  const std::string report((std::istreambuf_iterator<char>(md)), std::istreambuf_iterator<char>());
  EXPECT_NE(report.find("Scored on the **valid** split"), std::string::npos) << report;
  std::set<std::string> tasks;
  for (const auto& x : results(dev)) {
    EXPECT_EQ(x["split"], "valid") << x.dump();
    tasks.insert(x["task"].get<std::string>());
  }
  EXPECT_EQ(tasks, (std::set<std::string>{"tagging", "covers"}));  // no covers_transfer
  std::ifstream in(dev + "/covers-mart-seed1-trained.tsv");
  ASSERT_TRUE(in.good());
  std::string line;
  std::getline(in, line);
  size_t trained = 0, train_tracks = 0;
  for (const auto& [id, s] : split_of) train_tracks += s == "train";
  while (std::getline(in, line)) {
    std::istringstream f(line);
    std::string dir, id;
    std::getline(f, dir, '\t'), std::getline(f, id, '\t');
    EXPECT_EQ(split_of.at(id), "train") << line;
    ++trained;
  }
  EXPECT_GT(trained, 0u);
  EXPECT_LT(trained, train_tracks);  // some training works validate
  // Anything but test or valid is refused before any work.
  auto bad = run(mpirun(1) + MART_EVAL + " --data " + kData + " --run " + mart::test::fresh_dir("mart_eval_dev_bad") +
                     " --eval.score_split dev",
                 120);
  EXPECT_NE(bad.code, 0);
  EXPECT_NE(bad.output.find("eval.score_split must be test or valid"), std::string::npos) << bad.output;
}
