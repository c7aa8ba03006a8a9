#pragma once
// The part-whole transformer (PWT) of MART, eqs. (1)-(2) of the paper (DESIGN.md section 1).
#include <torch/torch.h>

#include <vector>

#include "mart/model/options.h"

namespace mart::model {

// "Transformer(Q, K = V)" of eqs. (1)-(2): a standard post-norm transformer encoder layer whose
// attention is cross-attention (queries from one side, keys and values from the other):
//   y = LayerNorm1(Q + MultiHead(Q, C, C)),  out = LayerNorm2(y + FF(y)),
//   MultiHead = out(concat_h softmax(q_h k_h^T / sqrt(head_dim)) v_h),  FF = ff2(relu(ff1(.))).
// q/k/v project dim -> heads * head_dim (3 x 64 = 192 at paper size), out projects back to dim.
// No dropout: the paper gives none and the tests compare exact formulas.
// single_key: the context is always one vector (top-down: a part's only key is its whole). Then
// every softmax is 1, the queries and keys never matter, and the layer has no query/key
// projections at all, so every parameter it holds gets a gradient.
struct CrossAttentionLayerImpl : torch::nn::Module {
  CrossAttentionLayerImpl(int64_t dim, int heads, int64_t head_dim, int64_t ff_dim,
                          bool single_key = false);
  // query [G, Lq, dim], context [G, Lk, dim] -> [G, Lq, dim]; G independent groups.
  torch::Tensor forward(const torch::Tensor& query, const torch::Tensor& context);
  // MultiHead(Q, C, C) including the output projection. With a single key (Lk == 1) every softmax
  // is 1 and the result is out(value(C)) for every query: computed so unless force_softmax.
  torch::Tensor attend(const torch::Tensor& query, const torch::Tensor& context,
                       bool force_softmax = false);

  int heads;
  int64_t head_dim;
  bool single_key;
  torch::nn::Linear query{nullptr}, key{nullptr}, value{nullptr}, out{nullptr};
  torch::nn::LayerNorm norm1{nullptr}, norm2{nullptr};
  torch::nn::Linear ff1{nullptr}, ff2{nullptr};
};
TORCH_MODULE(CrossAttentionLayer);

// The part-whole interaction unit of one level pair (n, n+1), batched over every whole of level n
// in the batch. wholes: [B, K, dim] (K = M^n), parts: [B, K * M, dim], parts j*M .. j*M+M-1 being
// the parts of whole j (the order HierarchicalCropper writes clips in).
// Bottom-up and top-down have their own layers (their queries are different kinds of thing); the
// top-down layer is single-key.
struct PartWholeUnitImpl : torch::nn::Module {
  PartWholeUnitImpl(const ModelOptions& options, int whole_level);
  // lambda_n * Transformer(Q = w~, K = V = P~): the increment of eq. (1), [B, K, dim].
  torch::Tensor bottom_up_update(const torch::Tensor& wholes, const torch::Tensor& parts);
  // lambda_{n+1} * Transformer(Q = P~, K = V = w~): the increment of eq. (2), [B, K * M, dim].
  torch::Tensor top_down_update(const torch::Tensor& wholes, const torch::Tensor& parts);
  // Eqs. (1)-(2) literally: (w^, P^) = (w~ + bottom-up increment, P~ + top-down increment).
  std::pair<torch::Tensor, torch::Tensor> forward(const torch::Tensor& wholes,
                                                  const torch::Tensor& parts);

  int parts_per_whole;
  double lambda_whole, lambda_part;  // lambda_n, lambda_{n+1}
  bool single_residual;              // ModelOptions::pwt_residual == "single": increments are Transformer - input
  CrossAttentionLayer bottom_up{nullptr}, top_down{nullptr};
};
TORCH_MODULE(PartWholeUnit);

// One PWT block: the units of all adjacent level pairs (0,1), (1,2), ..., (N-2, N-1).
// Every update of a block is computed from the block's input, and a level's increments are summed:
//   out^n = in^n + [n < N-1] bottom-up increment of unit (n, n+1)
//                + [n > 0]   top-down  increment of unit (n-1, n).
// So an intermediate level gets both updates, neither sees the other's result within a block,
// and the order of the units does not matter (eqs. 1-2 apply as written to every pair).
// With pwt_order = sequential the block instead runs the bottom-up updates from the finest pair
// to the top, then the top-down updates from the top down, each reading the current levels.
struct PartWholeBlockImpl : torch::nn::Module {
  explicit PartWholeBlockImpl(const ModelOptions& options);
  // levels: N tensors [B, M^n, dim] -> N tensors of the same shapes.
  std::vector<torch::Tensor> forward(const std::vector<torch::Tensor>& levels);

  torch::nn::ModuleList units;
  bool sequential;  // ModelOptions::pwt_order == "sequential" (see there)
};
TORCH_MODULE(PartWholeBlock);

struct PartWholeTransformerImpl : torch::nn::Module {
  explicit PartWholeTransformerImpl(const ModelOptions& options);
  std::vector<torch::Tensor> forward(std::vector<torch::Tensor> levels);  // blocks in sequence

  torch::nn::ModuleList blocks;
};
TORCH_MODULE(PartWholeTransformer);

}  // namespace mart::model
