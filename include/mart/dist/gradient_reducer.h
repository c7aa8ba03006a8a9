#pragma once
// Averages gradients over ranks, in buckets, with two verbs: add() a parameter whose gradient is
// ready, and finalize() after backward. The trainer needs nothing else:
//
//   GradientReducer reducer(model->parameters(), comm);   // hooks on: overlap with backward
//   loss.backward();                                       // buckets launch as they fill
//   reducer.finalize();                                    // every .grad = mean over ranks
//   optimizer.step();
//
// Buckets (about 25 MB) hold parameters in reverse order, the order backward produces their
// gradients (as DDP does), and launch in bucket order on every rank: a bucket whose gradients
// are all in waits for every bucket before it, so all ranks issue the same collectives in the
// same order. A parameter with no gradient this step contributes zeros; after finalize() every
// parameter has a defined .grad.
#include <torch/torch.h>

#include <cstddef>
#include <memory>
#include <mutex>
#include <vector>

#include "mart/dist/communicator.h"

namespace mart::dist {

struct ReducerOptions {
  size_t bucket_bytes = size_t{25} << 20;
  // true: a gradient hook on each parameter adds it the moment backward produces its gradient,
  // so communication overlaps the rest of backward. false: finalize() adds every parameter after
  // backward (needed to accumulate gradients over several backward passes before one finalize).
  bool overlap = true;

  // overlap off: what the evaluation's fine-tuning jobs use (their batches are small).
  static ReducerOptions after_backward() {
    ReducerOptions options;
    options.overlap = false;
    return options;
  }
};

// Time the last finalize() cost the step, in seconds.
struct ReducerTiming {
  double finalize_s = 0;  // all of finalize(): remaining launches, waits, copies back
  double wait_s = 0;      // of which waiting for buckets launched during backward
};

class GradientReducer {
 public:
  // `params`: the parameters to average (those with requires_grad); `comm` must outlive this.
  GradientReducer(std::vector<torch::Tensor> params, Communicator& comm, ReducerOptions options = {});
  ~GradientReducer();
  GradientReducer(const GradientReducer&) = delete;
  GradientReducer& operator=(const GradientReducer&) = delete;

  // Parameter `index`'s .grad is final for this step.
  void add(size_t index);
  // Parameter `index` is about to receive `grad` (what a gradient hook sees): the bucket gets
  // .grad + grad, which is what .grad becomes.
  void add(size_t index, const torch::Tensor& grad);
  // Adds what was not added, waits for every bucket, writes the mean over ranks into every .grad
  // and readies the reducer for the next step.
  void finalize();

  size_t num_buckets() const { return buckets_.size(); }
  // Buckets whose all-reduce has started this step (with hooks, during backward).
  size_t buckets_launched() const { return next_launch_; }
  // Parameter indices of bucket k, in the order they are packed.
  const std::vector<size_t>& bucket_params(size_t k) const { return buckets_[k].params; }
  const ReducerTiming& last_timing() const { return timing_; }

 private:
  struct Bucket {
    std::vector<size_t> params;
    std::vector<int64_t> offsets;  // element offset of each parameter in `flat`
    torch::Tensor flat;
    size_t pending = 0;
    std::unique_ptr<Work> work;
  };
  void add_locked(size_t index, const torch::Tensor* grad);
  void build_buckets(size_t bucket_bytes);
  void register_hooks();
  torch::Tensor slot(size_t index);
  void launch_ready_buckets();
  void poke_in_flight();
  void wait_all();
  void write_back();
  void reset();

  std::vector<torch::Tensor> params_;
  Communicator& comm_;
  ReducerOptions options_;
  std::vector<Bucket> buckets_;
  std::vector<size_t> bucket_of_, index_in_bucket_;
  std::vector<bool> added_;
  std::vector<unsigned> hooks_;
  size_t next_launch_ = 0;
  bool finalizing_ = false;  // buckets launched now are waited at once: launch them blocking
  ReducerTiming timing_;
  std::mutex mutex_;  // hooks may run on an autograd device thread
};

// Copies rank `root`'s parameters and buffers into every rank's module (call once at start, so
// every rank begins from the same model).
void broadcast_parameters(torch::nn::Module& module, Communicator& comm, int root = 0);

}  // namespace mart::dist
