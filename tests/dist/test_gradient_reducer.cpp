// GradientReducer on 2 ranks: after backward + finalize every rank holds the mean of the per-rank
// gradients (the reference is all-gathered from an independent backward), with small buckets so
// several are used, with and without hooks; every .grad is a view of its bucket (nothing copied);
// broadcast_parameters makes the ranks' models equal.
#include <gtest/gtest.h>

#include "mart/dist/communicator.h"
#include "mart/dist/gradient_reducer.h"

namespace {

using mart::dist::Communicator;
using mart::dist::GradientReducer;
using mart::dist::ReducerOptions;

torch::nn::Sequential make_mlp() {
  torch::nn::Sequential m(torch::nn::Linear(6, 16), torch::nn::Tanh(), torch::nn::Linear(16, 16),
                          torch::nn::Tanh(), torch::nn::Linear(16, 3));
  m->to(torch::kFloat64);
  return m;
}

torch::Tensor flat_grads(const std::vector<torch::Tensor>& params) {
  std::vector<torch::Tensor> parts;
  for (const auto& p : params) parts.push_back(p.grad().reshape({-1}));
  return torch::cat(parts);
}

torch::Tensor flat_state(torch::nn::Module& m) {
  std::vector<torch::Tensor> parts;
  for (const auto& p : m.parameters()) parts.push_back(p.detach().reshape({-1}).to(torch::kFloat64));
  for (const auto& b : m.buffers()) parts.push_back(b.reshape({-1}).to(torch::kFloat64));
  return torch::cat(parts);
}

struct Reducer : ::testing::Test {
  int argc = 0;
  char** argv = nullptr;
  mart::dist::World world{&argc, &argv};
  std::unique_ptr<Communicator> comm = mart::dist::make_communicator(world, torch::kCPU);
  int r = world.rank();

  // The same model on every rank (same seed), a different batch on each rank.
  torch::nn::Sequential model() {
    torch::manual_seed(0);
    return make_mlp();
  }
  torch::Tensor loss_on_own_batch(torch::nn::Sequential& m) {
    torch::manual_seed(100 + r);
    const torch::Tensor x = torch::randn({8, 6}, torch::kFloat64);
    return m->forward(x).pow(2).mean();
  }
  // Mean over ranks of the per-rank gradients, from a plain backward and an all_gather.
  torch::Tensor reference_mean_grad() {
    auto m = model();
    loss_on_own_batch(m).backward();
    const torch::Tensor mine = flat_grads(m->parameters());
    return comm->all_gather(mine.reshape({1, -1})).mean(0);
  }
  torch::Tensor reduced_grad(ReducerOptions options, size_t* buckets = nullptr) {
    auto m = model();
    GradientReducer reducer(m->parameters(), *comm, options);
    if (buckets) *buckets = reducer.num_buckets();
    loss_on_own_batch(m).backward();
    reducer.finalize();
    return flat_grads(m->parameters());
  }
};

TEST_F(Reducer, PerRankGradientsDifferSoTheTestsBelowMeanSomething) {
  auto m = model();
  loss_on_own_batch(m).backward();
  const torch::Tensor all = comm->all_gather(flat_grads(m->parameters()).reshape({1, -1}));
  EXPECT_GT((all[0] - all[1]).abs().max().item<double>(), 1e-3);
}

TEST_F(Reducer, HooksGiveTheMeanOverRanksWithSeveralBuckets) {
  size_t buckets = 0;
  const torch::Tensor got = reduced_grad({/*bucket_bytes=*/512, /*overlap=*/true}, &buckets);
  EXPECT_GE(buckets, 4u);
  EXPECT_TRUE(torch::allclose(got, reference_mean_grad(), 1e-12, 1e-14));
}

TEST_F(Reducer, HooksLaunchEveryBucketDuringBackward) {
  auto m = model();
  GradientReducer hooks(m->parameters(), *comm, {512, true});
  ASSERT_GE(hooks.num_buckets(), 4u);
  loss_on_own_batch(m).backward();
  EXPECT_EQ(hooks.buckets_launched(), hooks.num_buckets());  // before finalize(): overlapped
  hooks.finalize();
  EXPECT_EQ(hooks.buckets_launched(), 0u);  // ready for the next step
}

TEST_F(Reducer, NoOverlapLaunchesNothingBeforeFinalize) {
  auto m = model();
  GradientReducer plain(m->parameters(), *comm, {512, false});
  loss_on_own_batch(m).backward();
  EXPECT_EQ(plain.buckets_launched(), 0u);
  plain.finalize();
}

TEST_F(Reducer, NoOverlapGivesTheMeanOverRanksToo) {
  const torch::Tensor got = reduced_grad({512, false});
  EXPECT_TRUE(torch::allclose(got, reference_mean_grad(), 1e-12, 1e-14));
}

TEST_F(Reducer, HooksAndNoOverlapAndOneBigBucketAgree) {
  const torch::Tensor hooks = reduced_grad({512, true});
  EXPECT_TRUE(torch::equal(hooks, reduced_grad({512, false})));
  EXPECT_TRUE(torch::allclose(hooks, reduced_grad({ReducerOptions{}.bucket_bytes, true}), 1e-14, 0));
}

TEST_F(Reducer, SeveralStepsStayCorrect) {
  auto m = model();
  GradientReducer reducer(m->parameters(), *comm, {512, true});
  for (int step = 0; step < 3; ++step) {
    for (auto& p : m->parameters()) p.mutable_grad() = torch::Tensor();
    loss_on_own_batch(m).backward();
    reducer.finalize();
  }
  EXPECT_TRUE(torch::allclose(flat_grads(m->parameters()), reference_mean_grad(), 1e-12, 1e-14));
}

// The set-to-none path above copies each gradient in; zero_grad() keeps .grad the bucket's view,
// so backward accumulates into the bucket and nothing is copied.
TEST_F(Reducer, GradientsAreViewsOfTheBucketsAndNothingIsCopied) {
  auto m = model();
  const auto params = m->parameters();
  GradientReducer reducer(params, *comm, {512, true});
  std::vector<const void*> where;
  for (int step = 0; step < 3; ++step) {
    reducer.zero_grad();
    loss_on_own_batch(m).backward();
    reducer.finalize();
    for (size_t i = 0; i < params.size(); ++i) {
      const torch::Tensor& g = params[i].grad();
      ASSERT_TRUE(g.is_alias_of(reducer.bucket(reducer.bucket_of(i)))) << "parameter " << i;
      if (step == 0) where.push_back(g.data_ptr());
      EXPECT_EQ(g.data_ptr(), where[i]) << "parameter " << i << " moved at step " << step;
    }
  }
  EXPECT_EQ(reducer.grads_copied(), 0);
  EXPECT_TRUE(torch::allclose(flat_grads(params), reference_mean_grad(), 1e-12, 1e-14));
}

TEST_F(Reducer, SetToNoneGradientsAreCopiedInAndTheViewsComeBack) {
  auto m = model();
  const auto params = m->parameters();
  GradientReducer reducer(params, *comm, {512, true});
  for (auto& p : m->parameters()) p.mutable_grad() = torch::Tensor();
  loss_on_own_batch(m).backward();
  reducer.finalize();
  EXPECT_EQ(reducer.grads_copied(), static_cast<int64_t>(params.size()));
  for (size_t i = 0; i < params.size(); ++i) EXPECT_TRUE(params[i].grad().is_alias_of(reducer.bucket(reducer.bucket_of(i))));
  EXPECT_TRUE(torch::allclose(flat_grads(params), reference_mean_grad(), 1e-12, 1e-14));
}

TEST_F(Reducer, ZeroGradZeroesEveryGradientAndAnOptimizersZeroGradWorksToo) {
  auto m = model();
  const auto params = m->parameters();
  GradientReducer reducer(params, *comm, {512, true});
  loss_on_own_batch(m).backward();
  reducer.finalize();
  ASSERT_GT(flat_grads(params).abs().max().item<double>(), 0.0);
  reducer.zero_grad();
  EXPECT_EQ(flat_grads(params).abs().max().item<double>(), 0.0);
  loss_on_own_batch(m).backward();
  reducer.finalize();
  torch::optim::SGD sgd(params, torch::optim::SGDOptions(0.1));
  sgd.zero_grad();  // whatever it does to .grad, the next step is right
  loss_on_own_batch(m).backward();
  reducer.finalize();
  EXPECT_TRUE(torch::allclose(flat_grads(params), reference_mean_grad(), 1e-12, 1e-14));
}

// A channels-last convolution: its gradient view takes the weight's strides (the layout contract),
// and the mean is still the reference's.
TEST_F(Reducer, ChannelsLastWeightsGetGradientsWithTheirOwnStrides) {
  auto make = [] {
    torch::manual_seed(0);
    torch::nn::Sequential m(torch::nn::Conv2d(torch::nn::Conv2dOptions(3, 8, 3)), torch::nn::ReLU(),
                            torch::nn::Conv2d(torch::nn::Conv2dOptions(8, 4, 3)));
    m->to(torch::kFloat64);
    for (auto& p : m->parameters())
      if (p.dim() == 4) p.set_data(p.contiguous(torch::MemoryFormat::ChannelsLast));
    return m;
  };
  auto loss = [&](torch::nn::Sequential& m) {
    torch::manual_seed(100 + r);
    return m->forward(torch::randn({2, 3, 7, 7}, torch::kFloat64)).pow(2).mean();
  };
  auto plain = make();
  loss(plain).backward();
  const torch::Tensor expected = comm->all_gather(flat_grads(plain->parameters()).reshape({1, -1})).mean(0);
  auto m = make();
  const auto params = m->parameters();
  ASSERT_FALSE(params[0].is_contiguous());
  GradientReducer reducer(params, *comm, {512, true});
  reducer.zero_grad();
  loss(m).backward();
  reducer.finalize();
  for (const auto& p : params) EXPECT_EQ(p.grad().strides(), p.strides());
  EXPECT_EQ(reducer.grads_copied(), 0);
  EXPECT_TRUE(torch::allclose(flat_grads(params), expected, 1e-12, 1e-14));
}

TEST_F(Reducer, BucketsHoldParametersInReverseOrder) {
  auto m = model();
  const auto params = m->parameters();
  GradientReducer reducer(params, *comm, {512, false});
  EXPECT_EQ(reducer.bucket_params(0).front(), params.size() - 1);
  EXPECT_EQ(reducer.bucket_params(reducer.num_buckets() - 1).back(), 0u);
  // Bucket 4096 bytes: the 16x16 weight (2048 B) and its neighbours share one.
  GradientReducer big(params, *comm, {4096, false});
  EXPECT_LT(big.num_buckets(), reducer.num_buckets());
}

TEST_F(Reducer, AParameterWithoutGradientGetsZerosOnEveryRank) {
  auto m = model();
  torch::Tensor unused = torch::ones({3}, torch::kFloat64).requires_grad_(true);
  std::vector<torch::Tensor> params = m->parameters();
  params.push_back(unused);
  GradientReducer reducer(params, *comm, {512, true});
  loss_on_own_batch(m).backward();
  reducer.finalize();
  ASSERT_TRUE(unused.grad().defined());
  EXPECT_TRUE(torch::equal(unused.grad(), torch::zeros({3}, torch::kFloat64)));
}

TEST_F(Reducer, NoOverlapAccumulatesSeveralBackwardPasses) {
  auto m = model();
  GradientReducer reducer(m->parameters(), *comm, {512, false});
  loss_on_own_batch(m).backward();
  loss_on_own_batch(m).backward();  // the same batch twice: .grad doubles
  reducer.finalize();
  EXPECT_TRUE(torch::allclose(flat_grads(m->parameters()), 2 * reference_mean_grad(), 1e-12, 1e-14));
}

TEST_F(Reducer, HooksRefuseASecondBackwardBeforeFinalize) {
  auto m = model();
  GradientReducer reducer(m->parameters(), *comm, {512, true});
  loss_on_own_batch(m).backward();
  EXPECT_ANY_THROW(loss_on_own_batch(m).backward());
}

TEST_F(Reducer, BroadcastParametersCopiesRankZerosParametersAndBuffers) {
  torch::manual_seed(1000 + r);  // a different model on each rank
  auto m = make_mlp();
  torch::nn::BatchNorm1d bn(16);
  bn->to(torch::kFloat64);
  m->push_back(bn);
  bn->running_mean.fill_(r + 1.0);
  const torch::Tensor before = flat_state(*m);
  const torch::Tensor all_before = comm->all_gather(before.reshape({1, -1}));
  ASSERT_FALSE(torch::equal(all_before[0], all_before[1]));
  mart::dist::broadcast_parameters(*m, *comm);
  const torch::Tensor after = flat_state(*m);
  EXPECT_TRUE(torch::equal(after, all_before[0]));
  EXPECT_TRUE(torch::equal(bn->running_mean, torch::ones({16}, torch::kFloat64)));
}

TEST_F(Reducer, ReportsTimeSpentInFinalize) {
  auto m = model();
  GradientReducer reducer(m->parameters(), *comm, {512, true});
  loss_on_own_batch(m).backward();
  reducer.finalize();
  EXPECT_GT(reducer.last_timing().finalize_s, 0.0);
  EXPECT_GE(reducer.last_timing().finalize_s, reducer.last_timing().wait_s);
}

}  // namespace
