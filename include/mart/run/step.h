#pragma once
// One training step's forward and loss, written so that K ranks of batch b and one rank of
// batch K*b compute the same loss and gradients (DESIGN.md section 2, step 2).
#include <torch/torch.h>

#include <string>
#include <utility>
#include <vector>

#include "mart/dist/communicator.h"
#include "mart/loss/hierarchical_contrastive_loss.h"
#include "mart/model/mart_model.h"

namespace mart::run {

struct StepLoss {
  torch::Tensor backward;  // what to call backward() on: scaled so the reducer's MEAN is the global gradient
  double global = 0;       // the loss of the whole global batch (eq. 5 averaged over it)
  double gather_s = 0;     // time in the all-gathers (forward)
  // Named diagnostics of this step (docs/model.md, "Diagnostics"), global over ranks: mean log
  // L_pw, mean positive and negative logits, top-1 contrastive accuracy, alignment and uniformity
  // of s^^0, effective rank of the batch's s^^0, per level ||s^ - s~|| / ||s~||.
  std::vector<std::pair<std::string, double>> diagnostics;
};

// Diagnostics of one rank's batch as sums, to be all-reduced with the loss: [stats..., align
// sum, uniformity, effective rank, relative increment per level]. Exposed for tests.
torch::Tensor local_diagnostics(const model::MartOutputs& o);
// alignment = mean ||u_b - v_b||^2 over positive pairs of unit vectors; uniformity =
// log mean_{b != c} exp(-2 ||u_b - u_c||^2) (Wang & Isola 2020); effective rank = exp(entropy of
// the normalised singular values) (Roy & Vetterli 2007). x, y: [B, d], not necessarily unit.
double alignment(const torch::Tensor& x, const torch::Tensor& y);
double uniformity(const torch::Tensor& x);
double effective_rank(const torch::Tensor& x);

// view_a: [b, 1, n_mels, T]; view_b: [b, clips_total, n_mels, T]. With `comm` null (or of one
// rank) the negatives are the local batch; otherwise s~^0 and s^^0 are all-gathered with gradient.
StepLoss forward_loss(model::MartModel& model, const loss::HierarchicalContrastiveLoss& loss_fn,
                      const torch::Tensor& view_a, const torch::Tensor& view_b, dist::Communicator* comm);

// float32 for a bf16 or float16 tensor, the tensor itself otherwise (float32 and float64 alike).
torch::Tensor full_precision(const torch::Tensor& t);

// Sets BatchNorm layers to use running statistics ("frozen") while the rest trains.
void freeze_batch_norm(torch::nn::Module& module);

// Learning rate at `step` (0-based) of `total`: linear warm-up, then constant or cosine to 0.
double learning_rate(double base, int64_t step, int64_t total, int64_t warmup, bool cosine);

}  // namespace mart::run
