// The training diagnostics (alignment, uniformity, effective rank, the per-step names) against
// hand-computed values in double.
#include <gtest/gtest.h>

#include <cmath>
#include <map>
#include <string>
#include <vector>

#include "mart/model/mart_model.h"
#include "mart/run/step.h"

namespace {

using mart::run::alignment;
using mart::run::effective_rank;
using mart::run::uniformity;

std::vector<double> unit(std::vector<double> v) {
  double n = 0;
  for (double x : v) n += x * x;
  for (double& x : v) x /= std::sqrt(n);
  return v;
}

TEST(Diagnostics, AlignmentIsTheMeanSquaredDistanceOfUnitPairs) {
  const auto x = torch::tensor({3.0, 4.0, 1.0, 0.0}).view({2, 2});
  const auto y = torch::tensor({6.0, 8.0, 0.0, 2.0}).view({2, 2});  // pair 0 same direction, pair 1 orthogonal
  EXPECT_NEAR(alignment(x, y), (0.0 + 2.0) / 2, 1e-12);
}

TEST(Diagnostics, UniformityByHand) {
  torch::manual_seed(2);
  const auto x = torch::randn({5, 3}, torch::kFloat64);
  std::vector<std::vector<double>> u;
  for (int i = 0; i < 5; ++i) u.push_back(unit({x[i][0].item<double>(), x[i][1].item<double>(), x[i][2].item<double>()}));
  double s = 0;
  int pairs = 0;
  for (int i = 0; i < 5; ++i)
    for (int j = 0; j < 5; ++j) {
      if (i == j) continue;
      double d2 = 0;
      for (int k = 0; k < 3; ++k) d2 += (u[i][k] - u[j][k]) * (u[i][k] - u[j][k]);
      s += std::exp(-2 * d2), ++pairs;
    }
  EXPECT_NEAR(uniformity(x), std::log(s / pairs), 1e-9);
  // All rows the same direction: every distance 0, uniformity log 1 = 0 (the collapsed maximum).
  EXPECT_NEAR(uniformity(torch::ones({4, 3})), 0.0, 1e-12);
}

TEST(Diagnostics, EffectiveRankCountsEqualDirections) {
  EXPECT_NEAR(effective_rank(torch::eye(6, torch::kFloat64)), 6.0, 1e-9);                    // 6 equal singular values
  EXPECT_NEAR(effective_rank(torch::ones({8, 5}) * torch::arange(1, 6).to(torch::kFloat)), 1.0, 1e-6);  // rank 1
  // Singular values 3 and 1: p = (0.75, 0.25), exp(entropy) by hand.
  const auto d = torch::diag(torch::tensor({3.0, 1.0}, torch::kFloat64));
  EXPECT_NEAR(effective_rank(d), std::exp(-(0.75 * std::log(0.75) + 0.25 * std::log(0.25))), 1e-9);
}

TEST(Diagnostics, StepReportsEveryNameAndIncrementsAreZeroWithoutPwt) {
  auto o = mart::model::ModelOptions::small();
  o.levels = 3;
  o.n_mels = 16, o.frames = 16;
  for (bool pwt : {true, false}) {
    o.use_pwt = pwt;
    torch::manual_seed(3);
    mart::model::MartModel model(o);
    const mart::loss::HierarchicalContrastiveLoss loss_fn(o.loss_options());
    const auto a = torch::randn({4, 1, o.n_mels, o.frames}), b = torch::randn({4, o.clips_total(), o.n_mels, o.frames});
    const auto l = mart::run::forward_loss(model, loss_fn, a, b, nullptr);
    std::map<std::string, double> d(l.diagnostics.begin(), l.diagnostics.end());
    for (const char* k : {"log_pw", "pos_logit", "neg_logit", "top1", "align", "uniform", "eff_rank", "incr0", "incr1", "incr2"})
      ASSERT_TRUE(d.count(k)) << k;
    EXPECT_GE(d["top1"], 0.0);
    EXPECT_LE(d["top1"], 1.0);
    EXPECT_GE(d["eff_rank"], 1.0 - 1e-9);
    EXPECT_LE(d["eff_rank"], 4.0 + 1e-9);  // at most the batch
    if (!pwt) {
      for (const char* k : {"incr0", "incr1", "incr2"}) EXPECT_EQ(d[k], 0.0) << k;
    } else {
      EXPECT_GT(d["incr1"], 0.0);
    }
  }
}

}  // namespace
