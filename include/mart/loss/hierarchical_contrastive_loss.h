#pragma once
// The hierarchical contrastive loss of MART, eqs. (3)-(6) (DESIGN.md section 1), computed in log
// space: exp(sim / tau) overflows float32 for small tau, logsumexp never does.
#include <torch/torch.h>

#include <vector>

#include "mart/loss/options.h"

namespace mart::loss {

struct LossOutput {
  // sum over the local instances b of L_hc_b, divided by the GLOBAL batch size B. On one rank this
  // is the mean of eq. (5) over the batch; across K ranks the SUM of the K losses (and of their
  // gradients, e.g. an all-reduce SUM, or the mean times K) is the loss of the concatenated batch.
  torch::Tensor loss;
  torch::Tensor per_instance;  // L_hc_b for the local b, [B_local]
  torch::Tensor log_pw;        // log L_pw_b (eq. 3), [B_local]; -inf without HCL
  // Diagnostics (no gradient): float64 [kLossStats] sums over the local instances, so that an
  // all-reduce SUM over ranks gives the global batch's; divide by the counts they come with.
  torch::Tensor stats;
};

// Indices into LossOutput::stats.
enum LossStat : int64_t {
  kPositiveLogit = 0,  // sum of sim(s^_b^0, s~_b^0) / tau
  kNegativeLogit,      // sum of every negative logit of eq. (6) (u != b against s~^0, and against s^^0)
  kNegatives,          // how many negative logits that sum holds (same-track pairs excluded when masked)
  kTop1,               // instances whose positive outscores every negative (top-1 contrastive accuracy)
  kLogPw,              // sum of log L_pw_b (0 without HCL)
  kInstances,          // local instances
  kLossStats
};

class HierarchicalContrastiveLoss {
 public:
  explicit HierarchicalContrastiveLoss(LossOptions options);

  // One rank: z_hat = head(s^) per level, N tensors [B, M^n, d] (view B); z_tilde0 =
  // head(s~^0) [B, d] (view A). The negatives are this batch. `track` ([B], integer ids) says
  // which instances are crops of the same track; only same_track = masked needs it.
  LossOutput operator()(const std::vector<torch::Tensor>& z_hat, const torch::Tensor& z_tilde0,
                        const torch::Tensor& track = {}) const;

  // Global negatives: z_hat and z_tilde0 are this rank's B_local instances; global_tilde0 and
  // global_hat0 ([B, d] each) are every rank's z_tilde0 and z_hat level 0, concatenated in rank
  // order (an all-gather whose backward returns each rank its gradient); this rank's instances are
  // rows offset .. offset + B_local - 1 of them. In eq. (6) u runs over the global batch, and the
  // excluded u == b is row offset + b. global_track ([B]) holds the track ids in the same order
  // (same_track = masked only).
  LossOutput operator()(const std::vector<torch::Tensor>& z_hat, const torch::Tensor& z_tilde0,
                        const torch::Tensor& global_tilde0, const torch::Tensor& global_hat0,
                        int64_t offset, const torch::Tensor& global_track = {}) const;

  // log L_pw_b of eq. (3) with eq. (4)'s lambda_i = 1 / M, [B]: z_hat normalised per level.
  torch::Tensor log_part_whole(const std::vector<torch::Tensor>& unit_z_hat) const;

  const LossOptions& options() const { return options_; }

 private:
  LossOptions options_;
};

}  // namespace mart::loss
