#include "mart/model/fcn_encoder.h"

#include "mart/core/error.h"

namespace mart::model {

FcnBlockImpl::FcnBlockImpl(int64_t in_channels, int64_t out_channels) {
  conv = register_module(
      "conv", torch::nn::Conv2d(torch::nn::Conv2dOptions(in_channels, out_channels, 3).padding(1)));
  bn = register_module("bn", torch::nn::BatchNorm2d(out_channels));
}

// conv -> BN -> ReLU -> 2x2 max-pool, computed as conv -> BN -> max-pool -> ReLU: ReLU is
// monotone, so relu(max(a, b, c, d)) = max(relu(a), ..., relu(d)) exactly, and the backward
// sends each gradient to the same element (a window whose max is <= 0 gets none either way). The
// ReLU and its backward then touch a quarter of the elements, in place (max-pool's backward needs
// its indices, not its output): the encoder's training step is 15% faster at the paper's shape
// (docs/model.md), with the same bytes out (tests/model: FcnBlock.PoolThenReluIsTheSameBlock).
torch::Tensor FcnBlockImpl::forward(const torch::Tensor& x) {
  torch::Tensor y = fcn_max_pool(bn(conv(x)));
  return torch::relu_(y);
}

torch::Tensor fcn_max_pool(const torch::Tensor& x) {
  const int64_t kh = x.size(2) >= 2 ? 2 : 1, kw = x.size(3) >= 2 ? 2 : 1;
  if (kh == 1 && kw == 1) return x;
  return torch::max_pool2d(x, {kh, kw}, {kh, kw});
}

FcnEncoderImpl::FcnEncoderImpl(const ModelOptions& options) {
  blocks = register_module("blocks", torch::nn::ModuleList());
  int64_t in = 1;
  for (int64_t out : options.fcn_channels) {
    blocks->push_back(FcnBlock(in, out));
    in = out;
  }
}

torch::Tensor FcnEncoderImpl::forward(const torch::Tensor& clips) {
  MART_CHECK(clips.dim() == 3 || (clips.dim() == 4 && clips.size(1) == 1),
             "FcnEncoder expects clips [B, 1, n_mels, T] or [B, n_mels, T], got ", clips.sizes());
  auto x = clips.dim() == 3 ? clips.unsqueeze(1) : clips;
  for (const auto& block : *blocks) x = block->as<FcnBlockImpl>()->forward(x);
  return x.amax({2, 3});  // global max pool over frequency and time
}

}  // namespace mart::model
