// The probe itself is proven: on embeddings that carry the labels it is near perfect, on shuffled
// labels it is at chance. Labels are those of the demo corpus (mart-synth's plan).
#include <gtest/gtest.h>

#include <set>

#include <algorithm>

#include "mart/core/error.h"
#include "mart/core/rng.h"
#include "mart/eval/tasks.h"
#include "mart/synth/synth.h"

namespace {

using namespace mart;

// Every demo track with 3 crops; the first dimensions are its tags (or its class, one-hot) plus
// noise when `planted`, pure noise otherwise.
eval::EmbeddingSet demo_set(bool planted, bool shuffle_labels) {
  synth::SynthOptions so;
  so.tracks = 240;
  const auto plan = synth::plan_corpus(so);
  eval::EmbeddingSet e;
  e.source = planted ? "planted" : "noise";
  e.dim = 40;
  e.levels = 1;
  e.tag_names = synth::tag_names();
  for (const auto& s : synth::styles()) e.class_names.push_back(s.name);
  Rng rng(5);
  std::vector<size_t> label_of(plan.size());
  for (size_t i = 0; i < plan.size(); ++i) label_of[i] = i;
  if (shuffle_labels)
    for (size_t i = plan.size(); i > 1; --i) std::swap(label_of[i - 1], label_of[rng.next() % i]);
  for (size_t i = 0; i < plan.size(); ++i) {
    const auto& t = plan[i];
    const auto& lab = plan[label_of[i]];
    eval::TrackInfo info;
    info.id = t.track_id;
    info.split = t.split;
    info.tags.assign(e.tag_names.size(), 0);
    for (int g : lab.tags) info.tags[static_cast<size_t>(g)] = 1;
    info.class_index = lab.style;
    info.crop_begin = e.num_crops();
    for (int c = 0; c < 3; ++c) {
      std::vector<float> x(static_cast<size_t>(e.dim));
      for (auto& v : x) v = static_cast<float>(rng.normal());
      if (planted) {  // the features carry the TRACK's own labels (t, not lab)
        for (int g : t.tags) x[static_cast<size_t>(g)] += 3.0f;
        x[e.tag_names.size() + static_cast<size_t>(t.style)] += 3.0f;
      }
      e.crops.insert(e.crops.end(), x.begin(), x.end());
    }
    info.crop_end = e.num_crops();
    e.tracks.push_back(info);
  }
  return e;
}

double metric(const std::vector<eval::TaskScore>& s, const std::string& name) {
  for (const auto& x : s)
    if (x.metric == name) return x.value;
  ADD_FAILURE() << "no metric " << name;
  return 0;
}

TEST(Probe, PlantedFeaturesGiveNearPerfectTaggingAndClassification) {
  const auto e = demo_set(true, false);
  eval::ProbeOptions o;
  const auto tag = eval::run_probe_task(e, "tagging", 1.0, o);
  EXPECT_GT(metric(tag, "ROC-AUC"), 0.97);
  EXPECT_GT(metric(tag, "PR-AUC"), 0.9);
  const auto cls = eval::run_probe_task(e, "classification", 1.0, o);
  EXPECT_GT(metric(cls, "accuracy"), 0.95);
  o.kind = eval::ProbeKind::mlp;
  EXPECT_GT(metric(eval::run_probe_task(e, "classification", 1.0, o), "accuracy"), 0.9);
}

TEST(Probe, ShuffledLabelsGiveChance) {
  const auto e = demo_set(true, true);
  eval::ProbeOptions o;
  const double auc = metric(eval::run_probe_task(e, "tagging", 1.0, o), "ROC-AUC");
  EXPECT_GT(auc, 0.35);
  EXPECT_LT(auc, 0.65);
  const double acc = metric(eval::run_probe_task(e, "classification", 1.0, o), "accuracy");
  EXPECT_LT(acc, 0.3);  // chance is 1/8
}

TEST(Probe, FewerLabelsStillLearnAndSeedsAreDeterministic) {
  const auto e = demo_set(true, false);
  eval::ProbeOptions o;
  const auto a = eval::run_probe_task(e, "tagging", 0.1, o), b = eval::run_probe_task(e, "tagging", 0.1, o);
  EXPECT_EQ(metric(a, "ROC-AUC"), metric(b, "ROC-AUC"));
  EXPECT_GT(metric(a, "ROC-AUC"), 0.8);
}

TEST(Probe, MissingSplitIsAClearError) {
  auto e = demo_set(true, false);
  for (auto& t : e.tracks)
    if (t.split == "test") t.split = "train";
  try {
    eval::run_probe_task(e, "tagging", 1.0, {});
    FAIL() << "no error without a test split";
  } catch (const mart::ConfigError& err) {
    EXPECT_NE(std::string(err.what()).find("test"), std::string::npos) << err.what();
  }
}

// Data without a test split (GTZAN without split lists) gets mart-eval's own folds: every track
// tests in exactly one fold, each class is spread evenly over the folds, and the folds do not
// depend on the job's seed.
TEST(Probe, WithoutATestSplitTheEvaluationMakesStratifiedFolds) {
  auto e = demo_set(true, false);
  for (auto& t : e.tracks) t.split = "train";
  ASSERT_FALSE(eval::has_test_split(e, "classification"));
  const int K = 5;
  const size_t n = e.tracks.size(), n_classes = e.class_names.size();
  std::vector<size_t> class_size(n_classes, 0);
  for (const auto& t : e.tracks) ++class_size[static_cast<size_t>(t.class_index)];
  std::vector<int> tested(n, 0);
  for (int f = 0; f < K; ++f) {
    SCOPED_TRACE("fold " + std::to_string(f));
    const auto s = eval::task_tracks(e, "classification", 1.0, 1, f, K);
    EXPECT_EQ(s.train.size() + s.valid.size() + s.test.size(), n);
    EXPECT_TRUE(s.test.size() == n / K || s.test.size() == n / K + 1) << s.test.size();
    std::vector<size_t> in_fold(n_classes, 0);
    for (size_t i : s.test) {
      ++tested[i];
      ++in_fold[static_cast<size_t>(e.tracks[i].class_index)];
      EXPECT_EQ(std::count(s.train.begin(), s.train.end(), i) + std::count(s.valid.begin(), s.valid.end(), i), 0);
    }
    for (size_t c = 0; c < n_classes; ++c)  // stratified: floor or ceil of the class's share
      EXPECT_LE(std::max(in_fold[c] * K, class_size[c]) - std::min(in_fold[c] * K, class_size[c]), static_cast<size_t>(K))
          << "class " << c << ": " << in_fold[c] << " of " << class_size[c];
    EXPECT_FALSE(s.valid.empty());
    // Another job seed (or a label fraction) draws other training tracks, never another fold.
    EXPECT_EQ(eval::task_tracks(e, "classification", 1.0, 7, f, K).test, s.test);
    EXPECT_EQ(eval::task_tracks(e, "classification", 0.5, 3, f, K).test, s.test);
  }
  for (size_t i = 0; i < n; ++i) EXPECT_EQ(tested[i], 1) << "track " << i;
  // A probe on a fold works and says which fold it tested.
  const auto cls = eval::run_probe_task(e, "classification", 1.0, {}, 2, K);
  EXPECT_GT(metric(cls, "accuracy"), 0.9);
  for (const auto& x : cls) EXPECT_EQ(x.fold, 2);
  // Too few tracks for the folds, or folds asked for on data with a test split: refused.
  std::vector<size_t> three = {0, 1, 2};
  EXPECT_THROW(eval::stratified_folds(e, three, true, 5), mart::ConfigError);
  EXPECT_THROW(eval::stratified_folds(e, three, true, 1), mart::ConfigError);
  EXPECT_THROW(eval::task_tracks(demo_set(true, false), "classification", 1.0, 1, 0, K), mart::Error);
}

// eval.score_split valid: the valid tracks are scored, every tenth training track validates, and
// no test track is read by any side; the scores equal a data set whose valid tracks were its test
// tracks (the same probe, the same crops).
TEST(Probe, DevelopmentScoringScoresValidAndNeverReadsTest) {
  const auto e = demo_set(true, false);
  auto d = e;
  eval::develop_splits(&d.tracks);
  std::set<size_t> valid, test, train;
  for (size_t i = 0; i < e.tracks.size(); ++i)
    (e.tracks[i].split == "valid" ? valid : e.tracks[i].split == "test" ? test : train).insert(i);
  ASSERT_FALSE(valid.empty());
  ASSERT_FALSE(test.empty());
  for (const char* task : {"tagging", "classification"}) {
    SCOPED_TRACE(task);
    const auto s = eval::task_tracks(d, task, 1.0, 1);
    EXPECT_EQ(std::set<size_t>(s.test.begin(), s.test.end()), valid);
    for (const auto* side : {&s.train, &s.valid})
      for (size_t i : *side) EXPECT_TRUE(train.count(i)) << "track " << i << " is not a training track";
    EXPECT_EQ(s.train.size() + s.valid.size(), train.size());
    EXPECT_EQ(s.valid.size(), train.size() / 10);  // every tenth
  }
  // The same as data whose valid split is called test and whose test tracks are gone.
  auto relabelled = e;
  relabelled.tracks.clear();
  relabelled.crops.clear();
  for (size_t i = 0; i < e.tracks.size(); ++i) {
    if (test.count(i)) continue;
    auto t = e.tracks[i];
    if (t.split == "valid") t.split = "test";
    const int64_t b = relabelled.num_crops();
    relabelled.crops.insert(relabelled.crops.end(), e.crops.begin() + t.crop_begin * e.dim, e.crops.begin() + t.crop_end * e.dim);
    t.crop_end = b + (t.crop_end - t.crop_begin), t.crop_begin = b;
    relabelled.tracks.push_back(t);
  }
  const auto a = eval::run_probe_task(d, "classification", 1.0, {}), b = eval::run_probe_task(relabelled, "classification", 1.0, {});
  ASSERT_EQ(a.size(), b.size());
  for (size_t k = 0; k < a.size(); ++k) EXPECT_DOUBLE_EQ(a[k].value, b[k].value) << a[k].metric;
}

TEST(Report, MarkdownHasOneRowPerModelAndMeanStd) {
  std::vector<eval::TaskScore> s = {{"mart", "linear", "tagging", "ROC-AUC", 1.0, 1, 0.9},
                                    {"mart", "linear", "tagging", "ROC-AUC", 1.0, 2, 0.8},
                                    {"logmel_stats", "linear", "tagging", "ROC-AUC", 1.0, 1, 0.7},
                                    {"mart", "finetune", "tagging", "ROC-AUC", 0.1, 1, 0.6}};
  const auto md = eval::markdown_report(s);
  // Two tables, frozen embeddings first, as the paper's.
  const auto frozen = md.find("Frozen embeddings"), tuned = md.find("Fine-tuned whole model");
  ASSERT_NE(frozen, std::string::npos) << md;
  ASSERT_NE(tuned, std::string::npos) << md;
  EXPECT_LT(frozen, tuned);
  EXPECT_NE(md.find("| model | tagging ROC-AUC |\n|---|---|\n| mart | 0.8500 ± 0.0707 |\n| logmel_stats | 0.7000 |"),
            std::string::npos) << md;
  EXPECT_NE(md.find("| model | tagging ROC-AUC @10% |\n|---|---|\n| mart | 0.6000 |", tuned), std::string::npos) << md;
  // Without fine-tuning: just the one table.
  s.pop_back();
  EXPECT_EQ(eval::markdown_report(s).rfind("| model |", 0), 0u) << eval::markdown_report(s);
}

TEST(Report, TheCoversTableNamesTheScoredWorksAndTheTransferSetOnlyWhenRanked) {
  std::vector<eval::TaskScore> s = {{"mart", "", "covers", "MAP", 1.0, 0, 0.2},
                                    {"mart", "covers_finetune", "covers", "MAP", 1.0, 1, 0.3}};
  const auto valid = eval::markdown_report(s, "valid");
  EXPECT_NE(valid.find("table 3 (valid works):"), std::string::npos) << valid;
  EXPECT_EQ(valid.find("transfer"), std::string::npos) << valid;
  s.push_back({"mart", "covers_finetune", "covers_transfer", "MAP", 1.0, 1, 0.1});
  const auto test = eval::markdown_report(s);
  EXPECT_NE(test.find("table 3 (test works; covers_transfer: the transfer set, never trained on):"), std::string::npos)
      << test;
}

}  // namespace
