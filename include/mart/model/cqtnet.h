#pragma once
// CQTNet (Yu et al., "Learning a representation for cover song identification using convolutional
// neural network", ICASSP 2020): the supervised cover-song model of the paper's table 3, as its
// authors' code defines it (github.com/yzspku/CQTNet, models/CQTNet.py). Input: a track's
// constant-Q magnitude (84 bins, 20-frame means; mart-preprocess --features.cqt), divided by its
// largest value. Ten convolutions (no bias) with BatchNorm and ReLU, dilated 2 along time in every
// second one, max-pools of 1 x 2 along time after convolutions 1, 3, 5 and 7, a global (adaptive)
// max pool; then (the caller's, eval/covers_finetune: it may fuse other features first) a linear
// layer to the 300-d embedding and the classification layer over training works its authors
// trained it with.
#include <torch/torch.h>

#include <cstdint>
#include <vector>

namespace mart::model {

struct CqtNetOptions {
  // The ten convolutions' output channels: the authors' are 32, 64, 64, 64, 128, 128, 256, 256,
  // 512, 512 (4.93 M parameters; 5.08 M with their 512 -> 300 embedding layer).
  std::vector<int64_t> channels{32, 64, 64, 64, 128, 128, 256, 256, 512, 512};
  int64_t bins = 84;        // constant-Q bins (frequency rows)
  int64_t min_frames = 200; // shorter inputs are zero-padded at the end to this (as cut_data does)
};

// The authors' channels scaled by `width` (at least 1 channel each): width 0.25 gives 8 ... 128.
CqtNetOptions cqtnet_options(double width);

struct CqtNetImpl : torch::nn::Module {
  explicit CqtNetImpl(const CqtNetOptions& options);
  // [B, bins, T] or [B, 1, bins, T] -> the pooled features [B, channels.back()] (the input of the
  // embedding layer). T < min_frames is zero-padded at the end.
  torch::Tensor forward(const torch::Tensor& cqt);

  CqtNetOptions options;
  torch::nn::ModuleList convs, norms;
};
TORCH_MODULE(CqtNet);

// CQTNet's input scaling: every track divided by its largest magnitude (+ 1e-6), [bins, T] or
// [B, bins, T] (per item).
torch::Tensor cqtnet_normalize(const torch::Tensor& cqt);

}  // namespace mart::model
