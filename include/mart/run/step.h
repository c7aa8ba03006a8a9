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
  // This rank's share of the global loss, float64 on the step's device, no gradient: summed over
  // ranks it is the global loss. A step that does not log keeps it there (no host sync).
  torch::Tensor local;
  double global = 0;       // the loss of the whole global batch (eq. 5 averaged over it); logging steps only
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
// `track` ([b] int64, this rank's items' tracks) is for a loss that masks same-track pairs; it is
// all-gathered with the embeddings. With `log_step` false nothing is read back to the host and no
// collective beyond the gathers runs: `global` and `diagnostics` stay empty, `local` holds the loss.
StepLoss forward_loss(model::MartModel& model, const loss::HierarchicalContrastiveLoss& loss_fn,
                      const torch::Tensor& view_a, const torch::Tensor& view_b, dist::Communicator* comm,
                      const torch::Tensor& track = {}, bool log_step = true);

// Every value a training step copies from its device to the host goes through here, so that a
// test can count them: a step that does not log must read nothing back (on a GPU each read waits
// for every kernel launched before it).
double read_back(const torch::Tensor& scalar);
torch::Tensor read_back_tensor(const torch::Tensor& t);  // .cpu() of a whole tensor, counted once
int64_t read_backs();  // how many reads so far (this process)

// The supervised positive control (train.objective = supervised): the projection head's outputs
// are class logits; the loss is the cross-entropy of `label` ([b] int64, this rank's items'
// classes) averaged over view B's s^0 and view A's s~^0 and over the global batch. The
// diagnostic "top1" is the training accuracy of view B. K ranks of b == one rank of K*b.
StepLoss forward_supervised(model::MartModel& model, const torch::Tensor& view_a, const torch::Tensor& view_b,
                            const torch::Tensor& label, dist::Communicator* comm, bool log_step = true);

// float32 for a bf16 or float16 tensor, the tensor itself otherwise (float32 and float64 alike).
torch::Tensor full_precision(const torch::Tensor& t);

// Sets BatchNorm layers to use running statistics ("frozen") while the rest trains.
void freeze_batch_norm(torch::nn::Module& module);

// Learning rate at `step` (0-based) of `total`: linear warm-up, then constant or cosine to 0.
double learning_rate(double base, int64_t step, int64_t total, int64_t warmup, bool cosine);

}  // namespace mart::run
