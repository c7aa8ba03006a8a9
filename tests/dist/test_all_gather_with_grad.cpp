// AllGatherWithGrad on 2 ranks of batch b against 1 rank of batch 2b: same loss, same averaged
// gradient, for the two ways a trainer can write its loss. A gather whose backward keeps only
// the local slice (no sum over ranks) fails the same check.
#include <gtest/gtest.h>

#include <functional>

#include "mart/dist/all_gather_with_grad.h"
#include "mart/dist/communicator.h"

namespace {

using mart::dist::Communicator;
using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

// The deliberately wrong backward: each rank keeps the gradient of its own rows from its own loss
// only, dropping what the other ranks' losses say about them.
struct LocalSliceOnly : torch::autograd::Function<LocalSliceOnly> {
  static torch::Tensor forward(AutogradContext* ctx, const torch::Tensor& x, Communicator* comm) {
    ctx->saved_data["rank"] = static_cast<int64_t>(comm->rank());
    return comm->all_gather(x);
  }
  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const int64_t b = grads[0].size(0) / 2, r = ctx->saved_data["rank"].toInt();
    return {grads[0].narrow(0, r * b, b).clone(), torch::Tensor()};
  }
};

enum class LossKind {
  kGlobal,        // every rank computes the loss over the whole gathered batch
  kLocalAnchors,  // every rank: mean over its own rows (anchors) against all gathered rows
};

constexpr int64_t kB = 3, kDin = 5, kD = 4;
constexpr double kTau = 0.5;

// Similarities between anchors and every gathered embedding, then a contrastive-style reduction.
torch::Tensor loss_of(const torch::Tensor& anchors, const torch::Tensor& all, LossKind kind) {
  const torch::Tensor sim = torch::matmul(anchors, all.t()) / kTau;
  if (kind == LossKind::kGlobal) return torch::exp(sim).mean();
  return torch::logsumexp(sim, 1).mean();
}

torch::Tensor embed(const torch::Tensor& x, const torch::Tensor& w) {
  return torch::nn::functional::normalize(torch::matmul(x, w),
                                          torch::nn::functional::NormalizeFuncOptions().dim(1));
}

struct Data {
  torch::Tensor x, w0;  // the global batch [2b, d_in] and the initial weight, same on every rank
  Data() {
    torch::manual_seed(42);
    x = torch::randn({2 * kB, kDin}, torch::kFloat64);
    w0 = torch::randn({kDin, kD}, torch::kFloat64);
  }
};

struct Result {
  double loss;
  torch::Tensor grad_w;
};

// One rank, batch 2b: the reference.
Result single_rank(const Data& d, LossKind kind) {
  torch::Tensor w = d.w0.clone().requires_grad_(true);
  const torch::Tensor e = embed(d.x, w);
  torch::Tensor loss = loss_of(e, e, kind);
  loss.backward();
  return {loss.item<double>(), w.grad()};
}

using Gather = std::function<torch::Tensor(const torch::Tensor&, Communicator&)>;

// Two ranks, batch b each: loss and gradient averaged over ranks, as the gradient reducer does.
Result two_ranks(const Data& d, LossKind kind, Communicator& comm, const Gather& gather) {
  torch::Tensor w = d.w0.clone().requires_grad_(true);
  const torch::Tensor e_local = embed(d.x.narrow(0, comm.rank() * kB, kB), w);
  const torch::Tensor all = gather(e_local, comm);
  // kGlobal: every rank's anchors are all rows; kLocalAnchors: its own rows.
  torch::Tensor loss = loss_of(kind == LossKind::kGlobal ? all : e_local, all, kind);
  loss.backward();
  torch::Tensor l = loss.detach().reshape({1}).clone(), g = w.grad().clone();
  comm.all_reduce(l);
  comm.all_reduce(g);
  const double k = comm.size();
  // kGlobal: every rank holds the same loss; kLocalAnchors: the global mean is the mean of means.
  return {l.item<double>() / k, g / k};
}

struct GatherGrad : ::testing::TestWithParam<LossKind> {
  int argc = 0;
  char** argv = nullptr;
  mart::dist::World world{&argc, &argv};
  std::unique_ptr<Communicator> comm = mart::dist::make_communicator(world, torch::kCPU);
  Data data;
};

TEST_P(GatherGrad, ForwardGathersEveryRanksRowsInOrder) {
  const torch::Tensor local = data.x.narrow(0, comm->rank() * kB, kB);
  EXPECT_TRUE(torch::equal(mart::dist::all_gather_with_grad(local, *comm), data.x));
}

TEST_P(GatherGrad, TwoRanksMatchOneRankWithTheConcatenatedBatch) {
  const Result ref = single_rank(data, GetParam());
  const Result got = two_ranks(data, GetParam(), *comm, mart::dist::all_gather_with_grad);
  EXPECT_NEAR(got.loss, ref.loss, 1e-12 * std::abs(ref.loss));
  EXPECT_TRUE(torch::allclose(got.grad_w, ref.grad_w, 1e-10, 1e-12))
      << "max diff " << (got.grad_w - ref.grad_w).abs().max().item<double>();
}

TEST_P(GatherGrad, BackwardSendsEachRankTheSumForItsOwnRows) {
  // d(sum over ranks of each rank's loss)/d(own rows), computed with autograd on the full batch.
  torch::Tensor xr = data.x.narrow(0, comm->rank() * kB, kB).clone().requires_grad_(true);
  const torch::Tensor all = mart::dist::all_gather_with_grad(xr, *comm);
  loss_of(GetParam() == LossKind::kGlobal ? all : xr, all, GetParam()).backward();
  torch::Tensor xfull = data.x.clone().requires_grad_(true);
  torch::Tensor total = torch::zeros({}, torch::kFloat64);
  for (int k = 0; k < comm->size(); ++k)
    total = total + loss_of(GetParam() == LossKind::kGlobal ? xfull : xfull.narrow(0, k * kB, kB),
                            xfull, GetParam());
  total.backward();
  EXPECT_TRUE(torch::allclose(xr.grad(), xfull.grad().narrow(0, comm->rank() * kB, kB), 1e-10, 1e-12));
}

TEST_P(GatherGrad, LocalSliceOnlyBackwardFailsTheSameCheck) {
  const Result ref = single_rank(data, GetParam());
  const Gather wrong = [](const torch::Tensor& x, Communicator& c) { return LocalSliceOnly::apply(x, &c); };
  const Result got = two_ranks(data, GetParam(), *comm, wrong);
  EXPECT_NEAR(got.loss, ref.loss, 1e-12 * std::abs(ref.loss));  // the forward is the same
  const double diff = (got.grad_w - ref.grad_w).abs().max().item<double>();
  EXPECT_GT(diff, 1e-3 * ref.grad_w.abs().max().item<double>())
      << "the wrong backward matched the reference: the equivalence check cannot tell them apart";
}

INSTANTIATE_TEST_SUITE_P(Losses, GatherGrad,
                         ::testing::Values(LossKind::kGlobal, LossKind::kLocalAnchors),
                         [](const auto& info) {
                           return info.param == LossKind::kGlobal ? "GlobalLoss" : "LocalAnchors";
                         });

}  // namespace
