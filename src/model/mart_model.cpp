#include "mart/model/mart_model.h"

#include "mart/core/error.h"
#include "mart/core/fs.h"

#include <sstream>

namespace mart::model {

ProjectionHeadImpl::ProjectionHeadImpl(int64_t dim, int64_t projection_dim) {
  fc1 = register_module("fc1", torch::nn::Linear(dim, dim));
  fc2 = register_module("fc2", torch::nn::Linear(dim, projection_dim));
}

torch::Tensor ProjectionHeadImpl::forward(const torch::Tensor& x) {
  return fc2(torch::relu(fc1(x)));
}

MartModelImpl::MartModelImpl(ModelOptions o) : options(std::move(o)) {
  options.validate();
  encoder = register_module("encoder", FcnEncoder(options));
  if (options.use_pwt) pwt = register_module("pwt", PartWholeTransformer(options));
  head = register_module("head", ProjectionHead(options.dim, options.projection_dim));
}

std::vector<torch::Tensor> MartModelImpl::split_levels(const torch::Tensor& per_clip) const {
  MART_CHECK(per_clip.size(1) == options.clips_total(), "expected ", options.clips_total(),
             " clips per instance (N = ", options.levels, ", M = ", options.parts, "), got ",
             per_clip.sizes());
  std::vector<torch::Tensor> levels;
  int64_t first = 0;
  for (int n = 0; n < options.levels; ++n) {
    levels.push_back(per_clip.narrow(1, first, options.clips_at(n)));
    first += options.clips_at(n);
  }
  return levels;
}

std::vector<torch::Tensor> MartModelImpl::part_whole(const std::vector<torch::Tensor>& tilde) {
  return pwt ? pwt->forward(tilde) : tilde;  // without PWT: s^ = s~
}

namespace {
void check_hierarchy(const torch::Tensor& h, const ModelOptions& o) {
  MART_CHECK(h.dim() == 4 && h.size(1) == o.clips_total(),
             "a hierarchy is [B, clips_total = ", o.clips_total(), ", n_mels, T], got ", h.sizes());
}
}  // namespace

void MartModelImpl::use_channels_last(bool on) {
  torch::NoGradGuard no_grad;
  const auto format = on ? torch::MemoryFormat::ChannelsLast : torch::MemoryFormat::Contiguous;
  for (auto& p : encoder->parameters())
    if (p.dim() == 4) p.set_data(p.data().contiguous(format));
  channels_last_ = on;
}

torch::Tensor MartModelImpl::encoder_input(const torch::Tensor& clips) const {
  return channels_last_ ? clips.contiguous(torch::MemoryFormat::ChannelsLast) : clips;
}

Embeddings MartModelImpl::embed(const torch::Tensor& hierarchy) {
  check_hierarchy(hierarchy, options);
  const int64_t b = hierarchy.size(0), c = hierarchy.size(1);
  const auto clips = hierarchy.reshape({b * c, 1, hierarchy.size(2), hierarchy.size(3)});
  Embeddings e;
  e.tilde = split_levels(encoder(encoder_input(clips)).view({b, c, options.dim}));
  e.hat = part_whole(e.tilde);
  return e;
}

MartOutputs MartModelImpl::forward(const torch::Tensor& view_a_top, const torch::Tensor& view_b) {
  check_hierarchy(view_b, options);
  const int64_t b = view_b.size(0), c = view_b.size(1), f = view_b.size(2), t = view_b.size(3);
  const auto a = view_a_top.reshape({-1, 1, f, t});
  MART_CHECK(a.size(0) == b, "view A has ", a.size(0), " top clips, view B ", b, " hierarchies");
  // One encoder batch: view A's B top clips, then view B's B * clips_total clips.
  const auto tilde = encoder(encoder_input(torch::cat({a, view_b.reshape({b * c, 1, f, t})})));
  MartOutputs out;
  out.tilde0_a = tilde.narrow(0, 0, b);
  out.b.tilde = split_levels(tilde.narrow(0, b, b * c).view({b, c, options.dim}));
  out.b.hat = part_whole(out.b.tilde);
  out.z_tilde0 = head(out.tilde0_a);
  for (const auto& level : out.b.hat) out.z_hat.push_back(head(level));
  return out;
}

// ---- weights ----

std::vector<std::pair<std::string, torch::Tensor>> state_dict(const torch::nn::Module& module) {
  std::vector<std::pair<std::string, torch::Tensor>> items;
  for (const auto& p : module.named_parameters(true)) items.emplace_back(p.key(), p.value());
  for (const auto& b : module.named_buffers(true)) items.emplace_back(b.key(), b.value());
  return items;
}

void save_weights(const torch::nn::Module& module, const std::string& path) {
  torch::serialize::OutputArchive archive;
  module.save(archive);
  // In memory first: LibTorch's file writer throws from a destructor on a full disk (an abort).
  std::ostringstream os;
  archive.save_to(os);
  write_file_atomic(path, os.str());
}

void load_weights(torch::nn::Module& module, const std::string& path, const torch::Device& device) {
  torch::serialize::InputArchive archive;
  // Without a device, tensors come back where they were saved (cuda:0 for rank 0 of a GPU run),
  // and Module::load moves each parameter there: a CPU node throws, rank r != 0 gets a model on
  // the wrong GPU. Mapping to `device` while reading avoids both.
  archive.load_from(path, device);
  module.load(archive);
  module.to(device);  // anything the archive did not hold follows the weights
}

MartModel inference_model(const ModelOptions& options, const std::string& checkpoint_dir, uint64_t seed) {
  torch::manual_seed(static_cast<int64_t>(seed));
  MartModel model(options);
  if (!checkpoint_dir.empty()) load_weights(*model, checkpoint_dir + "/model.pt", torch::kCPU);
  model->eval();
  return model;
}

void export_state_dict(const torch::nn::Module& module, const std::string& path) {
  c10::Dict<std::string, at::Tensor> dict;
  for (const auto& [name, tensor] : state_dict(module))
    dict.insert(name, tensor.detach().to(torch::kCPU).contiguous());
  const std::vector<char> bytes = torch::pickle_save(c10::IValue(dict));
  write_file_atomic(path, std::string(bytes.begin(), bytes.end()));
}

std::vector<std::pair<std::string, torch::Tensor>> read_exported_state_dict(const std::string& path) {
  const std::string bytes = read_file(path);
  const auto value = torch::pickle_load(std::vector<char>(bytes.begin(), bytes.end()));
  MART_CHECK(value.isGenericDict(), path, " does not hold a state dict");
  std::vector<std::pair<std::string, torch::Tensor>> items;
  for (const auto& entry : value.toGenericDict())
    items.emplace_back(entry.key().toStringRef(), entry.value().toTensor());
  return items;
}

}  // namespace mart::model
