#include "mart/train/trainer.h"

#include <spdlog/spdlog.h>
#include <torch/torch.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstring>
#include <chrono>
#include <csignal>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>

#include "mart/app/plot.h"
#include "mart/core/error.h"
#include "mart/core/fs.h"
#include "mart/core/hash.h"
#include "mart/dist/communicator.h"
#include "mart/dist/gradient_reducer.h"
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
double since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

// The model's input sizes come from the data, the rest from the config.
model::ModelOptions model_for(const TrainOptions& o, const audio::FeatureConfig& f) {
  model::ModelOptions m = with_input_of(o.model, f);
  m.validate();
  return m;
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
  if (o.huge_pages) run::use_huge_page_cpu_allocator();  // before the model and the first batch
  torch::Device device(torch::kCPU);
  if (o.device == "cuda") {
    if (!torch::cuda::is_available())
      MART_CONFIG_ERROR("train.device = cuda but this LibTorch sees no GPU (a CPU build, or no GPU on the node): "
                        "build against a CUDA LibTorch (-DTorch_DIR=...) or use train.device = cpu");
    device = torch::Device(torch::kCUDA, dist::gpu_for_local_rank(world.local_rank(), world.local_size(),
                                                                  static_cast<int>(torch::cuda::device_count())));
  }

  // Data first: a wrong manifest or shard stops here, before any model is built.
  const TrainingData data(o.data, o.splits);
  const auto& f = data.features();
  if (o.batch_size % world.size() != 0)
    MART_CONFIG_ERROR("train.batch_size ", o.batch_size, " does not split evenly over ", world.size(),
                      " ranks: use a multiple of ", world.size());
  const int local_batch = o.batch_size / world.size();
  dist::SamplerOptions so;
  so.seed = o.seed;
  so.batch_size = static_cast<size_t>(local_batch);
  so.crops_per_track = static_cast<uint32_t>(o.crops_per_track);
  dist::DistributedSampler sampler(data.crop_starts(), world.rank(), world.size(), so);
  const int64_t total_steps =
      o.max_steps > 0 ? o.max_steps : static_cast<int64_t>(sampler.batches_per_epoch()) * o.epochs;

  torch::manual_seed(o.seed);
  const model::ModelOptions mo = model_for(o, f);
  model::MartModel model(mo);
  model->to(device);
  auto comm = dist::make_communicator(world, device);
  torch::optim::Adam optimizer(model->parameters(), torch::optim::AdamOptions(o.lr).weight_decay(o.weight_decay));
  const loss::HierarchicalContrastiveLoss loss_fn(mo.loss_options());

  TrainState state;
  state.seed = o.seed;
  state.config_hash = hex64(ctx.cfg.hash());
  state.model_canonical = mo.canonical();
  state.features = f;
  const auto latest = latest_checkpoint(o.run);
  if (latest && !o.resume)
    MART_CONFIG_ERROR("run directory '", o.run, "' already holds checkpoints (", *latest,
                      "): pass --train.resume to continue that run, or choose another --run");
  if (latest) {
    const std::string from = resume_checkpoint(o.run);  // the newest intact one
    state = load_checkpoint(from, model, &optimizer, device);
    sampler.restore(state.sampler);
    spdlog::info("resumed from {} at step {} (epoch {}, batch {})", from, state.step, state.sampler.epoch,
                 state.sampler.batch);
  } else {
    sampler.set_epoch(0);
    dist::broadcast_parameters(*model, *comm);  // every rank starts from rank 0's initialisation
  }
  model->train();
  if (o.batch_norm == "frozen") freeze_batch_norm(*model);

  std::vector<torch::Tensor> params;
  for (auto& p : model->parameters())
    if (p.requires_grad()) params.push_back(p);
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

  std::ofstream metrics;
  if (world.is_root()) metrics.open(o.run + "/metrics.jsonl", std::ios::app);
  Prefetcher loader(data, sampler, o.seed, o.prefetch, total_steps - state.step, offset_hops(o.crop_offset_s, f),
                    o.repeat_first_batch);
  const LogMelAugmenter augment(o.augment, f, o.seed);
  const int64_t clips = f.clips_total();
  auto checkpoint = [&] {
    if (world.is_root()) save_checkpoint(o.run, state, model, optimizer, o.keep_checkpoints);
    world.barrier();  // no rank leaves before the checkpoint is on disk
  };
  double window_loss = 0, window_wait = 0, window_comm = 0, window_time = 0;
  int64_t window_n = 0;
  std::map<std::string, double> window_diag;
  while (state.step < total_steps) {
    const auto t0 = Clock::now();
    double wait_s = 0;
    CropBatch batch = loader.next(&wait_s);
    const double lr = learning_rate(o.lr, state.step, total_steps, o.warmup_steps, o.cosine);
    for (auto& g : optimizer.param_groups()) static_cast<torch::optim::AdamOptions&>(g.options()).lr(lr);
    auto a = torch::from_blob(batch.view_a.data(), {batch.size, 1, f.n_mels, f.frames}).to(device);
    auto b = torch::from_blob(batch.view_b.data(), {batch.size, clips, f.n_mels, f.frames}).to(device);
    // Fresh draws per (seed, step, global sample index, view): any rank split and a resume agree.
    a = augment(a, state.step, int64_t{world.rank()} * local_batch, 0);
    b = augment(b, state.step, int64_t{world.rank()} * local_batch, 1);
    optimizer.zero_grad();
    StepLoss l;
    {  // autocast covers the forward; backward follows the dtypes it chose
      const Bf16Autocast autocast(o.bf16, device.type());
      l = forward_loss(model, loss_fn, a, b, comm.get());
    }
    l.backward.backward();
    reducer.finalize();
    if (o.clip_grad_norm > 0) torch::nn::utils::clip_grad_norm_(params, o.clip_grad_norm);
    optimizer.step();
    ++state.step;
    state.sampler = {batch.epoch, batch.index + 1};
    const double step_s = since(t0);
    // On GPUs the host only sees launches: the communicator reports the collectives' device time.
    const double device_comm_s = comm->take_device_seconds();
    const double comm_s = device_comm_s >= 0 ? device_comm_s : l.gather_s + reducer.last_timing().finalize_s;
    window_loss += l.global, window_wait += wait_s, window_comm += comm_s, window_time += step_s, ++window_n;
    for (const auto& [k, v] : l.diagnostics) window_diag[k] += v;
    if (world.is_root()) {
      nlohmann::json line{{"step", state.step}, {"epoch", batch.epoch}, {"loss", l.global}, {"lr", lr},
                          {"samples_per_s", o.batch_size / step_s}, {"step_s", step_s},
                          {"data_wait_s", wait_s}, {"comm_s", comm_s}};
      for (const auto& [k, v] : l.diagnostics) line[k] = v;
      metrics << line.dump() << "\n";
      metrics.flush();
      if (!metrics) MART_OUTPUT_ERROR("cannot write '", o.run, "/metrics.jsonl': ", std::strerror(errno), kOutputFix);
      if (state.step % o.log_every == 0 || state.step == total_steps) {
        // x real time: seconds of audio (one top clip per sample) per second of training.
        const double per_s = o.batch_size * window_n / window_time;
        auto mean = [&](const char* k) { return window_diag[k] / window_n; };
        spdlog::info("step {}/{} epoch {} loss {:.4f} lr {:.2e} {:.1f} samples/s = {:.0f}x real time "
                     "(data wait {:.0f} ms, comm {:.0f} ms per step); ETA {:.0f} s; top1 {:.3f} log_pw {:.2f} "
                     "pos/neg logit {:.2f}/{:.2f} align {:.3f} uniform {:.3f} eff_rank {:.1f}",
                     state.step, total_steps, batch.epoch, window_loss / window_n, lr, per_s,
                     per_s * static_cast<double>(f.clip_samples) / f.sample_rate, 1e3 * window_wait / window_n,
                     1e3 * window_comm / window_n, static_cast<double>(total_steps - state.step) * window_time / window_n,
                     mean("top1"), mean("log_pw"), mean("pos_logit"), mean("neg_logit"), mean("align"), mean("uniform"),
                     mean("eff_rank"));
      }
    }
    if (state.step % o.log_every == 0 || state.step == total_steps) {
      window_loss = window_wait = window_comm = window_time = 0;
      window_n = 0;
      window_diag.clear();
    }
    // Preemption: a signal on any rank stops every rank at this same step.
    if (world.any(preemption_requested())) {
      spdlog::warn("preemption signal: checkpointing at step {} and exiting with {}", state.step, app::kExitPreempted);
      checkpoint();
      return app::kExitPreempted;
    }
    if (o.checkpoint_every > 0 && state.step % o.checkpoint_every == 0 && state.step < total_steps) checkpoint();
  }
  checkpoint();
  if (world.is_root()) {
    model::export_state_dict(*model, o.run + "/model_state_dict.pt");
    spdlog::info("done: {} steps; checkpoint in {}, PyTorch state dict in {}/model_state_dict.pt", state.step,
                 checkpoint_dir(o.run, state.step), o.run);
    const std::string curves = app::plot("curves", o.run);
    if (!curves.empty()) spdlog::info("training curves: {}", curves);
  }
  return app::kExitOk;
}

}  // namespace mart::train
