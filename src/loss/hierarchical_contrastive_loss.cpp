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
                                                   const torch::Tensor& z_tilde0) const {
  return (*this)(z_hat, z_tilde0, z_tilde0, z_hat.at(0), 0);
}

LossOutput HierarchicalContrastiveLoss::operator()(const std::vector<torch::Tensor>& z_hat,
                                                   const torch::Tensor& z_tilde0,
                                                   const torch::Tensor& global_tilde0,
                                                   const torch::Tensor& global_hat0,
                                                   int64_t offset) const {
  MART_CHECK(static_cast<int>(z_hat.size()) == options_.levels, "the loss expects ",
             options_.levels, " levels, got ", z_hat.size());
  const int64_t b_local = z_hat[0].size(0), b_global = global_tilde0.size(0);
  MART_CHECK(global_hat0.size(0) == b_global && offset >= 0 && offset + b_local <= b_global,
             "local batch ", b_local, " at offset ", offset, " does not fit global batches ",
             global_tilde0.sizes(), " and ", global_hat0.sizes());
  std::vector<torch::Tensor> z;
  for (const auto& level : z_hat) z.push_back(unit(level));
  const auto anchor = as_rows(z[0]);  // s^_b^0, [B_local, d]
  const double tau = options_.tau;

  // eq. (5) numerator's exp(sim(s^_b^0, s~_b^0) / tau), as a log.
  const auto log_positive = (anchor * unit(as_rows(z_tilde0))).sum(-1) / tau;
  // eq. (6): u over the global batch against s~^0; against s^^0 without u == b.
  const auto to_tilde = torch::matmul(anchor, unit(as_rows(global_tilde0)).t()) / tau;
  auto to_hat = torch::matmul(anchor, unit(as_rows(global_hat0)).t()) / tau;
  const auto long_on = torch::TensorOptions(torch::kLong).device(anchor.device());
  const auto self = torch::arange(b_global, long_on).unsqueeze(0) ==
                    (torch::arange(b_local, long_on) + offset).unsqueeze(1);  // u == b
  to_hat = to_hat.masked_fill(self, -std::numeric_limits<double>::infinity());

  LossOutput out;
  torch::Tensor log_numerator, log_denominator;
  const bool inside = options_.use_hcl && options_.pw_term == "inside";
  if (options_.use_hcl) out.log_pw = log_part_whole(z);  // eq. (3)
  else out.log_pw = torch::full({b_local}, -std::numeric_limits<double>::infinity(), anchor.options());
  if (inside) {
    log_numerator = torch::logaddexp(out.log_pw, log_positive);
    log_denominator = torch::logsumexp(torch::cat({out.log_pw.unsqueeze(1), to_tilde, to_hat}, 1), 1);
  } else {  // L_pw = 0 in eq. (5): InfoNCE
    log_numerator = log_positive;
    log_denominator = torch::logsumexp(torch::cat({to_tilde, to_hat}, 1), 1);
  }
  out.per_instance = log_denominator - log_numerator;  // eq. (5): -log(numerator / denominator)
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

  {  // diagnostics
    torch::NoGradGuard no_grad;
    const auto f64 = [](const torch::Tensor& t) { return t.detach().to(torch::kFloat64).sum(); };
    const auto not_self_tilde = self.logical_not();
    const auto neg_sum = f64(to_tilde.masked_select(not_self_tilde)) + f64(to_hat.masked_select(not_self_tilde));
    const double negatives = 2.0 * static_cast<double>(b_local) * static_cast<double>(b_global - 1);
    // The positive is column offset + b of to_tilde; it must beat every other entry of both rows.
    const auto others = torch::cat({to_tilde.masked_fill(self, -std::numeric_limits<double>::infinity()), to_hat}, 1);
    const auto top1 = (log_positive.detach() > std::get<0>(others.detach().max(1))).to(torch::kFloat64).sum();
    const auto log_pw_sum = options_.use_hcl && z.size() > 1 ? f64(out.log_pw) : torch::zeros({}, torch::kFloat64);
    out.stats = torch::stack({f64(log_positive), neg_sum.to(torch::kFloat64),
                              torch::full({}, negatives, torch::kFloat64).to(anchor.device()),
                              top1, log_pw_sum.to(anchor.device()),
                              torch::full({}, static_cast<double>(b_local), torch::kFloat64).to(anchor.device())});
  }
  return out;
}

}  // namespace mart::loss
