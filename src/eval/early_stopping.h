#pragma once
// Early stopping, the one loop of the probes, whole-model fine-tuning and the covers models: train
// while fewer than max_epochs epochs ran and the validation score improved within the last
// `patience` epochs; keep a copy of the state (weights, and statistics where asked) at the best
// epoch and put it back at the end. Private to src/eval: torch is here because the state is tensors.
#include <torch/torch.h>

#include <limits>
#include <vector>

namespace mart::eval {

class EarlyStopping {
 public:
  enum class Better { lower, higher };  // a loss: lower; a MAP: higher

  // An epoch improves on the best when its score is better by more than `margin`.
  EarlyStopping(int max_epochs, int patience, Better better, double margin)
      : max_epochs_(max_epochs), patience_(patience), better_(better), margin_(margin),
        best_(better == Better::lower ? std::numeric_limits<double>::infinity()
                                      : -std::numeric_limits<double>::infinity()) {}

  // Whether to train another epoch.
  bool more() const { return epochs_ < max_epochs_ && since_best_ < patience_; }

  // Ends an epoch with its validation score; when it is the best so far, keeps a copy of `state`.
  // Returns whether it was. A NaN score never improves.
  bool record(double score, const std::vector<torch::Tensor>& state) {
    ++epochs_;
    const bool improved = better_ == Better::lower ? score < best_ - margin_ : score > best_ + margin_;
    if (!improved) {
      ++since_best_;
      return false;
    }
    best_ = score, since_best_ = 0, best_epoch_ = epochs_;
    best_state_.clear();
    for (const auto& t : state) best_state_.push_back(t.detach().clone());
    return true;
  }

  // Copies the best epoch's state back into `state`, the tensors record() was given.
  void restore(const std::vector<torch::Tensor>& state) const {
    torch::NoGradGuard no_grad;
    for (size_t i = 0; i < state.size(); ++i) state[i].copy_(best_state_.at(i));
  }

  bool improved_once() const { return best_epoch_ > 0; }  // false: no score was ever a number
  int epochs() const { return epochs_; }                  // epochs recorded
  int best_epoch() const { return best_epoch_; }          // 1-based; 0 before any improvement
  double best() const { return best_; }

 private:
  int max_epochs_, patience_;
  Better better_;
  double margin_, best_;
  int epochs_ = 0, since_best_ = 0, best_epoch_ = 0;
  std::vector<torch::Tensor> best_state_;
};

}  // namespace mart::eval
