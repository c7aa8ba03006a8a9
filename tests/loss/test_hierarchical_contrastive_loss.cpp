// The hierarchical contrastive loss against eqs. (3)-(6) written out plainly with loops in double.
#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "mart/core/error.h"
#include "mart/loss/hierarchical_contrastive_loss.h"

namespace {

using mart::loss::HierarchicalContrastiveLoss;
using mart::loss::LossOptions;
using Vec = std::vector<double>;

Vec row(const torch::Tensor& t) {  // 1-d tensor -> doubles
  auto c = t.to(torch::kDouble).contiguous();
  return Vec(c.data_ptr<double>(), c.data_ptr<double>() + c.numel());
}

double cosine(const Vec& a, const Vec& b) {
  double ab = 0, aa = 0, bb = 0;
  for (size_t i = 0; i < a.size(); ++i) ab += a[i] * b[i], aa += a[i] * a[i], bb += b[i] * b[i];
  return ab / std::sqrt(aa * bb);
}

LossOptions opts(int levels, int parts, double tau, bool use_hcl, const std::string& pw_term = "inside",
                 double pw_weight = 1.0) {
  LossOptions o;
  o.levels = levels, o.parts = parts, o.tau = tau, o.use_hcl = use_hcl, o.pw_term = pw_term, o.pw_weight = pw_weight;
  return o;
}

// Eqs. (3)-(6) as printed, with plain exp and log. Returns L_hc_b for every b. With
// pw_weight >= 0 the part-whole term is separate: eq. (5) with L_pw = 0, plus
// pw_weight * (log L_pw_max - log L_pw_b), L_pw_max = (number of wholes) * exp(1 / tau).
Vec naive_loss(const std::vector<torch::Tensor>& z_hat, const torch::Tensor& z_tilde0, int m,
               double tau, bool use_hcl, double separate_weight = -1) {
  const int levels = static_cast<int>(z_hat.size());
  const int64_t batch = z_tilde0.size(0);
  auto hat = [&](int n, int64_t b, int64_t j) { return row(z_hat[n][b][j]); };
  Vec losses;
  for (int64_t b = 0; b < batch; ++b) {
    double l_pw = 0;  // eq. (3), with eq. (4)'s lambda_i = 1 / M
    for (int i = 0; use_hcl && i + 1 < levels; ++i)
      for (int64_t j = 0; j < z_hat[i].size(1); ++j)
        for (int k = 0; k < m; ++k)
          l_pw += (1.0 / m) * std::exp(cosine(hat(i, b, j), hat(i + 1, b, j * m + k)) / tau);
    double l_neg = 0;  // eq. (6)
    for (int64_t u = 0; u < batch; ++u) l_neg += std::exp(cosine(hat(0, b, 0), row(z_tilde0[u])) / tau);
    for (int64_t u = 0; u < batch; ++u)
      if (u != b) l_neg += std::exp(cosine(hat(0, b, 0), hat(0, u, 0)) / tau);
    const double positive = std::exp(cosine(hat(0, b, 0), row(z_tilde0[b])) / tau);
    if (separate_weight >= 0) {
      double wholes = 0;
      for (int i = 0; i + 1 < levels; ++i) wholes += static_cast<double>(z_hat[i].size(1));
      const double gap = use_hcl && levels > 1 ? std::log(wholes * std::exp(1.0 / tau)) - std::log(l_pw) : 0.0;
      losses.push_back(-std::log(positive / l_neg) + separate_weight * gap);
    } else {
      losses.push_back(-std::log((l_pw + positive) / (l_pw + l_neg)));  // eq. (5)
    }
  }
  return losses;
}

struct Case {
  int levels, parts;
  int64_t batch;
  double tau;
};

std::vector<torch::Tensor> random_hierarchy(const Case& c, int64_t d, torch::Dtype dtype) {
  std::vector<torch::Tensor> z;
  int64_t clips = 1;
  for (int n = 0; n < c.levels; ++n, clips *= c.parts)
    z.push_back(torch::randn({c.batch, clips, d}, torch::dtype(dtype)));
  return z;
}

// Relative error; near zero (B = 1 without HCL gives exactly 0) an absolute 1e-12.
double relative(double a, double b) { return std::abs(a - b) / std::max(std::abs(b), 1e-6); }

class LossMatchesEquations : public ::testing::TestWithParam<Case> {};

TEST_P(LossMatchesEquations, Float64To1e6Relative) {
  const Case c = GetParam();
  for (bool use_hcl : {true, false}) {
    torch::manual_seed(7 + c.levels * 10 + c.parts);
    const auto z_hat = random_hierarchy(c, 6, torch::kDouble);
    const auto z_tilde0 = torch::randn({c.batch, 6}, torch::kDouble);
    const HierarchicalContrastiveLoss loss(opts(c.levels, c.parts, c.tau, use_hcl));
    const auto out = loss(z_hat, z_tilde0);
    const Vec expected = naive_loss(z_hat, z_tilde0, c.parts, c.tau, use_hcl);
    double mean = 0;
    for (int64_t b = 0; b < c.batch; ++b) {
      EXPECT_LT(relative(out.per_instance[b].item<double>(), expected[b]), 1e-6)
          << "b=" << b << " hcl=" << use_hcl << " got " << out.per_instance[b].item<double>()
          << " want " << expected[b];
      mean += expected[b] / c.batch;
    }
    EXPECT_LT(relative(out.loss.item<double>(), mean), 1e-6) << "hcl=" << use_hcl;
  }
}

TEST_P(LossMatchesEquations, SeparatePartWholeTermFloat64) {
  const Case c = GetParam();
  for (double w : {0.0, 0.3, 1.0}) {
    torch::manual_seed(11 + c.levels * 10 + c.parts);
    const auto z_hat = random_hierarchy(c, 6, torch::kDouble);
    const auto z_tilde0 = torch::randn({c.batch, 6}, torch::kDouble);
    const HierarchicalContrastiveLoss loss(opts(c.levels, c.parts, c.tau, true, "separate", w));
    const auto out = loss(z_hat, z_tilde0);
    const Vec expected = naive_loss(z_hat, z_tilde0, c.parts, c.tau, true, w);
    for (int64_t b = 0; b < c.batch; ++b)
      EXPECT_LT(relative(out.per_instance[b].item<double>(), expected[b]), 1e-6)
          << "b=" << b << " w=" << w << " got " << out.per_instance[b].item<double>() << " want " << expected[b];
  }
}

// The diagnostics against the same quantities counted by hand.
TEST_P(LossMatchesEquations, DiagnosticsCountedByHand) {
  const Case c = GetParam();
  torch::manual_seed(5 + c.levels);
  const auto z_hat = random_hierarchy(c, 6, torch::kDouble);
  const auto z_tilde0 = torch::randn({c.batch, 6}, torch::kDouble);
  const auto out = HierarchicalContrastiveLoss(opts(c.levels, c.parts, c.tau, true))(z_hat, z_tilde0);
  double pos = 0, neg = 0, negatives = 0, top1 = 0, log_pw = 0;
  for (int64_t b = 0; b < c.batch; ++b) {
    const Vec a = row(z_hat[0][b][0]);
    const double p = cosine(a, row(z_tilde0[b])) / c.tau;
    pos += p;
    double best_other = -1e300;
    for (int64_t u = 0; u < c.batch; ++u) {
      if (u == b) continue;
      for (double l : {cosine(a, row(z_tilde0[u])) / c.tau, cosine(a, row(z_hat[0][u][0])) / c.tau}) {
        neg += l, negatives += 1, best_other = std::max(best_other, l);
      }
    }
    top1 += p > best_other ? 1 : 0;
    log_pw += out.log_pw[b].item<double>();
  }
  const auto s = out.stats;
  ASSERT_EQ(s.size(0), mart::loss::kLossStats);
  EXPECT_NEAR(s[mart::loss::kPositiveLogit].item<double>(), pos, 1e-9);
  EXPECT_NEAR(s[mart::loss::kNegativeLogit].item<double>(), neg, 1e-9);
  EXPECT_EQ(s[mart::loss::kNegatives].item<double>(), negatives);
  EXPECT_EQ(s[mart::loss::kTop1].item<double>(), top1);
  EXPECT_NEAR(s[mart::loss::kLogPw].item<double>(), c.levels > 1 ? log_pw : 0.0, 1e-9);
  EXPECT_EQ(s[mart::loss::kInstances].item<double>(), static_cast<double>(c.batch));
}

TEST(HierarchicalContrastiveLoss, BadPartWholeTermIsAConfigError) {
  EXPECT_THROW(HierarchicalContrastiveLoss(opts(3, 2, 0.5, true, "beside")), mart::ConfigError);
  EXPECT_THROW(HierarchicalContrastiveLoss(opts(3, 2, 0.5, true, "separate", -1)), mart::ConfigError);
}

INSTANTIATE_TEST_SUITE_P(Shapes, LossMatchesEquations,
                         ::testing::Values(Case{4, 2, 5, 0.5}, Case{3, 3, 4, 0.1},
                                           Case{2, 4, 3, 0.05}, Case{4, 2, 6, 0.05},
                                           Case{1, 2, 4, 0.5}, Case{2, 2, 1, 0.2}));

TEST(HierarchicalContrastiveLoss, Float32AtSmallTauIsFiniteAndAgreesWithFloat64) {
  // exp(1 / 0.01) = e^100 overflows float32; the log-space loss must not.
  const Case c{4, 2, 8, 0.01};
  torch::manual_seed(3);
  const auto z_hat = random_hierarchy(c, 16, torch::kDouble);
  const auto z_tilde0 = torch::randn({c.batch, 16}, torch::kDouble);  // unrelated positives: a large loss
  // Without HCL: with it, L_pw's e^(sim/tau) over 14 pairs dominates both sides and the loss is ~0.
  const HierarchicalContrastiveLoss loss(opts(c.levels, c.parts, c.tau, false));
  std::vector<torch::Tensor> z32;
  for (auto& z : z_hat) z32.push_back(z.to(torch::kFloat));
  const auto l32 = loss(z32, z_tilde0.to(torch::kFloat)).loss.item<double>();
  const auto l64 = loss(z_hat, z_tilde0).loss.item<double>();
  ASSERT_TRUE(std::isfinite(l32));
  ASSERT_GT(l64, 1.0);  // a loss far from 0, so the comparison means something
  EXPECT_LT(relative(l32, l64), 1e-3) << l32 << " vs " << l64;
}

TEST(HierarchicalContrastiveLoss, WithoutHclIsInfoNce) {
  // L_pw = 0 turns eq. (5) into InfoNCE: -log(e^pos / sum of the 2B - 1 negatives incl. itself).
  torch::manual_seed(5);
  const Case c{3, 2, 4, 0.3};
  const auto z_hat = random_hierarchy(c, 8, torch::kDouble);
  const auto z_tilde0 = torch::randn({c.batch, 8}, torch::kDouble);
  const auto a = torch::nn::functional::normalize(z_hat[0].reshape({c.batch, 8}),
                                                  torch::nn::functional::NormalizeFuncOptions().dim(1));
  const auto t = torch::nn::functional::normalize(z_tilde0, torch::nn::functional::NormalizeFuncOptions().dim(1));
  // Logits: against every s~_u, then against s^_u with the diagonal removed; target u = b.
  auto self = torch::matmul(a, a.t()) / c.tau;
  self = self.masked_fill(torch::eye(c.batch, torch::kBool), -INFINITY);
  const auto logits = torch::cat({torch::matmul(a, t.t()) / c.tau, self}, 1);
  const auto info_nce = torch::nn::functional::cross_entropy(logits, torch::arange(c.batch));
  const auto out = HierarchicalContrastiveLoss({c.levels, c.parts, c.tau, false})(z_hat, z_tilde0);
  EXPECT_NEAR(out.loss.item<double>(), info_nce.item<double>(), 1e-12);
  EXPECT_TRUE(torch::isinf(out.log_pw).all().item<bool>());
  // ...and the hierarchy does change the loss when HCL is on.
  const auto with_hcl = HierarchicalContrastiveLoss({c.levels, c.parts, c.tau, true})(z_hat, z_tilde0);
  EXPECT_GT(std::abs(with_hcl.loss.item<double>() - info_nce.item<double>()), 1e-3);
}

// Central differences on a few entries of every input, in double.
void expect_gradients_match(const std::function<torch::Tensor()>& f,
                            const std::vector<torch::Tensor>& inputs, double tol) {
  for (auto& x : inputs) x.mutable_grad() = torch::Tensor();
  f().backward();
  const double h = 1e-6;
  for (size_t i = 0; i < inputs.size(); ++i) {
    auto flat = inputs[i].detach().view(-1);  // shares storage: perturbs the input in place
    const auto grad = inputs[i].grad().view(-1);
    for (int64_t k = 0; k < flat.numel(); k += std::max<int64_t>(1, flat.numel() / 7)) {
      const double x0 = flat[k].item<double>();
      flat[k] = x0 + h;
      const double up = f().item<double>();
      flat[k] = x0 - h;
      const double down = f().item<double>();
      flat[k] = x0;
      const double numeric = (up - down) / (2 * h), analytic = grad[k].item<double>();
      EXPECT_NEAR(analytic, numeric, tol * std::max(1.0, std::abs(numeric)))
          << "input " << i << " entry " << k;
    }
  }
}

TEST(HierarchicalContrastiveLoss, GradientsMatchFiniteDifferences) {
  for (double tau : {0.5, 0.05}) {
    torch::manual_seed(11);
    const Case c{3, 2, 4, tau};
    auto z_hat = random_hierarchy(c, 5, torch::kDouble);
    auto z_tilde0 = torch::randn({c.batch, 5}, torch::kDouble);
    std::vector<torch::Tensor> inputs = z_hat;
    inputs.push_back(z_tilde0);
    for (auto& x : inputs) x.set_requires_grad(true);
    const HierarchicalContrastiveLoss loss(opts(c.levels, c.parts, tau, true));
    expect_gradients_match([&] { return loss(z_hat, z_tilde0).loss; }, inputs, 1e-6);
  }
}

TEST(HierarchicalContrastiveLoss, RanksWithGlobalNegativesSumToTheConcatenatedBatch) {
  // Three "ranks" of batches 2, 3, 1: the sum of their losses and of their gradients equals one
  // rank with the batch of 6, when each sees the concatenated (gathered) level-0 embeddings. The
  // same for both anchors and for masked same-track pairs (tracks repeat across the "ranks").
  const auto track = torch::tensor({5, 2, 5, 9, 2, 5}, torch::kLong);
  for (const char* anchors : {"one", "both"})
    for (const char* same_track : {"negative", "masked"}) {
      SCOPED_TRACE(std::string(anchors) + " " + same_track);
      torch::manual_seed(13);
      const Case c{4, 2, 6, 0.2};
      auto z_hat = random_hierarchy(c, 8, torch::kDouble);
      auto z_tilde0 = torch::randn({c.batch, 8}, torch::kDouble);
      for (auto& z : z_hat) z.set_requires_grad(true);
      z_tilde0.set_requires_grad(true);
      auto o = opts(c.levels, c.parts, c.tau, true);
      o.anchors = anchors, o.same_track = same_track;
      const HierarchicalContrastiveLoss loss(o);

      const auto single = loss(z_hat, z_tilde0, track).loss;
      const auto single_grads = torch::autograd::grad({single}, {z_hat[0], z_hat[2], z_tilde0});

      torch::Tensor total = torch::zeros({}, torch::kDouble);
      const auto global_hat0 = z_hat[0].reshape({c.batch, 8});  // what an all-gather would return
      int64_t offset = 0;
      for (int64_t local : {2, 3, 1}) {
        std::vector<torch::Tensor> mine;
        for (auto& z : z_hat) mine.push_back(z.narrow(0, offset, local));
        total = total + loss(mine, z_tilde0.narrow(0, offset, local), z_tilde0, global_hat0, offset, track).loss;
        offset += local;
      }
      EXPECT_NEAR(total.item<double>(), single.item<double>(), 1e-12);
      const auto split_grads = torch::autograd::grad({total}, {z_hat[0], z_hat[2], z_tilde0});
      for (size_t i = 0; i < split_grads.size(); ++i)
        EXPECT_TRUE(torch::allclose(split_grads[i], single_grads[i], 1e-10, 1e-12)) << "input " << i;
    }
}

// The pairing switches (issue 26). With same_track = masked, an instance's loss in a batch that
// holds another crop of its track equals its loss in the same batch without that crop: the
// repeat is neither a positive nor a negative.
TEST(HierarchicalContrastiveLoss, MaskedSameTrackIsTheBatchWithoutTheRepeat) {
  torch::manual_seed(17);
  const Case c{3, 2, 5, 0.3};
  const auto z_hat = random_hierarchy(c, 6, torch::kDouble);
  const auto z_tilde0 = torch::randn({c.batch, 6}, torch::kDouble);
  const auto track = torch::tensor({7, 3, 7, 1, 4}, torch::kLong);  // instances 0 and 2: one track
  const std::vector<int64_t> without2 = {0, 1, 3, 4};
  const auto keep = torch::tensor(without2, torch::kLong);
  std::vector<torch::Tensor> z_hat_without;
  for (const auto& z : z_hat) z_hat_without.push_back(z.index_select(0, keep));
  for (const char* anchors : {"one", "both"})
    for (const char* pw_term : {"separate", "inside"}) {
      SCOPED_TRACE(std::string(anchors) + " " + pw_term);
      auto o = opts(c.levels, c.parts, c.tau, true, pw_term, 0.2);
      o.anchors = anchors;
      const auto plain = HierarchicalContrastiveLoss(o);
      o.same_track = "masked";
      const auto masked = HierarchicalContrastiveLoss(o)(z_hat, z_tilde0, track);
      const auto reference = plain(z_hat_without, z_tilde0.index_select(0, keep));
      // Instance 0 without 2's crops, and instance 2 without 0's, are the reference batch's.
      EXPECT_NEAR(masked.per_instance[0].item<double>(), reference.per_instance[0].item<double>(), 1e-12);
      std::vector<torch::Tensor> z_hat_without0;
      const auto keep0 = torch::tensor(std::vector<int64_t>{1, 2, 3, 4}, torch::kLong);
      for (const auto& z : z_hat) z_hat_without0.push_back(z.index_select(0, keep0));
      EXPECT_NEAR(masked.per_instance[2].item<double>(),
                  plain(z_hat_without0, z_tilde0.index_select(0, keep0)).per_instance[1].item<double>(), 1e-12);
      // The others see every instance as before.
      const auto full = plain(z_hat, z_tilde0);
      for (int b : {1, 3, 4}) EXPECT_NEAR(masked.per_instance[b].item<double>(), full.per_instance[b].item<double>(), 1e-12);
      // The diagnostics count the pairs that are left: 2 x (5 x 4 - 2) negatives.
      EXPECT_EQ(masked.stats[mart::loss::kNegatives].item<double>(), 36.0);
    }
  // Without the ids the masked loss cannot be computed, and says so.
  auto o = opts(c.levels, c.parts, c.tau, true, "separate", 0.2);
  o.same_track = "masked";
  const HierarchicalContrastiveLoss without_ids(o);
  EXPECT_THROW(without_ids(z_hat, z_tilde0), mart::Error);
}

// anchors = both without HCL is CLMR's NT-Xent: 2B anchors (every s^_b^0 and every s~_b^0), each
// with its other view as the positive and the 2B - 2 other embeddings as negatives, averaged.
TEST(HierarchicalContrastiveLoss, BothAnchorsWithoutHclIsNtXent) {
  torch::manual_seed(19);
  const Case c{3, 2, 4, 0.3};
  const auto z_hat = random_hierarchy(c, 8, torch::kDouble);
  const auto z_tilde0 = torch::randn({c.batch, 8}, torch::kDouble);
  const auto n = [](const torch::Tensor& x) {
    return torch::nn::functional::normalize(x, torch::nn::functional::NormalizeFuncOptions().dim(1));
  };
  const auto all = torch::cat({n(z_hat[0].reshape({c.batch, 8})), n(z_tilde0)}, 0);  // [2B, d]
  auto logits = torch::matmul(all, all.t()) / c.tau;
  logits = logits.masked_fill(torch::eye(2 * c.batch, torch::kBool), -INFINITY);
  const auto target = torch::cat({torch::arange(c.batch) + c.batch, torch::arange(c.batch)});
  const auto nt_xent = torch::nn::functional::cross_entropy(logits, target);
  auto o = opts(c.levels, c.parts, c.tau, false);
  o.anchors = "both";
  EXPECT_NEAR(HierarchicalContrastiveLoss(o)(z_hat, z_tilde0).loss.item<double>(), nt_xent.item<double>(), 1e-12);
  // With one anchor it is not (the two directions differ on random embeddings).
  o.anchors = "one";
  EXPECT_GT(std::abs(HierarchicalContrastiveLoss(o)(z_hat, z_tilde0).loss.item<double>() - nt_xent.item<double>()), 1e-4);
}

// anchors = both with the hierarchy: the mean of view B's eq. 5 and view A's (roles of s^0 and
// s~0 swapped, L_pw_b the same instance's), plus the separate part-whole term once; float64 loops.
TEST(HierarchicalContrastiveLoss, BothAnchorsMatchTheEquationsBothWays) {
  torch::manual_seed(23);
  const Case c{3, 2, 4, 0.4};
  const auto z_hat = random_hierarchy(c, 6, torch::kDouble);
  const auto z_tilde0 = torch::randn({c.batch, 6}, torch::kDouble);
  auto o = opts(c.levels, c.parts, c.tau, true, "inside");
  o.anchors = "both";
  const auto got = HierarchicalContrastiveLoss(o)(z_hat, z_tilde0);
  for (int64_t b = 0; b < c.batch; ++b) {
    const Vec hb = row(z_hat[0][b][0]), tb = row(z_tilde0[b]);
    double l_pw = 0;
    for (int i = 0; i + 1 < c.levels; ++i)
      for (int64_t j = 0; j < z_hat[i].size(1); ++j)
        for (int k = 0; k < c.parts; ++k)
          l_pw += std::exp(cosine(row(z_hat[i][b][j]), row(z_hat[i + 1][b][j * c.parts + k])) / c.tau) / c.parts;
    const double pos = std::exp(cosine(hb, tb) / c.tau);
    double neg_b = 0, neg_a = 0;
    for (int64_t u = 0; u < c.batch; ++u) {
      neg_b += std::exp(cosine(hb, row(z_tilde0[u])) / c.tau);
      neg_a += std::exp(cosine(tb, row(z_hat[0][u][0])) / c.tau);
      if (u == b) continue;
      neg_b += std::exp(cosine(hb, row(z_hat[0][u][0])) / c.tau);
      neg_a += std::exp(cosine(tb, row(z_tilde0[u])) / c.tau);
    }
    const double want = 0.5 * (-std::log((l_pw + pos) / (l_pw + neg_b)) - std::log((l_pw + pos) / (l_pw + neg_a)));
    EXPECT_LT(relative(got.per_instance[b].item<double>(), want), 1e-9) << "b=" << b;
  }
}

TEST(HierarchicalContrastiveLoss, RejectsBadOptionsAndShapes) {
  EXPECT_THROW(HierarchicalContrastiveLoss({4, 2, 0.0, true}), mart::ConfigError);
  const HierarchicalContrastiveLoss loss(opts(3, 2, 0.5, true));
  const auto z = random_hierarchy({2, 2, 3, 0.5}, 4, torch::kDouble);  // 2 levels, not 3
  EXPECT_THROW(loss(z, torch::randn({3, 4}, torch::kDouble)), mart::Error);
  auto o = opts(3, 2, 0.5, true);
  o.anchors = "all";
  EXPECT_THROW(HierarchicalContrastiveLoss{o}, mart::ConfigError);
  o = opts(3, 2, 0.5, true);
  o.same_track = "positive";
  EXPECT_THROW(HierarchicalContrastiveLoss{o}, mart::ConfigError);
}

}  // namespace
