#pragma once
// The projection encoder E of MART (DESIGN.md section 1): "FCN-7", the 7-layer short-chunk CNN.
#include <torch/torch.h>

#include "mart/model/options.h"

namespace mart::model {

// Conv 3x3 (pad 1) - BatchNorm - ReLU - MaxPool 2x2.
struct FcnBlockImpl : torch::nn::Module {
  FcnBlockImpl(int64_t in_channels, int64_t out_channels);
  torch::Tensor forward(const torch::Tensor& x);  // [B, C_in, H, W] -> [B, C_out, H', W']

  torch::nn::Conv2d conv{nullptr};
  torch::nn::BatchNorm2d bn{nullptr};
};
TORCH_MODULE(FcnBlock);

// Pooling is 2x2 with stride 2 and floor rounding (an odd last row or column is dropped, as in
// the short-chunk CNN); a side that has already shrunk to 1 is not pooled any further, so inputs
// smaller than 2^7 on a side (the test models) go through all seven blocks. At the paper's
// 128 x 128 the seventh pool leaves exactly 1 x 1.
torch::Tensor fcn_max_pool(const torch::Tensor& x);

struct FcnEncoderImpl : torch::nn::Module {
  explicit FcnEncoderImpl(const ModelOptions& options);
  // Clips [B, 1, n_mels, T] or [B, n_mels, T] -> embeddings s~ [B, dim]: the blocks, then a global
  // max pool over what is left of frequency and time.
  torch::Tensor forward(const torch::Tensor& clips);

  torch::nn::ModuleList blocks;
};
TORCH_MODULE(FcnEncoder);

}  // namespace mart::model
