#pragma once
// The MART model: projection encoder, part-whole transformer and projection head
// (DESIGN.md section 1). The loss lives in mart/loss, because the trainer gathers the level-0
// embeddings of every rank between the two.
#include <torch/torch.h>

#include <string>
#include <vector>

#include "mart/model/fcn_encoder.h"
#include "mart/model/options.h"
#include "mart/model/part_whole_transformer.h"

namespace mart::model {

// Linear(dim) - ReLU - Linear(projection_dim), applied to every embedding that enters the loss.
struct ProjectionHeadImpl : torch::nn::Module {
  ProjectionHeadImpl(int64_t dim, int64_t projection_dim);
  torch::Tensor forward(const torch::Tensor& x);  // [..., dim] -> [..., projection_dim]

  torch::nn::Linear fc1{nullptr}, fc2{nullptr};
};
TORCH_MODULE(ProjectionHead);

// Per-level embeddings of a hierarchy of clips, before the head. Level n is [B, M^n, dim], its
// clips in time order.
struct Embeddings {
  std::vector<torch::Tensor> tilde;  // s~^n = E(s^n): the encoder's output
  std::vector<torch::Tensor> hat;    // s^^n: after the PWT (== tilde without PWT)
};

// Everything the hierarchical contrastive loss needs from one step.
struct MartOutputs {
  torch::Tensor tilde0_a;             // s~^0 of view A, [B, dim]
  Embeddings b;                       // view B's hierarchy
  torch::Tensor z_tilde0;             // head(s~^0 of view A), [B, projection_dim]
  std::vector<torch::Tensor> z_hat;   // head(s^^n of view B), [B, M^n, projection_dim]
};

struct MartModelImpl : torch::nn::Module {
  explicit MartModelImpl(ModelOptions options);

  // view_a_top: view A's top clips [B, 1, n_mels, T] (or [B, n_mels, T]);
  // view_b: view B's hierarchy [B, clips_total, n_mels, T], level-major (level 0's clip, then
  // level 1's M clips, ...). Both views' clips go through the encoder as one batch.
  MartOutputs forward(const torch::Tensor& view_a_top, const torch::Tensor& view_b);
  // Evaluation: the per-level, per-clip embeddings of a hierarchy [B, clips_total, n_mels, T].
  Embeddings embed(const torch::Tensor& hierarchy);
  // The part-whole transformer, or the identity without PWT.
  std::vector<torch::Tensor> part_whole(const std::vector<torch::Tensor>& tilde);
  // [B, clips_total, X] -> N tensors [B, M^n, X].
  std::vector<torch::Tensor> split_levels(const torch::Tensor& per_clip) const;
  // Channels-last (NHWC) convolutions: the encoder's weights and every input batch in that memory
  // layout (tensor-core convolutions want it; on the CPU it was slower). Same values either way.
  // Call after moving the model to its device, before the optimizer takes its state.
  void use_channels_last(bool on);

  ModelOptions options;
  FcnEncoder encoder{nullptr};
  PartWholeTransformer pwt{nullptr};  // null without PWT
  ProjectionHead head{nullptr};

 private:
  torch::Tensor encoder_input(const torch::Tensor& clips) const;  // [N, 1, n_mels, T] in the encoder's layout
  bool channels_last_ = false;
};
TORCH_MODULE(MartModel);

// Parameters and buffers (BatchNorm running statistics) by their dotted names, e.g.
// "encoder.blocks.0.conv.weight", "pwt.blocks.2.units.1.top_down.ff1.bias", "head.fc2.weight".
std::vector<std::pair<std::string, torch::Tensor>> state_dict(const torch::nn::Module& module);

// Weights in LibTorch's own archive format (torch::save / torch::load of the module).
void save_weights(const torch::nn::Module& module, const std::string& path);
// load_weights maps every tensor onto `device` as it reads (whatever device saved it), so a GPU
// checkpoint loads on a CPU node and rank r's copy lands on its own GPU; the module ends on `device`.
void load_weights(torch::nn::Module& module, const std::string& path, const torch::Device& device);

// A model that embeds on the CPU, as mart-eval and mart-embed both use it: initialised from `seed`,
// then the weights of `checkpoint_dir`/model.pt (empty: the random initialisation stays), in eval
// mode (BatchNorm on its running statistics: a crop's embedding does not depend on its batch).
MartModel inference_model(const ModelOptions& options, const std::string& checkpoint_dir, uint64_t seed);

// A state dict Python reads with `torch.load(path)`: a dict name -> tensor (CPU, contiguous)
// with the names of state_dict() above, written atomically (temporary file, then rename).
void export_state_dict(const torch::nn::Module& module, const std::string& path);
// Reads such a file back (for tests and for importing weights trained elsewhere).
std::vector<std::pair<std::string, torch::Tensor>> read_exported_state_dict(const std::string& path);

}  // namespace mart::model
