#pragma once
// Averages gradients over ranks, in buckets, with three verbs: zero_grad() before backward,
// add() a parameter whose gradient is ready, and finalize() after backward. The trainer needs
// nothing else:
//
//   GradientReducer reducer(model->parameters(), comm);   // hooks on: overlap with backward
//   reducer.zero_grad();                                   // one fill per bucket
//   loss.backward();                                       // buckets launch as they fill
//   reducer.finalize();                                    // every .grad = mean over ranks
//   optimizer.step();
//
// Every parameter's .grad is a view into its bucket (DDP's gradient_as_bucket_view): backward
// accumulates into the bucket in place, a hook after the accumulation (AccumulateGrad's post hook,
// as DDP's reducer uses) marks the parameter ready, and finalize() scales the buckets in place, so
// no gradient is copied into a bucket or back out of it. The views take each parameter's strides
// (channels-last included), so the gradient layout contract holds. A .grad that is not the view
// (set to none, replaced by user code, or by a create_graph backward) is copied into the bucket and
// the view put back, so results never depend on who zeroed what.
//
// Buckets (about 25 MB) hold parameters in reverse order, the order backward produces their
// gradients (as DDP does), and launch in bucket order on every rank: a bucket whose gradients
// are all in waits for every bucket before it, so all ranks issue the same collectives in the
// same order. A parameter with no gradient this step contributes zeros; after finalize() every
// parameter has a defined .grad.
#include <torch/torch.h>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <vector>

#include "mart/dist/communicator.h"

namespace torch::autograd {
struct Node;
}

namespace mart::dist {

struct ReducerOptions {
  size_t bucket_bytes = size_t{25} << 20;
  // true: a hook on each parameter adds it the moment backward has accumulated its gradient,
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

  // Zeroes every bucket (one fill each) and makes every .grad its bucket view again. Call it
  // instead of the optimizer's zero_grad(), which would zero the parameters one at a time.
  void zero_grad();
  // Parameter `index`'s .grad is final for this step.
  void add(size_t index);
  // Adds what was not added, waits for every bucket, writes the mean over ranks into every .grad
  // and readies the reducer for the next step.
  void finalize();

  size_t num_buckets() const { return buckets_.size(); }
  // Buckets whose all-reduce has started this step (with hooks, during backward).
  size_t buckets_launched() const { return next_launch_; }
  // Parameter indices of bucket k, in the order they are packed.
  const std::vector<size_t>& bucket_params(size_t k) const { return buckets_[k].params; }
  // Bucket k's flat buffer: parameter i's gradient lives in bucket_of(i) from finalize() on.
  const torch::Tensor& bucket(size_t k) const { return buckets_[k].flat; }
  size_t bucket_of(size_t index) const { return bucket_of_[index]; }
  // Gradients copied into a bucket since construction because a .grad was not its view (zero
  // when backward accumulates in place, as it does between zero_grad() and finalize()).
  int64_t grads_copied() const { return grads_copied_; }
  const ReducerTiming& last_timing() const { return timing_; }

 private:
  struct Bucket {
    std::vector<size_t> params;
    std::vector<int64_t> offsets;  // element offset of each parameter in `flat`
    torch::Tensor flat;
    size_t pending = 0;
    std::unique_ptr<Work> work;
  };
  void add_locked(size_t index);
  void build_buckets(size_t bucket_bytes);
  void make_views();
  void register_hooks();
  void attach_view(size_t index);
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
  std::vector<torch::Tensor> views_;  // parameter i's gradient in its bucket, with its strides
  std::vector<bool> added_;
  // Post hooks on each parameter's AccumulateGrad node; the nodes are held so they (and the hooks)
  // live as long as the reducer, as DDP holds them.
  std::vector<std::shared_ptr<torch::autograd::Node>> accumulators_;
  std::vector<uintptr_t> hooks_;
  int64_t grads_copied_ = 0;
  size_t next_launch_ = 0;
  bool finalizing_ = false;  // buckets launched now are waited at once: launch them blocking
  ReducerTiming timing_;
  std::mutex mutex_;  // hooks may run on an autograd device thread
};

// Copies rank `root`'s parameters and buffers into every rank's module (call once at start, so
// every rank begins from the same model).
void broadcast_parameters(torch::nn::Module& module, Communicator& comm, int root = 0);

}  // namespace mart::dist
