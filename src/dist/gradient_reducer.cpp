#include "mart/dist/gradient_reducer.h"

#include <c10/util/strides.h>
#include <torch/csrc/autograd/utils/lambda_post_hook.h>
#include <torch/csrc/autograd/variable.h>

#include <chrono>

#include "mart/core/clock.h"
#include "mart/core/error.h"

namespace mart::dist {

GradientReducer::GradientReducer(std::vector<torch::Tensor> params, Communicator& comm,
                                 ReducerOptions options)
    : params_(std::move(params)), comm_(comm), options_(options) {
  MART_CHECK(options_.bucket_bytes > 0, "GradientReducer: bucket_bytes must be positive");
  for (const auto& p : params_)
    MART_CHECK(p.defined() && p.requires_grad(),
               "GradientReducer: every parameter must be defined and require a gradient");
  added_.assign(params_.size(), false);
  build_buckets(options_.bucket_bytes);
  make_views();
  if (options_.overlap) register_hooks();
}

GradientReducer::~GradientReducer() {
  for (size_t i = 0; i < hooks_.size(); ++i) accumulators_[i]->del_post_hook(hooks_[i]);
  // The parameters' .grad views keep the buckets' memory alive after the reducer is gone.
  // Unwaited work finishes in Work's destructor.
}

// Reverse parameter order, cut when a bucket would pass bucket_bytes or the dtype/device
// changes (one flat buffer per bucket is summed as one tensor).
void GradientReducer::build_buckets(size_t bucket_bytes) {
  bucket_of_.assign(params_.size(), 0);
  index_in_bucket_.assign(params_.size(), 0);
  size_t bytes = 0;
  for (size_t n = params_.size(); n-- > 0;) {
    const torch::Tensor& p = params_[n];
    const size_t p_bytes = p.numel() * p.element_size();
    const bool fits = !buckets_.empty() && bytes + p_bytes <= bucket_bytes &&
                      buckets_.back().flat.options().dtype() == p.dtype() &&
                      buckets_.back().flat.device() == p.device();
    if (!fits) {
      buckets_.emplace_back();
      buckets_.back().flat = torch::empty({0}, p.options().requires_grad(false));
      bytes = 0;
    }
    Bucket& b = buckets_.back();
    bucket_of_[n] = buckets_.size() - 1;
    index_in_bucket_[n] = b.params.size();
    b.offsets.push_back(b.params.empty() ? 0 : b.offsets.back() + params_[b.params.back()].numel());
    b.params.push_back(n);
    bytes += p_bytes;
  }
  for (Bucket& b : buckets_) {
    const int64_t total = b.offsets.back() + params_[b.params.back()].numel();
    b.flat = torch::zeros({total}, b.flat.options());
    b.pending = b.params.size();
  }
}

// Each parameter's slice of its bucket, with the parameter's own strides where its layout is dense
// (channels-last included), so the gradient layout contract holds; .grad becomes that slice,
// keeping what .grad held (attach_view).
void GradientReducer::make_views() {
  torch::NoGradGuard no_grad;
  views_.reserve(params_.size());
  for (size_t i = 0; i < params_.size(); ++i) {
    const torch::Tensor& p = params_[i];
    const Bucket& b = buckets_[bucket_of_[i]];
    const int64_t offset = b.offsets[index_in_bucket_[i]];
    // An alias of the bucket's storage made with set_(), not an autograd view (as_strided): an
    // optimizer's zero_grad() calls detach_() on every .grad, which autograd refuses on a view.
    c10::DimVector strides(p.strides().begin(), p.strides().end());
    if (!p.is_non_overlapping_and_dense()) strides = c10::contiguous_strides(p.sizes());
    views_.push_back(torch::empty({0}, b.flat.options()).set_(b.flat.storage(), offset, p.sizes(), strides));
    attach_view(i);
  }
}

// The hook runs after AccumulateGrad has added this step's gradient to .grad, that is, into the
// bucket: nothing is left to copy.
void GradientReducer::register_hooks() {
  accumulators_.reserve(params_.size());
  hooks_.reserve(params_.size());
  for (size_t i = 0; i < params_.size(); ++i) {
    accumulators_.push_back(torch::autograd::impl::grad_accumulator(params_[i]));
    MART_CHECK(accumulators_.back(), "GradientReducer: parameter ", i, " is not a leaf that accumulates a gradient");
    hooks_.push_back(accumulators_.back()->add_post_hook(std::make_unique<torch::autograd::utils::LambdaPostHook>(
        [this, i](const torch::autograd::variable_list& outputs, const torch::autograd::variable_list&) {
          add(i);
          return outputs;
        })));
  }
}

void GradientReducer::zero_grad() {
  std::lock_guard<std::mutex> lock(mutex_);
  torch::NoGradGuard no_grad;
  for (Bucket& b : buckets_) b.flat.zero_();
  for (size_t i = 0; i < params_.size(); ++i)
    if (!params_[i].grad().is_same(views_[i])) params_[i].mutable_grad() = views_[i];
}

// .grad is the bucket view unless something replaced it since: then its value goes into the
// bucket (zeros if it is none: no gradient this step contributes zeros, so every rank sums the
// same buckets) and the view comes back.
void GradientReducer::attach_view(size_t index) {
  torch::Tensor& g = params_[index].mutable_grad();
  if (g.is_same(views_[index])) return;
  torch::NoGradGuard no_grad;
  if (g.defined()) {
    MART_CHECK(!g.is_sparse(), "GradientReducer: sparse gradients are not supported");
    views_[index].copy_(g);
    ++grads_copied_;
  } else {
    views_[index].zero_();
  }
  g = views_[index];
}

void GradientReducer::add(size_t index) {
  std::lock_guard<std::mutex> lock(mutex_);
  add_locked(index);
}

void GradientReducer::add_locked(size_t index) {
  MART_CHECK(index < params_.size(), "GradientReducer::add: no parameter ", index);
  MART_CHECK(!added_[index], "GradientReducer::add: parameter ", index,
             " was added twice in one step; call finalize() after every backward, or use "
             "overlap=false to accumulate several backward passes before one finalize()");
  attach_view(index);
  added_[index] = true;
  --buckets_[bucket_of_[index]].pending;
  launch_ready_buckets();
  poke_in_flight();
}

// Buckets launch strictly in order: the same collectives in the same order on every rank.
// During backward they start nonblocking; inside finalize() nothing is left to overlap with, and
// the blocking all-reduce is the faster one (MPI's nonblocking collectives use simpler algorithms).
void GradientReducer::launch_ready_buckets() {
  while (next_launch_ < buckets_.size() && buckets_[next_launch_].pending == 0) {
    Bucket& b = buckets_[next_launch_++];
    if (finalizing_)
      comm_.all_reduce(b.flat);
    else
      b.work = comm_.all_reduce_async(b.flat);
  }
}

void GradientReducer::poke_in_flight() {
  for (size_t k = 0; k < next_launch_; ++k)
    if (buckets_[k].work) buckets_[k].work->poke();
}

void GradientReducer::finalize() {
  std::lock_guard<std::mutex> lock(mutex_);
  const auto t0 = std::chrono::steady_clock::now();
  finalizing_ = true;
  for (size_t n = params_.size(); n-- > 0;)
    if (!added_[n]) add_locked(n);
  finalizing_ = false;
  const auto t_wait = std::chrono::steady_clock::now();
  wait_all();
  timing_.wait_s = seconds_since(t_wait);
  write_back();
  reset();
  timing_.finalize_s = seconds_since(t0);
}

void GradientReducer::wait_all() {
  for (Bucket& b : buckets_) {
    if (!b.work) continue;  // launched blocking, in finalize()
    b.work->wait();
    b.work.reset();
  }
}

// Sum over ranks -> mean, in place: every .grad is a view of its bucket.
void GradientReducer::write_back() {
  torch::NoGradGuard no_grad;
  if (comm_.size() == 1) return;
  const double inv = 1.0 / comm_.size();
  for (Bucket& b : buckets_) b.flat.mul_(inv);
}

void GradientReducer::reset() {
  added_.assign(params_.size(), false);
  for (Bucket& b : buckets_) b.pending = b.params.size();
  next_launch_ = 0;
}

void broadcast_parameters(torch::nn::Module& module, Communicator& comm, int root) {
  torch::NoGradGuard no_grad;
  auto send = [&](const torch::Tensor& t) {
    torch::Tensor buf = t.is_contiguous() ? t.detach() : t.contiguous();
    comm.broadcast(buf, root);
    if (!t.is_contiguous()) t.detach().copy_(buf);
  };
  for (const auto& p : module.parameters()) send(p);
  for (const auto& b : module.buffers()) send(b);
}

}  // namespace mart::dist
