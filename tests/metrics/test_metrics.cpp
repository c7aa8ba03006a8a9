// ROC-AUC, average precision, their macro averages, classification metrics and mean/std:
// hand-checked small cases, then scikit-learn's values on random scores with ties.
#include "mart/metrics/metrics.h"

#include <gtest/gtest.h>

#include <cmath>
#include <random>

#include "mart/core/error.h"
#include "sklearn_golden.h"

namespace {

using mart::metrics::MacroResult;
using U8 = std::vector<std::uint8_t>;

constexpr double kTol = 1e-9;

// ---- hand-checked ------------------------------------------------------------------------

TEST(Metrics, SklearnDocExample) {
  // sklearn's docstring example: y = [0, 0, 1, 1], scores = [0.1, 0.4, 0.35, 0.8].
  // Ranked: 0.8(+) 0.4(-) 0.35(+) 0.1(-). ROC: pairs (pos, neg) ordered right: 0.8 beats both
  // negatives, 0.35 beats 0.1 only -> 3 of 4 = 0.75. AP: the positive at rank 1 has precision
  // 1, the one at rank 3 has 2/3, each adds recall 1/2 -> (1 + 2/3) / 2 = 5/6.
  const std::vector<double> s = {0.1, 0.4, 0.35, 0.8};
  const U8 y = {0, 0, 1, 1};
  EXPECT_NEAR(mart::metrics::roc_auc(s, y), 0.75, 1e-15);
  EXPECT_NEAR(mart::metrics::average_precision(s, y), 5.0 / 6.0, 1e-15);
}

TEST(Metrics, TiesGiveHalfCredit) {
  // One positive and one negative with the same score: one threshold, the ROC curve jumps from
  // (0, 0) to (1, 1) in one diagonal step -> 0.5. AP: at that threshold P = 1/2, R = 1 -> 0.5.
  EXPECT_DOUBLE_EQ(mart::metrics::roc_auc({0.5, 0.5}, {0, 1}), 0.5);
  EXPECT_DOUBLE_EQ(mart::metrics::average_precision({0.5, 0.5}, {0, 1}), 0.5);
  // Scores 0.9(+), then {0.5(+), 0.5(-), 0.5(-)} tied, then 0.1(-). AP: threshold 0.9 gives
  // R = 1/2, P = 1; threshold 0.5 adds R 1/2 at P = 2/4 -> 0.5 + 0.25 = 0.75 (the interpolated
  // or per-item orders would give other values). ROC: positive 0.9 beats 3 negatives; positive
  // 0.5 beats 0.1 and ties two -> 1 + 1 = 2 -> (3 + 2) / 6 = 5/6.
  const std::vector<double> s = {0.9, 0.5, 0.5, 0.5, 0.1};
  const U8 y = {1, 1, 0, 0, 0};
  EXPECT_NEAR(mart::metrics::average_precision(s, y), 0.75, 1e-15);
  EXPECT_NEAR(mart::metrics::roc_auc(s, y), 5.0 / 6.0, 1e-15);
}

TEST(Metrics, SingleClassColumns) {
  EXPECT_THROW(mart::metrics::roc_auc({0.1, 0.2}, {0, 0}), mart::Error);
  EXPECT_THROW(mart::metrics::roc_auc({0.1, 0.2}, {1, 1}), mart::Error);
  EXPECT_EQ(mart::metrics::average_precision({0.1, 0.2}, {0, 0}), 0.0);  // sklearn 1.2.1: -0.0
  EXPECT_EQ(mart::metrics::average_precision({0.1, 0.2}, {1, 1}), 1.0);

  // [3 items, 3 labels]: column 0 usable (AUC 1, AP 1), column 1 all negative, column 2 all
  // positive. ROC macro keeps column 0 only; AP macro averages 1, 0, 1.
  const std::vector<double> s = {0.9, 0.1, 0.5,  //
                                 0.2, 0.3, 0.6,  //
                                 0.1, 0.8, 0.7};
  const U8 y = {1, 0, 1,  //
                0, 0, 1,  //
                0, 0, 1};
  const MacroResult roc = mart::metrics::macro_roc_auc(s, y, 3);
  EXPECT_EQ(roc.kept, 1u);
  EXPECT_EQ(roc.skipped, 2u);
  EXPECT_DOUBLE_EQ(roc.value, 1.0);
  EXPECT_TRUE(std::isnan(roc.per_column[1]));
  const MacroResult ap = mart::metrics::macro_average_precision(s, y, 3);
  EXPECT_EQ(ap.kept, 3u);
  EXPECT_EQ(ap.skipped, 0u);
  EXPECT_DOUBLE_EQ(ap.value, 2.0 / 3.0);

  EXPECT_THROW(mart::metrics::macro_roc_auc(std::vector<double>{0.1, 0.2}, U8{0, 0}, 1), mart::Error);
}

TEST(Metrics, BadInputThrows) {
  EXPECT_THROW(mart::metrics::roc_auc({0.1, 0.2}, {0, 2}), mart::Error);
  EXPECT_THROW(mart::metrics::roc_auc({0.1, NAN}, {0, 1}), mart::Error);
  EXPECT_THROW(mart::metrics::average_precision({0.1}, {0, 1}), mart::Error);
  EXPECT_THROW(mart::metrics::average_precision({}, {}), mart::Error);
  EXPECT_THROW(mart::metrics::macro_average_precision(std::vector<double>{0.1, 0.2, 0.3}, U8{0, 1, 1}, 2),
               mart::Error);
  EXPECT_THROW(mart::metrics::accuracy(std::vector<double>{0.1, 0.2}, {2}, 2), mart::Error);
  EXPECT_THROW(mart::metrics::one_hot({-1}, 2), mart::Error);
}

TEST(Metrics, ArgmaxTiesGoToLowestIndexAndAccuracy) {
  const std::vector<float> s = {0.3f, 0.7f, 0.7f,  //
                                0.5f, 0.5f, 0.5f,  //
                                0.1f, 0.2f, 0.9f};
  EXPECT_EQ(mart::metrics::argmax_rows(s, 3), (std::vector<std::int64_t>{1, 0, 2}));
  // Predictions 1, 0, 2 against labels 2, 0, 2 -> 2 of 3 right.
  EXPECT_DOUBLE_EQ(mart::metrics::accuracy(s, {2, 0, 2}, 3), 2.0 / 3.0);
  EXPECT_EQ(mart::metrics::one_hot({2, 0}, 3), (U8{0, 0, 1, 1, 0, 0}));
}

TEST(Metrics, MeanStdOverSeeds) {
  // mean 2.5; squared deviations 2.25 + 0.25 + 0.25 + 2.25 = 5, sample variance 5/3.
  const auto r = mart::metrics::mean_std({1, 2, 3, 4});
  EXPECT_DOUBLE_EQ(r.mean, 2.5);
  EXPECT_DOUBLE_EQ(r.std, std::sqrt(5.0 / 3.0));
  EXPECT_EQ(r.n, 4u);
  const auto one = mart::metrics::mean_std({0.7});
  EXPECT_DOUBLE_EQ(one.mean, 0.7);
  EXPECT_EQ(one.std, 0.0);
  EXPECT_THROW(mart::metrics::mean_std({}), mart::Error);
  EXPECT_THROW(mart::metrics::mean_std({1.0, NAN}), mart::Error);
}

// ---- scikit-learn on random scores with ties ------------------------------------------------

struct TagCase {
  std::size_t n, m;
  std::vector<double> scores;
  U8 labels;
};

// Scores rounded to one decimal (many ties); column `none` has no positives, column `all` no
// negatives (pass m to disable).
TagCase random_tagging(std::mt19937& rng, std::size_t n, std::size_t m, std::size_t none,
                       std::size_t all) {
  std::uniform_int_distribution<int> tenth(0, 10);
  std::bernoulli_distribution pos(0.3);
  TagCase c{n, m, std::vector<double>(n * m), U8(n * m)};
  for (std::size_t i = 0; i < n * m; ++i) {
    c.scores[i] = tenth(rng) / 10.0;
    const std::size_t col = i % m;
    c.labels[i] = col == none ? 0 : col == all ? 1 : pos(rng);
  }
  return c;
}

void expect_macro(const MacroResult& r, const std::vector<double>& g, std::size_t m,
                  std::size_t offset, double macro, std::size_t expect_skipped) {
  ASSERT_EQ(r.per_column.size(), m);
  for (std::size_t c = 0; c < m; ++c) {
    if (std::isnan(g[offset + c])) {
      EXPECT_TRUE(std::isnan(r.per_column[c])) << "column " << c;
    } else {
      EXPECT_NEAR(r.per_column[c], g[offset + c], kTol) << "column " << c;
    }
  }
  EXPECT_NEAR(r.value, macro, kTol);
  EXPECT_EQ(r.skipped, expect_skipped);
  EXPECT_EQ(r.kept + r.skipped, m);
}

TEST(Metrics, EqualScikitLearnOnRandomScoresWithTies) {
  std::mt19937 rng(20261125);
  std::vector<TagCase> tags = {random_tagging(rng, 60, 6, 2, 4),
                               random_tagging(rng, 200, 10, 7, 10),
                               random_tagging(rng, 7, 3, 3, 3),
                               random_tagging(rng, 500, 4, 0, 4)};
  // Tiny cases can draw a single-class column by chance; the checks read sklearn's verdict.
  const TagCase tf = random_tagging(rng, 50, 5, 0, 5);
  std::vector<float> tf_scores(tf.scores.begin(), tf.scores.end());

  // Classification: 80 items, 5 classes, class 4 never the label (skipped by ROC one-vs-rest),
  // scores on a 0.1 grid so argmax has ties too.
  const std::size_t cn = 80, cm = 5;
  std::vector<double> cs(cn * cm);
  std::vector<std::int64_t> cy(cn);
  std::uniform_int_distribution<int> tenth(0, 10), cls(0, 3);
  for (auto& v : cs) v = tenth(rng) / 10.0;
  for (auto& v : cy) v = cls(rng);

  mart::test::GoldenInput in;
  for (const auto& c : tags) in.add(mart::test::GoldenKind::kTagging, c.n, c.m, c.scores, c.labels);
  in.add(mart::test::GoldenKind::kTaggingFloat, tf.n, tf.m, tf_scores, tf.labels);
  in.add(mart::test::GoldenKind::kClassification, cn, cm, cs, cy);
  const std::string in_path = std::string(MART_BINARY_DIR) + "/metrics_golden_in.bin";
  const std::string out_path = std::string(MART_BINARY_DIR) + "/metrics_golden_out.bin";
  in.write(in_path);
  const std::string skip = mart::test::run_golden_script(in_path, out_path);
  if (!skip.empty()) GTEST_SKIP() << skip;
  const auto golden = mart::test::read_golden(out_path);
  ASSERT_EQ(golden.size(), tags.size() + 2);

  auto check_tagging = [&](const auto& scores, const U8& labels, std::size_t m,
                           const std::vector<double>& g) {
    ASSERT_EQ(g.size(), 2 * m + 2);
    std::size_t single = 0;
    for (std::size_t c = 0; c < m; ++c) single += std::isnan(g[c]);
    const auto t = mart::metrics::tagging_metrics(scores, labels, m);
    expect_macro(t.roc_auc, g, m, 0, g[2 * m], single);
    expect_macro(t.pr_auc, g, m, m, g[2 * m + 1], 0);
    for (std::size_t c = 0; c < m; ++c) {
      std::vector<double> s(labels.size() / m);
      U8 y(labels.size() / m);
      for (std::size_t i = 0; i < s.size(); ++i) {
        s[i] = scores[i * m + c];
        y[i] = labels[i * m + c];
      }
      EXPECT_NEAR(mart::metrics::average_precision(s, y), g[m + c], kTol);
      if (!std::isnan(g[c])) {
        EXPECT_NEAR(mart::metrics::roc_auc(s, y), g[c], kTol);
      }
    }
  };
  for (std::size_t k = 0; k < tags.size(); ++k) {
    SCOPED_TRACE("tagging case " + std::to_string(k));
    check_tagging(tags[k].scores, tags[k].labels, tags[k].m, golden[k]);
  }
  {
    SCOPED_TRACE("float tagging case");
    check_tagging(tf_scores, tf.labels, tf.m, golden[tags.size()]);
  }
  // The planted single-class columns really were exercised.
  EXPECT_TRUE(std::isnan(golden[0][2]) && std::isnan(golden[0][4]));
  EXPECT_TRUE(std::isnan(golden[tags.size()][0]));

  const auto& g = golden[tags.size() + 1];
  ASSERT_EQ(g.size(), 3u);
  const auto cls_m = mart::metrics::classification_metrics(cs, cy, cm);
  EXPECT_NEAR(cls_m.accuracy, g[0], kTol);
  EXPECT_NEAR(cls_m.roc_auc.value, g[1], kTol);
  EXPECT_EQ(cls_m.roc_auc.skipped, 1u);
  EXPECT_NEAR(cls_m.pr_auc.value, g[2], kTol);
  EXPECT_EQ(cls_m.pr_auc.kept, cm);
}

}  // namespace
