#include "mart/loss/hierarchical_contrastive_loss.h"

#include <cmath>
#include <limits>

#include "mart/core/error.h"

namespace mart::loss {
namespace {

// Unit vectors, so that a dot product is the cosine similarity sim(., .).
torch::Tensor unit(const torch::Tensor& x) {
  return torch::nn::functional::normalize(x, torch::nn::functional::NormalizeFuncOptions().dim(-1));
}

torch::Tensor as_rows(const torch::Tensor& level0) {  // [B, 1, d] or [B, d] -> [B, d]
  return level0.reshape({level0.size(0), -1});
}

}  // namespace

HierarchicalContrastiveLoss::HierarchicalContrastiveLoss(LossOptions options)
    : options_(options) {
  options_.validate();
}

torch::Tensor HierarchicalContrastiveLoss::log_part_whole(
    const std::vector<torch::Tensor>& z) const {
  const int m = options_.parts;
  const int64_t b = z[0].size(0);
  const double log_lambda = std::log(1.0 / m);  // eq. (4): len(part) / len(whole) = 1 / M
  std::vector<torch::Tensor> terms;             // log of every summand of eq. (3)
  for (size_t i = 0; i + 1 < z.size(); ++i) {
    const auto wholes = z[i].unsqueeze(2);                                  // [B, K, 1, d]
    const auto parts = z[i + 1].reshape({b, z[i].size(1), m, z[i + 1].size(2)});  // [B, K, M, d]
    const auto sim = (wholes * parts).sum(-1);                              // [B, K, M]
    terms.push_back((sim / options_.tau + log_lambda).reshape({b, -1}));
  }
  if (terms.empty())  // one level: no part-whole pairs, L_pw = 0
    return torch::full({b}, -std::numeric_limits<double>::infinity(), z[0].options());
  return torch::logsumexp(torch::cat(terms, 1), 1);
}

LossOutput HierarchicalContrastiveLoss::operator()(const std::vector<torch::Tensor>& z_hat,
                                                   const torch::Tensor& z_tilde0, const torch::Tensor& track) const {
  return (*this)(z_hat, z_tilde0, z_tilde0, z_hat.at(0), 0, track);
}

LossOutput HierarchicalContrastiveLoss::operator()(const std::vector<torch::Tensor>& z_hat,
                                                   const torch::Tensor& z_tilde0,
                                                   const torch::Tensor& global_tilde0,
                                                   const torch::Tensor& global_hat0,
                                                   int64_t offset, const torch::Tensor& global_track) const {
  MART_CHECK(static_cast<int>(z_hat.size()) == options_.levels, "the loss expects ",
             options_.levels, " levels, got ", z_hat.size());
  const int64_t b_local = z_hat[0].size(0), b_global = global_tilde0.size(0);
  MART_CHECK(global_hat0.size(0) == b_global && offset >= 0 && offset + b_local <= b_global,
             "local batch ", b_local, " at offset ", offset, " does not fit global batches ",
             global_tilde0.sizes(), " and ", global_hat0.sizes());
  const bool masked = options_.same_track == "masked";
  MART_CHECK(!masked || (global_track.defined() && global_track.numel() == b_global),
             "same_track = masked needs the track id of every instance of the global batch (", b_global, "), got ",
             global_track.defined() ? global_track.numel() : 0);
  std::vector<torch::Tensor> z;
  for (const auto& level : z_hat) z.push_back(unit(level));
  const auto anchor = as_rows(z[0]);  // s^_b^0, [B_local, d]
  const auto tilde0 = unit(as_rows(z_tilde0));  // s~_b^0, [B_local, d]
  const auto all_tilde0 = unit(as_rows(global_tilde0)), all_hat0 = unit(as_rows(global_hat0));  // [B, d]
  const double tau = options_.tau;
  const double inf = std::numeric_limits<double>::infinity();

  // eq. (5) numerator's exp(sim(s^_b^0, s~_b^0) / tau), as a log.
  const auto log_positive = (anchor * tilde0).sum(-1) / tau;
  // eq. (6): u over the global batch against s~^0; against s^^0 without u == b.
  auto to_tilde = torch::matmul(anchor, all_tilde0.t()) / tau;
  auto to_hat = torch::matmul(anchor, all_hat0.t()) / tau;
  const auto long_on = torch::TensorOptions(torch::kLong).device(anchor.device());
  const auto self = torch::arange(b_global, long_on).unsqueeze(0) ==
                    (torch::arange(b_local, long_on) + offset).unsqueeze(1);  // u == b
  // The pairs that are no negatives: u == b against the same view, and with same_track = masked
  // every other crop of b's track against both views.
  auto excluded = self;
  torch::Tensor same_track;  // [B_local, B]: u != b of b's track
  if (masked) {
    const auto t = global_track.reshape({-1}).to(long_on);
    same_track = (t.narrow(0, offset, b_local).unsqueeze(1) == t.unsqueeze(0)).logical_and(self.logical_not());
    to_tilde = to_tilde.masked_fill(same_track, -inf);
    excluded = excluded.logical_or(same_track);
  }
  to_hat = to_hat.masked_fill(excluded, -inf);

  LossOutput out;
  const bool inside = options_.use_hcl && options_.pw_term == "inside";
  if (options_.use_hcl) out.log_pw = log_part_whole(z);  // eq. (3)
  else out.log_pw = torch::full({b_local}, -inf, anchor.options());
  // -log(numerator / denominator) of eq. (5) for one anchor, given its logits against the other
  // view (the positive among them) and against its own view (u == b excluded).
  auto eq5 = [&](const torch::Tensor& other_view, const torch::Tensor& own_view) {
    if (inside)
      return torch::logsumexp(torch::cat({out.log_pw.unsqueeze(1), other_view, own_view}, 1), 1) -
             torch::logaddexp(out.log_pw, log_positive);
    return torch::logsumexp(torch::cat({other_view, own_view}, 1), 1) - log_positive;  // L_pw = 0: InfoNCE
  };
  out.per_instance = eq5(to_tilde, to_hat);
  if (options_.anchors == "both") {  // s~_b^0 anchors too: against every s^_u, and s~_u for u != b
    auto a_to_hat = torch::matmul(tilde0, all_hat0.t()) / tau;
    auto a_to_tilde = torch::matmul(tilde0, all_tilde0.t()) / tau;
    if (masked) a_to_hat = a_to_hat.masked_fill(same_track, -inf);
    a_to_tilde = a_to_tilde.masked_fill(excluded, -inf);
    out.per_instance = 0.5 * (out.per_instance + eq5(a_to_hat, a_to_tilde));
  }
  if (options_.use_hcl && !inside && options_.pw_weight > 0 && z.size() > 1) {
    // The part-whole term beside eq. (5): how far log L_pw_b is below its largest value, reached
    // when every part equals its whole (each exp is then exp(1/tau), eq. 4's lambdas sum to the
    // number of wholes).
    double wholes = 0;
    for (size_t i = 0; i + 1 < z.size(); ++i) wholes += static_cast<double>(z[i].size(1));
    const double log_pw_max = std::log(wholes) + 1.0 / tau;
    out.per_instance = out.per_instance + options_.pw_weight * (log_pw_max - out.log_pw);
  }
  out.loss = out.per_instance.sum() / static_cast<double>(b_global);
#ifdef MART_MUTANT_FLIP_LOSS_SIGN  // the mutation check's broken build only (tests/portability.sh --mutant)
  out.loss = -out.loss;
#endif

  {  // diagnostics, for view B's anchor
    torch::NoGradGuard no_grad;
    const auto f64 = [](const torch::Tensor& t) { return t.detach().to(torch::kFloat64).sum(); };
    const auto negative = excluded.logical_not();  // the same pairs count against s~^0 and s^^0
    const auto neg_sum = f64(to_tilde.masked_select(negative)) + f64(to_hat.masked_select(negative));
    const auto negatives = 2.0 * negative.to(torch::kFloat64).sum();
    // The positive is column offset + b of to_tilde; it must beat every other entry of both rows.
    const auto others = torch::cat({to_tilde.masked_fill(self, -inf), to_hat}, 1);
    const auto top1 = (log_positive.detach() > std::get<0>(others.detach().max(1))).to(torch::kFloat64).sum();
    const auto log_pw_sum = options_.use_hcl && z.size() > 1 ? f64(out.log_pw) : torch::zeros({}, torch::kFloat64);
    out.stats = torch::stack({f64(log_positive), neg_sum.to(torch::kFloat64), negatives, top1,
                              log_pw_sum.to(anchor.device()),
                              torch::full({}, static_cast<double>(b_local), torch::kFloat64).to(anchor.device())});
  }
  return out;
}

}  // namespace mart::loss
