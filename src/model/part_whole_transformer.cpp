#include "mart/model/part_whole_transformer.h"

#include <cmath>

#include "mart/core/error.h"

namespace mart::model {

// ---- CrossAttentionLayer: the "Transformer" of eqs. (1)-(2) ----

CrossAttentionLayerImpl::CrossAttentionLayerImpl(int64_t dim, int heads_, int64_t head_dim_,
                                                 int64_t ff_dim, bool single_key_)
    : heads(heads_), head_dim(head_dim_), single_key(single_key_) {
  const int64_t inner = heads * head_dim;
  if (!single_key) {
    query = register_module("query", torch::nn::Linear(dim, inner));
    key = register_module("key", torch::nn::Linear(dim, inner));
  }
  value = register_module("value", torch::nn::Linear(dim, inner));
  out = register_module("out", torch::nn::Linear(inner, dim));
  norm1 = register_module("norm1", torch::nn::LayerNorm(torch::nn::LayerNormOptions({dim})));
  ff1 = register_module("ff1", torch::nn::Linear(dim, ff_dim));
  ff2 = register_module("ff2", torch::nn::Linear(ff_dim, dim));
  norm2 = register_module("norm2", torch::nn::LayerNorm(torch::nn::LayerNormOptions({dim})));
}

torch::Tensor CrossAttentionLayerImpl::attend(const torch::Tensor& q_in, const torch::Tensor& c_in,
                                              bool force_softmax) {
  const int64_t groups = q_in.size(0), lq = q_in.size(1), lk = c_in.size(1);
  MART_CHECK(!single_key || (lk == 1 && !force_softmax), "a single-key layer got ", lk, " keys");
  if (lk == 1 && !force_softmax)  // softmax over one key is 1: every query gets that key's value
    return out(value(c_in)).expand({groups, lq, out->options.out_features()});
  auto split_heads = [&](const torch::Tensor& t, int64_t len) {  // [G, L, H*d] -> [G, H, L, d]
    return t.view({groups, len, heads, head_dim}).transpose(1, 2);
  };
  const auto q = split_heads(query(q_in), lq);
  const auto k = split_heads(key(c_in), lk);
  const auto v = split_heads(value(c_in), lk);
  const auto weights = torch::softmax(torch::matmul(q, k.transpose(-2, -1)) / std::sqrt(double(head_dim)), -1);
  const auto heads_out = torch::matmul(weights, v).transpose(1, 2).reshape({groups, lq, heads * head_dim});
  return out(heads_out);
}

torch::Tensor CrossAttentionLayerImpl::forward(const torch::Tensor& q, const torch::Tensor& context) {
  const auto y = norm1(q + attend(q, context));      // post-norm: residual, then LayerNorm
  return norm2(y + ff2(torch::relu(ff1(y))));
}

// ---- PartWholeUnit: eqs. (1)-(2) for one level pair ----

PartWholeUnitImpl::PartWholeUnitImpl(const ModelOptions& o, int whole_level)
    : parts_per_whole(o.parts), lambda_whole(o.lambda(whole_level)),
      lambda_part(o.lambda(whole_level + 1)), single_residual(o.pwt_residual == "single") {
  bottom_up = register_module("bottom_up",
                              CrossAttentionLayer(o.dim, o.heads, o.head_dim, o.ff_dim));
  top_down = register_module("top_down",
                             CrossAttentionLayer(o.dim, o.heads, o.head_dim, o.ff_dim, /*single_key=*/true));
}

namespace {
// [B, K, D] wholes and [B, K*M, D] parts -> one group per whole: [B*K, 1, D] and [B*K, M, D].
std::pair<torch::Tensor, torch::Tensor> group_by_whole(const torch::Tensor& wholes,
                                                       const torch::Tensor& parts, int m) {
  const int64_t b = wholes.size(0), k = wholes.size(1), d = wholes.size(2);
  MART_CHECK(parts.size(0) == b && parts.size(1) == k * m && parts.size(2) == d,
             "parts ", parts.sizes(), " do not match wholes ", wholes.sizes(), " with M = ", m);
  return {wholes.reshape({b * k, 1, d}), parts.reshape({b * k, m, d})};
}
}  // namespace

torch::Tensor PartWholeUnitImpl::bottom_up_update(const torch::Tensor& wholes,
                                                  const torch::Tensor& parts) {
  const auto [w, p] = group_by_whole(wholes, parts, parts_per_whole);
  auto t = bottom_up(w, p).reshape_as(wholes);  // eq. (1): Q = w~, K = V = P~
  if (single_residual) t = t - wholes;         // the Transformer's own residual is eq. 1's "+ w~"
  return lambda_whole * t;
}

torch::Tensor PartWholeUnitImpl::top_down_update(const torch::Tensor& wholes,
                                                 const torch::Tensor& parts) {
  const auto [w, p] = group_by_whole(wholes, parts, parts_per_whole);
  auto t = top_down(p, w).reshape_as(parts);  // eq. (2): Q = P~, K = V = w~
  if (single_residual) t = t - parts;
  return lambda_part * t;
}

std::pair<torch::Tensor, torch::Tensor> PartWholeUnitImpl::forward(const torch::Tensor& wholes,
                                                                   const torch::Tensor& parts) {
  return {wholes + bottom_up_update(wholes, parts), parts + top_down_update(wholes, parts)};
}

// ---- PartWholeBlock and PartWholeTransformer ----

PartWholeBlockImpl::PartWholeBlockImpl(const ModelOptions& o) : sequential(o.pwt_order == "sequential") {
  units = register_module("units", torch::nn::ModuleList());
  for (int n = 0; n + 1 < o.levels; ++n) units->push_back(PartWholeUnit(o, n));
}

std::vector<torch::Tensor> PartWholeBlockImpl::forward(const std::vector<torch::Tensor>& in) {
  MART_CHECK(in.size() == units->size() + 1, "PWT block of ", units->size() + 1,
             " levels got ", in.size());
  std::vector<torch::Tensor> out = in;
  if (sequential) {
    // Bottom-up from the finest pair: each whole reads parts already updated in this block...
    for (size_t n = units->size(); n-- > 0;)
      out[n] = out[n] + (*units)[n]->as<PartWholeUnitImpl>()->bottom_up_update(out[n], out[n + 1]);
    // ...then top-down from the top: each part reads its whole's final value.
    for (size_t n = 0; n < units->size(); ++n)
      out[n + 1] = out[n + 1] + (*units)[n]->as<PartWholeUnitImpl>()->top_down_update(out[n], out[n + 1]);
    return out;
  }
  for (size_t n = 0; n < units->size(); ++n) {  // every update reads the block's input
    auto unit = (*units)[n]->as<PartWholeUnitImpl>();
    out[n] = out[n] + unit->bottom_up_update(in[n], in[n + 1]);
    out[n + 1] = out[n + 1] + unit->top_down_update(in[n], in[n + 1]);
  }
  return out;
}

PartWholeTransformerImpl::PartWholeTransformerImpl(const ModelOptions& o) {
  blocks = register_module("blocks", torch::nn::ModuleList());
  for (int i = 0; i < o.pwt_blocks; ++i) blocks->push_back(PartWholeBlock(o));
}

std::vector<torch::Tensor> PartWholeTransformerImpl::forward(std::vector<torch::Tensor> levels) {
  for (const auto& block : *blocks) levels = block->as<PartWholeBlockImpl>()->forward(levels);
  return levels;
}

}  // namespace mart::model
