#pragma once
// Adam with the multi-tensor (_foreach_) kernels: the same update as torch::optim::Adam, step for
// step and state for state, in a few kernel launches per step instead of about ten per parameter
// (the paper model has ~130 parameter tensors, the reducer's buckets hold them all; on a GPU the
// per-tensor loop cost ~10 ms per step whatever the batch, docs/dist.md). It is a
// torch::optim::Adam: param groups, the learning-rate schedule and checkpoints (optimizer.pt) are
// unchanged, so a run resumes from either.
#include <torch/torch.h>

namespace mart::run {

class ForeachAdam : public torch::optim::Adam {
 public:
  using torch::optim::Adam::Adam;
  torch::Tensor step(LossClosure closure = nullptr) override;
};

}  // namespace mart::run
