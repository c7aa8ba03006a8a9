#include "mart/train/trainer.h"

#include <spdlog/spdlog.h>
#include <torch/torch.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstring>
#include <chrono>
#include <limits>
#include <csignal>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>

#include "mart/app/plot.h"
#include "mart/core/clock.h"
#include "mart/core/error.h"
#include "mart/core/fs.h"
#include "mart/core/hash.h"
#include "mart/dist/communicator.h"
#include "mart/dist/gradient_reducer.h"
#include "mart/run/adam.h"
#include "mart/run/autocast.h"
#include "mart/run/checkpoint.h"
#include "mart/run/cpu_allocator.h"
#include "mart/run/step.h"
#include "mart/train/augment.h"
#include "mart/train/loader.h"
#include "mart/train/options.h"

namespace fs = std::filesystem;

namespace mart::train {

// The checkpoint format and the step are the run layer's (fine-tuning in mart-eval shares them).
using run::checkpoint_dir;
using run::forward_loss;
using run::freeze_batch_norm;
using run::latest_checkpoint;
using run::learning_rate;
using run::load_checkpoint;
using run::save_checkpoint;
using run::StepLoss;
using run::TrainState;
using run::resume_checkpoint;
using run::Bf16Autocast;

namespace {
std::atomic<int> g_signal{0};
void on_signal(int sig) { g_signal.store(sig); }

using Clock = std::chrono::steady_clock;

// The model's input sizes come from the data, the rest from the config.
model::ModelOptions model_for(const model::ModelOptions& options, const features::FeatureConfig& f) {
  model::ModelOptions m = with_input_of(options, f);
  m.validate();
  return m;
}

// The CPU, or with train.device = cuda the GPU of this rank's local rank.
torch::Device training_device(const TrainOptions& o, const dist::World& world) {
  if (o.device != "cuda") return torch::Device(torch::kCPU);
  if (!torch::cuda::is_available())
    MART_CONFIG_ERROR("train.device = cuda but this LibTorch sees no GPU (a CPU build, or no GPU on the node): "
                      "build against a CUDA LibTorch (-DTorch_DIR=...) or use train.device = cpu");
  return torch::Device(torch::kCUDA, dist::gpu_for_local_rank(world.local_rank(), world.local_size(),
                                                              static_cast<int>(torch::cuda::device_count())));
}

// Each rank's share of the global batch, which must split evenly.
int local_batch_size(const TrainOptions& o, const dist::World& world) {
  if (o.batch_size % world.size() != 0)
    MART_CONFIG_ERROR("train.batch_size ", o.batch_size, " does not split evenly over ", world.size(),
                      " ranks: use a multiple of ", world.size());
  return o.batch_size / world.size();
}

dist::SamplerOptions sampler_options(const TrainOptions& o, int local_batch) {
  dist::SamplerOptions so;
  so.seed = o.seed;
  so.batch_size = static_cast<size_t>(local_batch);
  so.crops_per_track = static_cast<uint32_t>(o.crops_per_track);
  return so;
}

// The model options the objective trains: model.*, except that the supervised positive control's
// projection head gives class logits (and then every training track needs a class).
model::ModelOptions objective_model_options(const TrainOptions& o, const TrainingData& data, const dist::World& world) {
  model::ModelOptions model_options = o.model;
  if (o.objective != "supervised") return model_options;
  const auto& classes = data.manifest().labels.class_names;
  for (uint32_t t = 0; t < data.num_tracks(); ++t)
    if (data.class_index(t) < 0)
      MART_CONFIG_ERROR("train.objective = supervised needs a class for every training track, and track ", t,
                        " of '", o.data, "' has none: give the data labels (e.g. --dataset.labels_csv with a "
                        "class column) or train with train.objective = mart");
  model_options.projection_dim = static_cast<int64_t>(classes.size());
  if (world.is_root())
    spdlog::info("train.objective = supervised: {} classes; model.projection_dim set to {}", classes.size(),
                 classes.size());
  return model_options;
}

// The run's state: resumed from its newest intact checkpoint (with --train.resume), or fresh, every
// rank then starting from rank 0's initialisation.
TrainState start_or_resume(const TrainOptions& o, TrainState fresh, model::MartModel& model,
                           run::ForeachAdam& optimizer, dist::DistributedSampler& sampler, dist::Communicator& comm,
                           torch::Device device) {
  const auto latest = latest_checkpoint(o.run);
  if (latest && !o.resume)
    MART_CONFIG_ERROR("run directory '", o.run, "' already holds checkpoints (", *latest,
                      "): pass --train.resume to continue that run, or choose another --run");
  if (!latest) {
    sampler.set_epoch(0);
    dist::broadcast_parameters(*model, comm);
    return fresh;
  }
  const std::string from = resume_checkpoint(o.run);  // the newest intact one
  TrainState state = load_checkpoint(from, model, &optimizer, device);
  sampler.restore(state.sampler);
  spdlog::info("resumed from {} at step {} (epoch {}, batch {})", from, state.step, state.sampler.epoch,
               state.sampler.batch);
  return state;
}

std::vector<torch::Tensor> trainable_parameters(model::MartModel& model) {
  std::vector<torch::Tensor> params;
  for (auto& p : model->parameters())
    if (p.requires_grad()) params.push_back(p);
  return params;
}

// On a GPU the loader reads into page-locked memory from LibTorch's caching host allocator, so each
// view goes to the device in one asynchronous copy with no staging copy; the allocator keeps a
// freed block until the copies that read it are done. `owner` is the pinned tensor itself (the
// step copies from it, not from an alias, so the allocator can tell which block the copy reads).
HostFloats pinned_floats(size_t n) {
  auto t = std::make_shared<torch::Tensor>(
      torch::empty({static_cast<int64_t>(n)}, torch::TensorOptions().dtype(torch::kFloat32).pinned_memory(true)));
  return HostFloats(t->data_ptr<float>(), n, t);
}

PrefetchOptions prefetch_options(const TrainOptions& o, const features::FeatureConfig& f, int64_t batches,
                                 const torch::Device& device) {
  PrefetchOptions po;
  if (device.is_cuda()) po.allocate = pinned_floats;
  po.seed = o.seed;
  po.depth = o.prefetch;
  po.batches = batches;
  po.crop_offset = offset_hops(o.crop_offset_s, f);
  po.stored_views = o.stored_views;
  po.repeat_first = o.repeat_first_batch;
  return po;
}

void set_learning_rate(run::ForeachAdam& optimizer, double lr) {
  for (auto& g : optimizer.param_groups()) static_cast<torch::optim::AdamOptions&>(g.options()).lr(lr);
}

// A step's forward pass: what it reads besides the batch, fixed for the run.
struct Forward {
  const TrainOptions& options;
  const model::ModelOptions& model_options;
  const features::FeatureConfig& feature_config;
  model::MartModel& model;
  const loss::HierarchicalContrastiveLoss& loss_fn;
  const LogMelAugmenter& augment;
  dist::Communicator* comm;
  torch::Device device;
  int64_t first_sample;  // the global index of this rank's first sample in a batch

  // Both views to the device, freshly augmented, through the model and the loss under autocast
  // (the backward follows the dtypes it chose).
  StepLoss operator()(CropBatch& batch, int64_t step, bool log_step) const {
    const features::FeatureConfig& f = feature_config;
    // On a GPU the loader filled pinned memory (pinned_floats): one copy that does not block the
    // host. On the CPU the step works on the loader's memory itself.
    auto to_device = [&](HostFloats& host, torch::IntArrayRef shape) {
      if (!device.is_cuda()) return torch::from_blob(host.data(), shape);
      return std::static_pointer_cast<torch::Tensor>(host.owner())->view(shape).to(device, /*non_blocking=*/true);
    };
    auto a = to_device(batch.view_a, {batch.size, 1, f.n_mels, f.frames});
    auto b = to_device(batch.view_b, {batch.size, f.clips_total(), f.n_mels, f.frames});
    // Fresh draws per (seed, step, global sample index, view): any rank split and a resume agree.
    a = augment(a, step, first_sample, 0);
    b = augment(b, step, first_sample, 1);
    const Bf16Autocast autocast(options.bf16, device.type());
    if (options.objective == "supervised")
      return run::forward_supervised(model, a, b, torch::tensor(batch.label, torch::kLong), comm, log_step);
    // Track ids only where the loss masks same-track pairs (model.same_track = masked).
    const auto track =
        model_options.loss.same_track == "masked" ? torch::tensor(batch.track, torch::kLong) : torch::Tensor();
    return forward_loss(model, loss_fn, a, b, comm, track, log_step);
  }
};

// metrics.jsonl and the log line. The steps since the last log line wait here: their losses stay on
// the device until a log step (or a checkpoint), when one collective sums the ranks' shares and one
// copy brings them to the host: a step that does not log reads nothing back (issue 27; on a GPU a
// read waits for the queue).
class MetricsLog {
 public:
  struct Step {
    int64_t step;
    uint64_t epoch;
    double lr, step_s, wait_s, comm_s;
  };

  MetricsLog(const TrainOptions& o, const features::FeatureConfig& f, const dist::World& world,
             dist::Communicator& comm, int64_t total_steps)
      : o_(o), f_(f), world_(world), comm_(comm), total_steps_(total_steps) {
    if (world.is_root()) metrics_.open(o.run + "/metrics.jsonl", std::ios::app);
  }

  void add(const Step& step, const torch::Tensor& local_loss, int64_t host_reads) {
    pending_.push_back(step);
    pending_loss_.push_back(local_loss.reshape({1}));
    quiet_reads_ += host_reads;
  }

  // Writes the pending steps' metrics lines (diagnostics on the last, when it logged) and, on a
  // log step, the log line. Every rank calls it at the same steps (it all-reduces).
  void flush(const std::vector<std::pair<std::string, double>>& diagnostics, bool log_line, int64_t step) {
    if (pending_.empty()) return;
    auto losses = torch::stack(pending_loss_).contiguous();
    if (comm_.size() > 1) comm_.all_reduce(losses);
    const auto host = run::read_back_tensor(losses);
    const double* loss = host.data_ptr<double>();
    if (world_.is_root()) {
      write_lines(loss, diagnostics, log_line);
      if (log_line) log(loss, diagnostics, step);
    }
    pending_.clear();
    pending_loss_.clear();
    if (log_line) quiet_reads_ = 0;
  }

 private:
  void write_lines(const double* loss, const std::vector<std::pair<std::string, double>>& diagnostics,
                   bool log_line) {
    for (size_t i = 0; i < pending_.size(); ++i) {
      const Step& p = pending_[i];
      nlohmann::json line{{"step", p.step}, {"epoch", p.epoch}, {"loss", loss[i]}, {"lr", p.lr},
                          {"samples_per_s", o_.batch_size / p.step_s}, {"step_s", p.step_s},
                          {"data_wait_s", p.wait_s}, {"comm_s", p.comm_s}};
      if (i + 1 == pending_.size()) {
        for (const auto& [k, v] : diagnostics) line[k] = v;
        if (log_line) line["host_reads"] = quiet_reads_;
      }
      metrics_ << line.dump() << "\n";
    }
    metrics_.flush();
    if (!metrics_) MART_OUTPUT_ERROR("cannot write '", o_.run, "/metrics.jsonl': ", std::strerror(errno), kOutputFix);
  }

  void log(const double* loss, const std::vector<std::pair<std::string, double>>& diagnostics, int64_t step) const {
    double sum_loss = 0, sum_wait = 0, sum_comm = 0, sum_time = 0;
    for (size_t i = 0; i < pending_.size(); ++i) {
      const Step& p = pending_[i];
      sum_loss += loss[i], sum_wait += p.wait_s, sum_comm += p.comm_s, sum_time += p.step_s;
    }
    const double n = static_cast<double>(pending_.size());
    // x real time: seconds of audio (one top clip per sample) per second of training.
    const double per_s = o_.batch_size * n / sum_time;
    std::map<std::string, double> d(diagnostics.begin(), diagnostics.end());
    spdlog::info("step {}/{} epoch {} loss {:.4f} lr {:.2e} {:.1f} samples/s = {:.0f}x real time "
                 "(data wait {:.0f} ms, comm {:.0f} ms per step); ETA {:.0f} s; top1 {:.3f} log_pw {:.2f} "
                 "pos/neg logit {:.2f}/{:.2f} align {:.3f} uniform {:.3f} eff_rank {:.1f}",
                 step, total_steps_, pending_.back().epoch, sum_loss / n, pending_.back().lr, per_s,
                 per_s * static_cast<double>(f_.clip_samples) / f_.sample_rate, 1e3 * sum_wait / n,
                 1e3 * sum_comm / n, static_cast<double>(total_steps_ - step) * sum_time / n, d["top1"],
                 d["log_pw"], d["pos_logit"], d["neg_logit"], d["align"], d["uniform"], d["eff_rank"]);
  }

  const TrainOptions& o_;
  const features::FeatureConfig& f_;
  const dist::World& world_;
  dist::Communicator& comm_;
  const int64_t total_steps_;
  std::ofstream metrics_;
  std::vector<Step> pending_;
  std::vector<torch::Tensor> pending_loss_;
  // Device-to-host reads (run::read_back) made by the steps that did not log, reported on the
  // next log line as "host_reads"; tests/train/test_train_stage.cpp requires 0.
  int64_t quiet_reads_ = 0;
};

// The end of a run: the PyTorch state dict beside the last checkpoint, and the curves.
void export_results(const TrainOptions& o, const TrainState& state, model::MartModel& model) {
  model::export_state_dict(*model, o.run + "/model_state_dict.pt");
  spdlog::info("done: {} steps; checkpoint in {}, PyTorch state dict in {}/model_state_dict.pt", state.step,
               checkpoint_dir(o.run, state.step), o.run);
  const std::string curves = app::plot("curves", o.run);
  if (!curves.empty()) spdlog::info("training curves: {}", curves);
}

}  // namespace

void install_preemption_handlers() {
  std::signal(SIGUSR1, on_signal);
  std::signal(SIGTERM, on_signal);
}
bool preemption_requested() { return g_signal.load() != 0; }

int run(app::StageContext& ctx) {
  const TrainOptions o = options_from(ctx.cfg);
  auto& world = ctx.world;
  install_preemption_handlers();
  const int threads = dist::threads_per_rank(world, o.threads);
  at::set_num_threads(threads);
  if (o.huge_pages) {  // before the model and the first batch
    run::use_huge_page_cpu_allocator();
    if (o.cpu_cache) {
      run::set_cpu_allocator_cache_limit(std::numeric_limits<size_t>::max());
      // The cache holds up to ~0.6x a step's peak on top of it: it gives way before this rank's
      // share of the node's available memory is passed, so a run that fitted still fits.
      if (const size_t available = run::available_memory_bytes())
        run::set_cpu_allocator_memory_budget(available / 10 * 8 / static_cast<size_t>(world.local_size()));
    }
  }
  const torch::Device device = training_device(o, world);

  // Data first: a wrong manifest or shard stops here, before any model is built.
  const TrainingData data(o.data, o.splits);
  const auto& f = data.features();
  const int local_batch = local_batch_size(o, world);
  dist::DistributedSampler sampler(data.crop_starts(), world.rank(), world.size(), sampler_options(o, local_batch));
  const int64_t total_steps =
      o.max_steps > 0 ? o.max_steps : static_cast<int64_t>(sampler.batches_per_epoch()) * o.epochs;

  const model::ModelOptions model_options = objective_model_options(o, data, world);
  torch::manual_seed(o.seed);
  const model::ModelOptions mo = model_for(model_options, f);
  model::MartModel model(mo);
  model->to(device);
  // cuDNN picks each convolution's fastest algorithm for the shapes it sees (fixed in training).
  if (device.is_cuda()) at::globalContext().setBenchmarkCuDNN(true);
  auto comm = dist::make_communicator(world, device);
  run::ForeachAdam optimizer(model->parameters(), torch::optim::AdamOptions(o.lr).weight_decay(o.weight_decay));
  const loss::HierarchicalContrastiveLoss loss_fn(mo.loss_options());

  TrainState fresh;
  fresh.seed = o.seed;
  fresh.config_hash = hex64(ctx.cfg.hash());
  fresh.model_canonical = mo.canonical();
  fresh.features = f;
  TrainState state = start_or_resume(o, fresh, model, optimizer, sampler, *comm, device);
  model->use_channels_last(o.channels_last);  // after a resume, which loads the weights in their saved layout
  model->train();
  if (o.batch_norm == "frozen") freeze_batch_norm(*model);

  const std::vector<torch::Tensor> params = trainable_parameters(model);
  dist::ReducerOptions ro;
  ro.bucket_bytes = static_cast<size_t>(o.bucket_mb * (1 << 20));
  ro.overlap = o.overlap;
  dist::GradientReducer reducer(params, *comm, ro);

  int64_t n_params = 0;
  for (auto& p : params) n_params += p.numel();
  if (world.is_root())
    spdlog::info("training {} parameters on {} rank(s) x {} thread(s), {}; global batch {} ({} per rank); {} batches "
                 "per epoch; steps {} -> {}",
                 n_params, world.size(), threads, device.str(), o.batch_size, local_batch,
                 sampler.batches_per_epoch(), state.step, total_steps);

  MetricsLog metrics(o, f, world, *comm, total_steps);
  Prefetcher loader(data, sampler, prefetch_options(o, f, total_steps - state.step, device));
  const LogMelAugmenter augment(o.augment, f, o.seed);
  const Forward forward{o, mo, f, model, loss_fn, augment, comm.get(), device, int64_t{world.rank()} * local_batch};
  auto checkpoint = [&] {
    if (world.is_root()) save_checkpoint(o.run, state, model, optimizer, o.keep_checkpoints);
    world.barrier();  // no rank leaves before the checkpoint is on disk
  };
  while (state.step < total_steps) {
    const auto t0 = Clock::now();
    const int64_t reads_before = run::read_backs();
    double wait_s = 0;
    CropBatch batch = loader.next(&wait_s);
    const double lr = learning_rate(o.lr, state.step, total_steps, o.warmup_steps, o.cosine);
    set_learning_rate(optimizer, lr);
    const bool log_step = (state.step + 1) % o.log_every == 0 || state.step + 1 == total_steps;
    reducer.zero_grad();
    const StepLoss l = forward(batch, state.step, log_step);
    l.backward.backward();
    reducer.finalize();
    if (o.clip_grad_norm > 0) torch::nn::utils::clip_grad_norm_(params, o.clip_grad_norm);
    optimizer.step();
    ++state.step;
    state.sampler = {batch.epoch, batch.index + 1};
    const double step_s = seconds_since(t0);
    // On GPUs the host only sees launches: the communicator reports the collectives' device time.
    const double device_comm_s = comm->take_device_seconds();
    const double comm_s = device_comm_s >= 0 ? device_comm_s : l.gather_s + reducer.last_timing().finalize_s;
    metrics.add({state.step, batch.epoch, lr, step_s, wait_s, comm_s}, l.local,
                log_step ? 0 : run::read_backs() - reads_before);
    if (log_step) metrics.flush(l.diagnostics, true, state.step);
    // Preemption: a signal on any rank stops every rank at this same step.
    if (world.any(preemption_requested())) {
      spdlog::warn("preemption signal: checkpointing at step {} and exiting with {}", state.step, app::kExitPreempted);
      metrics.flush({}, false, state.step);
      checkpoint();
      return app::kExitPreempted;
    }
    if (o.checkpoint_every > 0 && state.step % o.checkpoint_every == 0 && state.step < total_steps) {
      // A resume continues after the checkpoint: its steps' lines are written first.
      metrics.flush({}, false, state.step);
      checkpoint();
    }
  }
  checkpoint();
  if (world.is_root()) export_results(o, state, model);
  return app::kExitOk;
}

}  // namespace mart::train
