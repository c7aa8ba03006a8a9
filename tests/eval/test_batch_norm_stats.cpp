// Precise BatchNorm statistics for from-scratch fine-tuning: every block's running mean and
// variance equal a float64 reference computed on all clips at once, whatever the batches, and two
// ranks holding half the clips each get the statistics of one process holding all of them.
#include "mart/eval/batch_norm_stats.h"

#include <gtest/gtest.h>
#include <mpi.h>

#include "mart/dist/mpi_communicator.h"
#include "mart/model/options.h"

namespace {

using namespace mart;

model::FcnEncoder random_encoder() {
  model::ModelOptions o;
  o.fcn_channels = {4, 6, 8};
  torch::manual_seed(3);
  return model::FcnEncoder(o);
}

// 37 clips of 16 x 12 with an offset and a scale, as log-mels have (far from mean 0, variance 1).
torch::Tensor some_clips() {
  torch::manual_seed(11);
  return torch::randn({37, 1, 16, 12}) * 2.5 - 7.0;
}

// Reference: all clips in one float64 pass, block by block, with torch's own mean / variance.
std::vector<std::pair<torch::Tensor, torch::Tensor>> reference(const torch::Tensor& clips) {
  auto enc = random_encoder();
  enc->to(torch::kFloat64);
  enc->eval();
  torch::NoGradGuard no_grad;
  std::vector<std::pair<torch::Tensor, torch::Tensor>> out;
  auto x = clips.to(torch::kFloat64);
  for (const auto& m : *enc->blocks) {
    auto* b = m->as<model::FcnBlockImpl>();
    const auto y = b->conv(x);
    const auto mean = y.mean({0, 2, 3}), var = y.var({0, 2, 3}, /*unbiased=*/true);
    b->bn->running_mean.copy_(mean);
    b->bn->running_var.copy_(var);
    out.emplace_back(mean.to(torch::kFloat32), var.to(torch::kFloat32));
    x = b->forward(x);
  }
  return out;
}

void expect_stats(model::FcnEncoderImpl& enc, const std::vector<std::pair<torch::Tensor, torch::Tensor>>& want) {
  ASSERT_EQ(enc.blocks->size(), want.size());
  for (size_t i = 0; i < want.size(); ++i) {
    auto* b = enc.blocks[i]->as<model::FcnBlockImpl>();
    SCOPED_TRACE("block " + std::to_string(i));
    EXPECT_TRUE(torch::allclose(b->bn->running_mean, want[i].first, 1e-4, 1e-5))
        << b->bn->running_mean << want[i].first;
    EXPECT_TRUE(torch::allclose(b->bn->running_var, want[i].second, 1e-4, 1e-5))
        << b->bn->running_var << want[i].second;
  }
}

TEST(BatchNormStats, EqualTheStatisticsOfAllClipsWhateverTheBatches) {
  const auto clips = some_clips();
  const auto want = reference(clips);
  // The initial statistics (0 / 1) are far from the data's: the estimate has something to do.
  auto enc = random_encoder();
  auto* first = enc->blocks[0]->as<model::FcnBlockImpl>();
  ASSERT_TRUE(torch::equal(first->bn->running_mean, torch::zeros_like(first->bn->running_mean)));
  ASSERT_GT((want[0].first.abs().max()).item<float>(), 0.5f);
  // Uneven batches of 10, 10, 10, 7 and an empty one; [n, n_mels, T] is accepted as well.
  const std::vector<int64_t> edges = {0, 10, 20, 20, 30, 37};
  const int64_t n = eval::estimate_batch_norm(*enc, edges.size() - 1, [&](size_t b) {
    return clips.slice(0, edges[b], edges[b + 1]).squeeze(1);
  }, nullptr);
  EXPECT_EQ(n, 37);
  expect_stats(*enc, want);
  EXPECT_FALSE(enc->is_training());
  // With the statistics in place the first block's normalised conv output has mean 0 and
  // variance 1 per channel over the clips (the BatchNorm affine is still the identity).
  torch::NoGradGuard no_grad;
  const auto z = first->bn(first->conv(clips));
  EXPECT_LT(z.mean({0, 2, 3}).abs().max().item<float>(), 1e-4f);
  EXPECT_LT((z.var({0, 2, 3}) - 1).abs().max().item<float>(), 1e-3f);
  // One batch of everything: the same statistics.
  auto one = random_encoder();
  eval::estimate_batch_norm(*one, 1, [&](size_t) { return clips; }, nullptr);
  expect_stats(*one, want);
  // No clips: nothing changes.
  auto none = random_encoder();
  EXPECT_EQ(eval::estimate_batch_norm(*none, 2, [&](size_t) { return clips.slice(0, 0, 0); }, nullptr), 0);
  auto* b0 = none->blocks[0]->as<model::FcnBlockImpl>();
  EXPECT_TRUE(torch::equal(b0->bn->running_var, torch::ones_like(b0->bn->running_var)));
}

TEST(BatchNormStats, TwoRanksWithHalfTheClipsEachMatchOneProcess) {
  int rank = 0, size = 1;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &size);
  ASSERT_EQ(size, 2);
  const auto clips = some_clips();
  dist::MpiCommunicator comm(MPI_COMM_WORLD);
  auto enc = random_encoder();
  // Rank 0 holds clips 0..24 in two batches, rank 1 clips 25..36 in one.
  const auto mine = rank == 0 ? clips.slice(0, 0, 25) : clips.slice(0, 25, 37);
  const size_t batches = rank == 0 ? 2 : 1;
  const int64_t n = eval::estimate_batch_norm(*enc, batches, [&](size_t b) {
    return rank == 0 ? mine.slice(0, b == 0 ? 0 : 13, b == 0 ? 13 : 25) : mine;
  }, &comm);
  EXPECT_EQ(n, 37);
  expect_stats(*enc, reference(clips));
  // Every rank holds the same bits.
  for (const auto& m : *enc->blocks) {
    auto v = m->as<model::FcnBlockImpl>()->bn->running_var.clone();
    auto sum = v.clone();
    comm.all_reduce(sum);
    EXPECT_TRUE(torch::equal(sum, v * 2));
  }
}

}  // namespace
