#include "mart/model/cqtnet.h"

#include <algorithm>
#include <cmath>

#include "mart/core/error.h"

namespace mart::model {

namespace {
// Kernel (frequency, time), dilation along time, frequency padding of the ten convolutions, and
// whether a 1 x 2 time pool follows (models/CQTNet.py).
struct ConvSpec {
  int64_t kf, kt, dil_t, pad_f;
  bool pool_after;
};
constexpr ConvSpec kSpecs[10] = {{12, 3, 1, 6, false}, {13, 3, 2, 0, true},  {13, 3, 1, 0, false},
                                 {3, 3, 2, 0, true},   {3, 3, 1, 0, false},  {3, 3, 2, 0, true},
                                 {3, 3, 1, 0, false},  {3, 3, 2, 0, true},   {3, 3, 1, 0, false},
                                 {3, 3, 2, 0, false}};
}  // namespace

CqtNetOptions cqtnet_options(double width) {
  MART_CHECK(width > 0 && std::isfinite(width), "CQTNet width must be positive, got ", width);
  CqtNetOptions o;
  for (auto& c : o.channels) c = std::max<int64_t>(1, static_cast<int64_t>(std::lround(static_cast<double>(c) * width)));
  return o;
}

CqtNetImpl::CqtNetImpl(const CqtNetOptions& o) : options(o) {
  MART_CHECK(o.channels.size() == 10, "CQTNet has 10 convolutions, got ", o.channels.size(), " channel counts");
  MART_CHECK(o.bins >= 38 && o.min_frames >= 172, "CQTNet needs at least 38 bins and min_frames >= 172 (what its "
             "convolutions consume), got ", o.bins, " and ", o.min_frames);
  convs = register_module("convs", torch::nn::ModuleList());
  norms = register_module("norms", torch::nn::ModuleList());
  int64_t in = 1;
  for (int64_t c : o.channels) MART_CHECK(c > 0, "CQTNet channels must be positive");
  for (size_t i = 0; i < 10; ++i) {
    const auto& s = kSpecs[i];
    convs->push_back(torch::nn::Conv2d(torch::nn::Conv2dOptions(in, o.channels[i], {s.kf, s.kt})
                                           .dilation({1, s.dil_t}).padding({s.pad_f, 0}).bias(false)));
    norms->push_back(torch::nn::BatchNorm2d(o.channels[i]));
    in = o.channels[i];
  }
}

torch::Tensor CqtNetImpl::forward(const torch::Tensor& cqt) {
  MART_CHECK((cqt.dim() == 3 && cqt.size(1) == options.bins) || (cqt.dim() == 4 && cqt.size(1) == 1 && cqt.size(2) == options.bins),
             "CQTNet expects [B, ", options.bins, ", T] or [B, 1, ", options.bins, ", T], got ", cqt.sizes());
  auto x = cqt.dim() == 3 ? cqt.unsqueeze(1) : cqt;
  if (x.size(3) < options.min_frames) x = torch::constant_pad_nd(x, {0, options.min_frames - x.size(3)});
  for (size_t i = 0; i < 10; ++i) {
    x = torch::relu(norms[i]->as<torch::nn::BatchNorm2dImpl>()->forward(convs[i]->as<torch::nn::Conv2dImpl>()->forward(x)));
    if (kSpecs[i].pool_after) x = torch::max_pool2d(x, {1, 2}, {1, 2}, {0, 1});
  }
  return x.amax({2, 3});  // AdaptiveMaxPool2d((1, 1))
}

torch::Tensor cqtnet_normalize(const torch::Tensor& cqt) {
  MART_CHECK(cqt.dim() == 2 || cqt.dim() == 3, "cqtnet_normalize expects [bins, T] or [B, bins, T], got ", cqt.sizes());
  if (cqt.dim() == 2) return cqt / (cqt.abs().max() + 1e-6);
  return cqt / (cqt.abs().amax({1, 2}, true) + 1e-6);
}

}  // namespace mart::model
