#include "mart/train/options.h"

#include <sstream>

#include "mart/core/error.h"
#include "mart/preprocess/datasets.h"

namespace mart::train {

std::vector<int64_t> parse_int_list(const std::string& s, const std::string& key) {
  std::vector<int64_t> out;
  for (const auto& item : preprocess::split_list(s, ',')) {
    try {
      size_t used = 0;
      out.push_back(std::stoll(item, &used));
      if (used != item.size()) throw std::invalid_argument(item);
    } catch (const std::exception&) {
      MART_CONFIG_ERROR(key, ": '", item, "' is not an integer (expected a comma-separated list like 128,128,256)");
    }
  }
  return out;
}

std::vector<double> parse_double_list(const std::string& s, const std::string& key) {
  std::vector<double> out;
  for (const auto& item : preprocess::split_list(s, ',')) {
    try {
      out.push_back(std::stod(item));
    } catch (const std::exception&) {
      MART_CONFIG_ERROR(key, ": '", item, "' is not a number");
    }
  }
  return out;
}

void declare_model_options(Config& c) {
  const model::ModelOptions m;
  std::ostringstream ch;
  for (size_t i = 0; i < m.fcn_channels.size(); ++i) ch << (i ? "," : "") << m.fcn_channels[i];
  c.add<std::string>("model.fcn_channels", ch.str(), "channels of the 7 FCN blocks", "Model");
  c.add<int>("model.dim", static_cast<int>(m.dim), "embedding size D (= the last FCN channel count)", "Model");
  c.add<int>("model.pwt_blocks", m.pwt_blocks, "part-whole transformer blocks", "Model");
  c.add<int>("model.heads", m.heads, "attention heads", "Model");
  c.add<int>("model.head_dim", static_cast<int>(m.head_dim), "width of each head (heads x head_dim = attention width)", "Model");
  c.add<int>("model.ff_dim", static_cast<int>(m.ff_dim), "feed-forward width of the transformer layers", "Model");
  c.add<std::string>("model.lambdas", "", "lambda_n of eqs. 1-2, one per level, comma-separated; empty: all 1", "Model");
  c.add<int>("model.projection_dim", static_cast<int>(m.projection_dim), "output of the projection head", "Model");
  c.add<double>("model.tau", m.tau, "temperature of the contrastive loss", "Model");
  c.add<bool>("model.use_pwt", true, "false: the 'without PWT' ablation (s^ = s~)", "Model");
  c.add<bool>("model.use_hcl", true, "false: the 'without HCL' ablation (L_pw = 0)", "Model");
}

model::ModelOptions model_options_from(const Config& c) {
  model::ModelOptions m;
  m.fcn_channels = parse_int_list(c.get<std::string>("model.fcn_channels"), "model.fcn_channels");
  m.dim = c.get<int>("model.dim");
  m.pwt_blocks = c.get<int>("model.pwt_blocks");
  m.heads = c.get<int>("model.heads");
  m.head_dim = c.get<int>("model.head_dim");
  m.ff_dim = c.get<int>("model.ff_dim");
  m.lambdas = parse_double_list(c.get<std::string>("model.lambdas"), "model.lambdas");
  m.projection_dim = c.get<int>("model.projection_dim");
  m.tau = c.get<double>("model.tau");
  m.use_pwt = c.get<bool>("model.use_pwt");
  m.use_hcl = c.get<bool>("model.use_hcl");
  return m;
}

model::ModelOptions with_input_of(model::ModelOptions m, const audio::FeatureConfig& f) {
  m.levels = f.levels;
  m.parts = f.parts;
  m.n_mels = f.n_mels;
  m.frames = f.frames;
  return m;
}

std::string model_ini(const model::ModelOptions& m) {
  std::ostringstream os;
  os << "[model]\nfcn_channels = ";
  for (size_t i = 0; i < m.fcn_channels.size(); ++i) os << (i ? "," : "") << m.fcn_channels[i];
  os << "\ndim = " << m.dim << "\npwt_blocks = " << m.pwt_blocks << "\nheads = " << m.heads
     << "\nhead_dim = " << m.head_dim << "\nff_dim = " << m.ff_dim << "\nlambdas = ";
  for (size_t i = 0; i < m.lambdas.size(); ++i) os << (i ? "," : "") << format_value(m.lambdas[i]);
  os << "\nprojection_dim = " << m.projection_dim << "\ntau = " << format_value(m.tau)
     << "\nuse_pwt = " << format_value(m.use_pwt) << "\nuse_hcl = " << format_value(m.use_hcl) << "\n";
  return os.str();
}

void declare_options(Config& c) {
  const TrainOptions d;
  c.add_required<std::string>("data", "folder of mart-preprocess output (manifest.json and shards)", "Data");
  c.add_required<std::string>("run", "run directory: checkpoints, metrics.jsonl, logs", "Data");
  c.add<std::string>("train.splits", "train", "splits to train on, comma-separated", "Data");
  c.add<int>("train.batch_size", d.batch_size, "global batch size, split evenly over ranks", "Training");
  c.add<int>("train.epochs", d.epochs, "epochs", "Training");
  c.add<int>("train.max_steps", 0, "stop after this many steps (0: the epochs decide)", "Training");
  c.add<double>("train.lr", d.lr, "Adam learning rate", "Training");
  c.add<double>("train.weight_decay", d.weight_decay, "Adam weight decay", "Training");
  c.add<int>("train.warmup_steps", 0, "linear warm-up steps", "Training");
  c.add<bool>("train.cosine", false, "cosine decay of the learning rate to 0 at the last step", "Training");
  c.add<double>("train.clip_grad_norm", 0.0, "clip the global gradient norm (0: off)", "Training");
  c.add<int>("train.seed", 1, "seed of the model's initialisation, the sampler and the view choice", "Training");
  c.add<int>("train.crops_per_track", 1, "crops of each track per epoch", "Training");
  c.add<std::string>("train.device", d.device, "cpu or cuda (one GPU per rank, chosen by the local rank)", "Execution");
  c.add<bool>("train.bf16", false, "bf16 autocast on CUDA", "Execution");
  c.add<int>("train.threads", 0, "intra-op threads per rank (0: cores / ranks on the node)", "Execution");
  c.add<int>("train.prefetch", d.prefetch, "batches read ahead by the loader thread", "Execution");
  c.add<std::string>("train.batch_norm", d.batch_norm,
                     "local (per-rank batch statistics) or frozen (running statistics: exact across rank counts)",
                     "Execution");
  c.add<bool>("train.overlap", true, "all-reduce gradients during backward", "Execution");
  c.add<double>("train.bucket_mb", d.bucket_mb, "gradient bucket size in MB", "Execution");
  c.add<int>("train.checkpoint_every", static_cast<int>(d.checkpoint_every), "steps between checkpoints (0: at the end only)", "Checkpoints");
  c.add<int>("train.keep_checkpoints", d.keep_checkpoints, "checkpoints kept", "Checkpoints");
  c.add_flag("train.resume", "continue the run in --run from its newest complete checkpoint", "Checkpoints");
  c.add<int>("train.log_every", static_cast<int>(d.log_every), "steps between progress lines", "Checkpoints");
  declare_model_options(c);
}

TrainOptions options_from(const Config& c) {
  TrainOptions o;
  o.data = c.get<std::string>("data");
  o.run = c.get<std::string>("run");
  o.splits = preprocess::split_list(c.get<std::string>("train.splits"), ',');
  o.batch_size = c.get<int>("train.batch_size");
  o.epochs = c.get<int>("train.epochs");
  o.max_steps = c.get<int>("train.max_steps");
  o.lr = c.get<double>("train.lr");
  o.weight_decay = c.get<double>("train.weight_decay");
  o.warmup_steps = c.get<int>("train.warmup_steps");
  o.cosine = c.get<bool>("train.cosine");
  o.clip_grad_norm = c.get<double>("train.clip_grad_norm");
  o.seed = static_cast<uint64_t>(c.get<int>("train.seed"));
  o.crops_per_track = c.get<int>("train.crops_per_track");
  o.device = c.get<std::string>("train.device");
  o.bf16 = c.get<bool>("train.bf16");
  o.threads = c.get<int>("train.threads");
  o.prefetch = c.get<int>("train.prefetch");
  o.batch_norm = c.get<std::string>("train.batch_norm");
  o.overlap = c.get<bool>("train.overlap");
  o.bucket_mb = c.get<double>("train.bucket_mb");
  o.checkpoint_every = c.get<int>("train.checkpoint_every");
  o.keep_checkpoints = c.get<int>("train.keep_checkpoints");
  o.resume = c.get<bool>("train.resume");
  o.log_every = c.get<int>("train.log_every");
  o.model = model_options_from(c);
  if (o.batch_size < 1) MART_CONFIG_ERROR("train.batch_size must be at least 1");
  if (o.epochs < 1 && o.max_steps < 1) MART_CONFIG_ERROR("train.epochs or train.max_steps must be positive");
  if (!(o.lr > 0)) MART_CONFIG_ERROR("train.lr must be positive");
  if (o.device != "cpu" && o.device != "cuda") MART_CONFIG_ERROR("train.device must be cpu or cuda, got '", o.device, "'");
  if (o.batch_norm != "local" && o.batch_norm != "frozen")
    MART_CONFIG_ERROR("train.batch_norm must be local or frozen, got '", o.batch_norm, "'");
  if (o.bf16 && o.device != "cuda") MART_CONFIG_ERROR("train.bf16 needs train.device = cuda (autocast to bf16 is a GPU feature here)");
  if (o.prefetch < 1) MART_CONFIG_ERROR("train.prefetch must be at least 1");
  if (o.keep_checkpoints < 1) MART_CONFIG_ERROR("train.keep_checkpoints must be at least 1");
  if (o.splits.empty()) MART_CONFIG_ERROR("train.splits names no split");
  if (o.crops_per_track < 1) MART_CONFIG_ERROR("train.crops_per_track must be at least 1");
  return o;
}

}  // namespace mart::train
