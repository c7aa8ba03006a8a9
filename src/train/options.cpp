#include "mart/train/options.h"

#include <sstream>

#include "mart/core/error.h"
#include "mart/core/text.h"

namespace mart::train {

using model::declare_model_options;
using model::model_options_from;

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
  o.splits = split_list(c.get<std::string>("train.splits"), ',');
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
