#include "mart/eval/batch_norm_stats.h"

#include "mart/core/error.h"

namespace mart::eval {

int64_t estimate_batch_norm(model::FcnEncoderImpl& encoder, size_t n_batches,
                            const std::function<torch::Tensor(size_t)>& clips, dist::Communicator* comm) {
  torch::NoGradGuard no_grad;
  encoder.eval();
  std::vector<model::FcnBlockImpl*> blocks;
  for (const auto& b : *encoder.blocks) blocks.push_back(b->as<model::FcnBlockImpl>());
  int64_t total = 0;
  for (size_t i = 0; i < blocks.size(); ++i) {
    const int64_t channels = blocks[i]->conv->options.out_channels();
    // [sum (C), sum of squares (C), values per channel, clips]
    auto acc = torch::zeros({2 * channels + 2}, torch::kFloat64);
    for (size_t b = 0; b < n_batches; ++b) {
      auto x = clips(b);
      MART_CHECK(x.dim() == 3 || (x.dim() == 4 && x.size(1) == 1),
                 "estimate_batch_norm: clips are [n, 1, n_mels, T] or [n, n_mels, T], got ", x.sizes());
      if (x.size(0) == 0) continue;
      if (x.dim() == 3) x = x.unsqueeze(1);
      for (size_t j = 0; j < i; ++j) x = blocks[j]->forward(x);
      const auto y = blocks[i]->conv(x).to(torch::kFloat64);
      acc.slice(0, 0, channels) += y.sum({0, 2, 3});
      acc.slice(0, channels, 2 * channels) += y.square().sum({0, 2, 3});
      acc[2 * channels] += static_cast<double>(y.numel() / channels);
      acc[2 * channels + 1] += static_cast<double>(y.size(0));
    }
    if (comm != nullptr && comm->size() > 1) {
      comm->all_reduce(acc);
      comm->broadcast(acc, 0);  // MPI does not promise every rank the same bits of a sum
    }
    const double n = acc[2 * channels].item<double>();
    total = static_cast<int64_t>(acc[2 * channels + 1].item<double>());
    if (n == 0) return 0;
    const auto mean = acc.slice(0, 0, channels) / n;
    // Unbiased, as BatchNorm keeps its running variance; with a single value the variance is 0.
    const auto var = ((acc.slice(0, channels, 2 * channels) / n - mean.square()).clamp_min(0) *
                      (n > 1 ? n / (n - 1) : 1.0));
    blocks[i]->bn->running_mean.copy_(mean.to(torch::kFloat32));
    blocks[i]->bn->running_var.copy_(var.to(torch::kFloat32));
  }
  return total;
}

}  // namespace mart::eval
