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
  for (size_t block = 0; block < blocks.size(); ++block) {
    const int64_t channels = blocks[block]->conv->options.out_channels();
    // [sum (C), sum of squares (C), values per channel, clips]
    auto acc = torch::zeros({2 * channels + 2}, torch::kFloat64);
    for (size_t batch = 0; batch < n_batches; ++batch) {
      auto activations = clips(batch);
      MART_CHECK(activations.dim() == 3 || (activations.dim() == 4 && activations.size(1) == 1),
                 "estimate_batch_norm: clips are [n, 1, n_mels, T] or [n, n_mels, T], got ", activations.sizes());
      if (activations.size(0) == 0) continue;
      if (activations.dim() == 3) activations = activations.unsqueeze(1);
      for (size_t j = 0; j < block; ++j) activations = blocks[j]->forward(activations);
      const auto conv_out = blocks[block]->conv(activations).to(torch::kFloat64);
      acc.slice(0, 0, channels) += conv_out.sum({0, 2, 3});
      acc.slice(0, channels, 2 * channels) += conv_out.square().sum({0, 2, 3});
      acc[2 * channels] += static_cast<double>(conv_out.numel() / channels);
      acc[2 * channels + 1] += static_cast<double>(conv_out.size(0));
    }
    if (comm != nullptr && comm->size() > 1) {
      comm->all_reduce(acc);
      comm->broadcast(acc, 0);  // MPI does not promise every rank the same bits of a sum
    }
    const double values = acc[2 * channels].item<double>();
    total = static_cast<int64_t>(acc[2 * channels + 1].item<double>());
    if (values == 0) return 0;
    const auto mean = acc.slice(0, 0, channels) / values;
    // Unbiased, as BatchNorm keeps its running variance; with a single value the variance is 0.
    const auto var = ((acc.slice(0, channels, 2 * channels) / values - mean.square()).clamp_min(0) *
                      (values > 1 ? values / (values - 1) : 1.0));
    blocks[block]->bn->running_mean.copy_(mean.to(torch::kFloat32));
    blocks[block]->bn->running_var.copy_(var.to(torch::kFloat32));
  }
  return total;
}

}  // namespace mart::eval
