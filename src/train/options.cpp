#include "mart/train/options.h"

#include <filesystem>
#include <sstream>

#include "mart/core/error.h"
#include "mart/core/text.h"
#include "mart/data/manifest.h"

namespace mart::train {

using model::declare_model_options;
using model::model_options_from;

void declare_augment_options(Config& c) {
  const AugmentOptions a;
  const char* g = "Augmentation (docs/augment.md)";
  c.add<bool>("train.augment.enabled", a.enabled, "fresh augmentation of the log-mel batch every step (on top of the stored views)", g);
  c.add<double>("train.augment.p_gain", a.p_gain, "probability of a gain change (an offset on the log-mel)", g);
  c.add<double>("train.augment.gain_min_db", a.gain_min_db, "smallest gain in dB", g);
  c.add<double>("train.augment.gain_max_db", a.gain_max_db, "largest gain in dB", g);
  c.add<double>("train.augment.p_noise", a.p_noise, "probability of white noise (added in the power domain)", g);
  c.add<double>("train.augment.noise_min", a.noise_min, "smallest noise std as a fraction of the signal's std", g);
  c.add<double>("train.augment.noise_max", a.noise_max, "largest noise std as a fraction of the signal's std", g);
  c.add<double>("train.augment.p_filter", a.p_filter, "probability of a high- or low-pass filter (half each)", g);
  c.add<double>("train.augment.highpass_min_hz", a.highpass_min_hz, "lowest high-pass cut-off in Hz", g);
  c.add<double>("train.augment.highpass_max_hz", a.highpass_max_hz, "highest high-pass cut-off in Hz", g);
  c.add<double>("train.augment.lowpass_min_hz", a.lowpass_min_hz, "lowest low-pass cut-off in Hz", g);
  c.add<double>("train.augment.lowpass_max_hz", a.lowpass_max_hz, "highest low-pass cut-off in Hz", g);
  c.add<double>("train.augment.p_delay", a.p_delay, "probability of a delay (echo, approximated in the power domain)", g);
  c.add<int>("train.augment.delay_min_ms", a.delay_min_ms, "shortest delay in ms", g);
  c.add<int>("train.augment.delay_max_ms", a.delay_max_ms, "longest delay in ms", g);
  c.add<int>("train.augment.delay_step_ms", a.delay_step_ms, "delays are min + k * step ms", g);
  c.add<double>("train.augment.delay_volume", a.delay_volume, "amplitude of the echo (CLMR: (x + v x_d) / 2)", g);
  c.add<double>("train.augment.p_pitch", a.p_pitch, "probability of a pitch shift (along the mel axis)", g);
  c.add<double>("train.augment.pitch_max_cents", a.pitch_max_cents, "largest pitch shift in cents, either way", g);
  c.add<double>("train.augment.p_time_mask", a.p_time_mask, "probability of a time mask per clip", g);
  c.add<double>("train.augment.time_mask_max", a.time_mask_max, "widest time mask as a fraction of the clip's frames", g);
  c.add<double>("train.augment.p_freq_mask", a.p_freq_mask, "probability of a frequency mask per clip", g);
  c.add<double>("train.augment.freq_mask_max", a.freq_mask_max, "widest frequency mask as a fraction of the mel bands", g);
}

AugmentOptions augment_options_from(const Config& c) {
  AugmentOptions a;
  a.enabled = c.get<bool>("train.augment.enabled");
  a.p_gain = c.get<double>("train.augment.p_gain");
  a.gain_min_db = c.get<double>("train.augment.gain_min_db");
  a.gain_max_db = c.get<double>("train.augment.gain_max_db");
  a.p_noise = c.get<double>("train.augment.p_noise");
  a.noise_min = c.get<double>("train.augment.noise_min");
  a.noise_max = c.get<double>("train.augment.noise_max");
  a.p_filter = c.get<double>("train.augment.p_filter");
  a.highpass_min_hz = c.get<double>("train.augment.highpass_min_hz");
  a.highpass_max_hz = c.get<double>("train.augment.highpass_max_hz");
  a.lowpass_min_hz = c.get<double>("train.augment.lowpass_min_hz");
  a.lowpass_max_hz = c.get<double>("train.augment.lowpass_max_hz");
  a.p_delay = c.get<double>("train.augment.p_delay");
  a.delay_min_ms = c.get<int>("train.augment.delay_min_ms");
  a.delay_max_ms = c.get<int>("train.augment.delay_max_ms");
  a.delay_step_ms = c.get<int>("train.augment.delay_step_ms");
  a.delay_volume = c.get<double>("train.augment.delay_volume");
  a.p_pitch = c.get<double>("train.augment.p_pitch");
  a.pitch_max_cents = c.get<double>("train.augment.pitch_max_cents");
  a.p_time_mask = c.get<double>("train.augment.p_time_mask");
  a.time_mask_max = c.get<double>("train.augment.time_mask_max");
  a.p_freq_mask = c.get<double>("train.augment.p_freq_mask");
  a.freq_mask_max = c.get<double>("train.augment.freq_mask_max");
  return a;
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
  c.add<double>("train.crop_offset_s", d.crop_offset_s,
                "largest offset in seconds between the top-clip starts of views A and B (drawn per item; 0: the "
                "same start, as the paper)",
                "Training");
  c.add<bool>("train.stored_views", d.stored_views,
              "true: views A and B are two of the augmented views mart-preprocess stored (the clean audio among "
              "them); false: both are the clean audio and the fresh log-mel augmentation is their only difference",
              "Training");
  c.add<std::string>("train.objective", d.objective,
                     "mart: the hierarchical contrastive loss; supervised: a positive control that trains the same "
                     "model on the data's classes (cross-entropy from the projection head on s^0 of both views, "
                     "model.projection_dim set to the class count; tracks without a class are refused)",
                     "Training");
  declare_augment_options(c);
  c.add<std::string>("train.device", d.device, "cpu or cuda (one GPU per rank, chosen by the local rank)", "Execution");
  c.add<bool>("train.bf16", false, "bf16 autocast on CUDA", "Execution");
  c.add<bool>("train.channels_last", d.channels_last,
              "channels-last (NHWC) convolutions: what tensor cores want; slower on the CPU (docs/model.md); "
              "scripts/gpu-check.sh --bench measures both on a GPU",
              "Execution");
  c.add<int>("train.threads", 0, "intra-op threads per rank (0: cores / ranks on the node)", "Execution");
  c.add<int>("train.prefetch", d.prefetch, "batches read ahead by the loader thread", "Execution");
  c.add<bool>("train.huge_pages", d.huge_pages,
              "allocate CPU tensors of 4 MiB and more on transparent huge pages, mapped by mart "
              "(512x fewer page faults than glibc's 4 KiB pages)",
              "Execution");
  c.add<bool>("train.cpu_cache", d.cpu_cache,
              "with train.huge_pages: keep freed blocks of 4 MiB and more for the next step instead "
              "of unmapping them (up to twice the most ever live at once, within the rank's share of "
              "the node's available memory; a CPU step at the paper's shape took 0.5-0.66x the "
              "time, peak memory 1.5-1.6x; docs/model.md)",
              "Execution");
  c.add<bool>("train.repeat_first_batch", d.repeat_first_batch,
              "benchmark only: read the first batch once and train on copies of it every step (no "
              "reading after step 1), to compare step time and data wait with a normal run "
              "(bench/data/loader_stall.sh); what it learns is worthless",
              "Execution");
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
  o.crop_offset_s = c.get<double>("train.crop_offset_s");
  o.stored_views = c.get<bool>("train.stored_views");
  o.objective = c.get<std::string>("train.objective");
  o.augment = augment_options_from(c);
  o.device = c.get<std::string>("train.device");
  o.bf16 = c.get<bool>("train.bf16");
  o.channels_last = c.get<bool>("train.channels_last");
  o.threads = c.get<int>("train.threads");
  o.prefetch = c.get<int>("train.prefetch");
  o.repeat_first_batch = c.get<bool>("train.repeat_first_batch");
  o.huge_pages = c.get<bool>("train.huge_pages");
  o.cpu_cache = c.get<bool>("train.cpu_cache");
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
  if (!(o.crop_offset_s >= 0)) MART_CONFIG_ERROR("train.crop_offset_s must be >= 0 seconds");
  if (o.objective != "mart" && o.objective != "supervised")
    MART_CONFIG_ERROR("train.objective must be mart or supervised, got '", o.objective, "'");
  o.augment.validate();
  return o;
}

void check_options(const Config& c) {
  const TrainOptions o = options_from(c);
  model::ModelOptions m = o.model;
  const std::string manifest = o.data + "/manifest.json";
  if (std::filesystem::exists(manifest)) {
    m = model::with_input_of(m, data::load_manifest(manifest).features);
  } else if (!m.lambdas.empty()) {
    m.levels = static_cast<int>(m.lambdas.size());  // the data decides; training checks again
  }
  m.validate();
}

}  // namespace mart::train
