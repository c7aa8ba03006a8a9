// mart-gpu-check: the C++ steps of scripts/gpu-check.sh (docs/dist.md, "First GPU run"). Each
// subcommand prints a human line and one JSON line ("result: {...}") the script collects, and
// exits 1 when its check fails.
//
//   step       one training step (forward, loss, backward, Adam) on --device against the CPU, in
//              float64: loss, gradients and updated weights must agree within --tol
//   comm       the communicator of --device on this job's ranks: every collective checked against
//              its sum, then all-reduce time by message size
//   throughput samples/s of training steps on synthetic input (--preset paper|demo|small, --batch,
//              --bf16, --channels-last, --overlap: all-reduce during backward or after it,
//              --warmup, --steps, --repeats: the median of the timed blocks)
//   losses     two metrics.jsonl of mart-train (fp32 and bf16 runs): mean loss of the last --last
//              steps of each, and their relative difference against --tol
#include <sys/resource.h>
#include <torch/torch.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "mart/core/error.h"
#include "mart/dist/communicator.h"
#include "mart/dist/gradient_reducer.h"
#include "mart/dist/world.h"
#include "mart/loss/hierarchical_contrastive_loss.h"
#include "mart/model/mart_model.h"
#include "mart/run/adam.h"
#include "mart/run/autocast.h"
#include "mart/run/step.h"

namespace {

using namespace mart;
using json = nlohmann::json;
using Clock = std::chrono::steady_clock;

struct Args {
  std::string command;
  std::map<std::string, std::string> kv;
  std::string get(const std::string& k, const std::string& fallback) const {
    auto it = kv.find(k);
    return it == kv.end() ? fallback : it->second;
  }
  int i(const std::string& k, int fallback) const {
    auto it = kv.find(k);
    return it == kv.end() ? fallback : std::stoi(it->second);
  }
  double d(const std::string& k, double fallback) const {  // not through to_string: it prints 1e-7 as 0.000000
    auto it = kv.find(k);
    return it == kv.end() ? fallback : std::stod(it->second);
  }
};

Args parse(int argc, char** argv) {
  Args a;
  if (argc < 2) MART_CONFIG_ERROR("usage: mart-gpu-check step|comm|throughput|losses [--key value ...]");
  a.command = argv[1];
  for (int i = 2; i < argc; ++i) {
    std::string k = argv[i];
    if (k.rfind("--", 0) != 0 || i + 1 >= argc) MART_CONFIG_ERROR("expected --key value, got '", k, "'");
    a.kv[k.substr(2)] = argv[++i];
  }
  return a;
}

torch::Device device_of(const Args& a) {
  const std::string d = a.get("device", "cuda");
  if (d == "cuda" && !torch::cuda::is_available())
    MART_CONFIG_ERROR("--device cuda but this LibTorch sees no GPU (a CPU build of LibTorch, or no GPU visible): "
                      "build against the CUDA LibTorch of the node's PyTorch, or run scripts/gpu-check.sh --cpu");
  return d == "cuda" ? torch::Device(torch::kCUDA, 0) : torch::Device(torch::kCPU);
}

model::ModelOptions preset(const std::string& name) {
  if (name == "paper") return model::ModelOptions{};
  if (name == "small") {
    auto m = model::ModelOptions::small();
    m.levels = 3;
    return m;
  }
  if (name == "demo") {  // configs/pretrain-demo.ini with configs/preprocess-demo.ini's features
    auto m = model::ModelOptions{};
    m.levels = 3, m.n_mels = 64, m.frames = 32, m.fcn_channels = {16, 16, 32, 32, 32, 32, 64}, m.dim = 64;
    m.heads = 3, m.head_dim = 16, m.ff_dim = 128, m.projection_dim = 32;
    return m;
  }
  MART_CONFIG_ERROR("--preset must be paper, demo or small, got '", name, "'");
}

void result(const std::string& check, bool ok, json fields) {
  fields["check"] = check;
  fields["ok"] = ok;
  std::cout << "result: " << fields.dump() << std::endl;
}

// Largest |a - b| over the largest |b| of the tensor, that scale floored at `floor`.
double rel_diff(const torch::Tensor& a, const torch::Tensor& b, double floor) {
  const auto bc = b.to(torch::kCPU), ac = a.to(torch::kCPU);
  const double scale = std::max(bc.abs().max().item<double>(), floor);
  return (ac - bc).abs().max().item<double>() / scale;
}
double max_abs(const torch::Tensor& t) { return t.abs().max().item<double>(); }

// ---- step: CUDA against CPU in float64 ---------------------------------------------------------

int check_step(const Args& a) {
  const torch::Device dev = device_of(a);
  const auto mo = preset(a.get("preset", "small"));
  const int64_t batch = a.i("batch", 4);
  const double tol = a.d("tol", 1e-7);
  torch::set_default_dtype(caffe2::TypeMeta::Make<double>());
  torch::manual_seed(1);
  model::MartModel ref(mo), moved(mo);
  {  // the same weights in both, then one of them moves
    torch::NoGradGuard no_grad;
    auto src = ref->parameters(), dst = moved->parameters();
    for (size_t i = 0; i < src.size(); ++i) dst[i].copy_(src[i]);
    auto sb = ref->buffers(), db = moved->buffers();
    for (size_t i = 0; i < sb.size(); ++i) db[i].copy_(sb[i]);
  }
  moved->to(dev);
  const auto va = torch::randn({batch, 1, mo.n_mels, mo.frames});
  const auto vb = torch::randn({batch, mo.clips_total(), mo.n_mels, mo.frames});
  const loss::HierarchicalContrastiveLoss loss_fn(mo.loss_options());
  auto one_step = [&](model::MartModel& m, const torch::Device& d) {
    m->train();
    torch::optim::Adam opt(m->parameters(), torch::optim::AdamOptions(1e-3));
    opt.zero_grad();
    auto l = run::forward_loss(m, loss_fn, va.to(d), vb.to(d), nullptr);
    l.backward.backward();
    std::vector<torch::Tensor> grads;
    for (auto& p : m->parameters()) grads.push_back(p.grad().clone());
    opt.step();
    return std::make_pair(l.global, grads);
  };
  const auto t0 = Clock::now();
  const auto [loss_ref, g_ref] = one_step(ref, torch::kCPU);
  const auto [loss_dev, g_dev] = one_step(moved, dev);
  const double secs = std::chrono::duration<double>(Clock::now() - t0).count();
  // Some gradients are rounding noise (~1e-18: the single-key attention of the top-down unit has
  // none): they compare against a scale floored at 1e-6 of the largest gradient, and Adam, which
  // turns noise into full-size steps of either sign, is judged only on the other tensors.
  double largest = 0;
  for (const auto& g : g_ref) largest = std::max(largest, max_abs(g));
  double worst_grad = 0, worst_weight = 0;
  int noise = 0;
  const auto p_ref = ref->parameters(), p_dev = moved->parameters();
  for (size_t i = 0; i < g_ref.size(); ++i) {
    worst_grad = std::max(worst_grad, rel_diff(g_dev[i], g_ref[i], 1e-6 * largest));
    if (max_abs(g_ref[i]) < 1e-6 * largest) {
      ++noise;
      continue;
    }
    worst_weight = std::max(worst_weight, rel_diff(p_dev[i], p_ref[i], 1e-12));
  }
  const double loss_rel = std::abs(loss_dev - loss_ref) / std::max(std::abs(loss_ref), 1e-12);
  const bool ok = loss_rel <= tol && worst_grad <= tol && worst_weight <= tol;
  std::printf("step float64 %s vs cpu (%s, batch %lld): loss %.12f vs %.12f (rel %.2e), worst gradient %.2e, "
              "worst weight after Adam %.2e (%d noise-gradient tensors skipped), tolerance %.0e: %s (%.1f s)\n",
              dev.str().c_str(), a.get("preset", "small").c_str(), static_cast<long long>(batch), loss_dev, loss_ref,
              loss_rel, worst_grad, worst_weight, noise, tol, ok ? "ok" : "FAILED", secs);
  result("step_float64", ok, {{"device", dev.str()}, {"loss_rel", loss_rel}, {"grad_rel", worst_grad},
                              {"weight_rel", worst_weight}, {"noise_tensors", noise}, {"tol", tol}});
  return ok ? 0 : 1;
}

// ---- comm: every collective, then all-reduce timing --------------------------------------------

int check_comm(int argc, char** argv, const Args& a) {
  dist::World world(&argc, &argv);
  const torch::Device dev = device_of(a);
  auto comm = dist::make_communicator(world, dev);
  const int K = comm->size(), r = comm->rank();
  const auto opts = torch::TensorOptions().dtype(torch::kFloat32).device(comm->device());
  std::vector<std::string> failed;
  auto expect = [&](const char* what, const torch::Tensor& got, const torch::Tensor& want) {
    if (!got.sizes().equals(want.sizes()) || !torch::allclose(got.cpu(), want.cpu(), 1e-6, 1e-6)) failed.push_back(what);
  };
  // Rank r holds (r + 1) * [1, 2, ..., n]: every result has a closed form.
  const auto base = torch::arange(1, 9, opts);
  const double tri = K * (K + 1) / 2.0;
  {
    auto t = base * (r + 1);
    comm->all_reduce(t);
    expect("all_reduce", t, base * tri);
  }
  {
    auto t = base * (r + 1);
    auto work = comm->all_reduce_async(t);
    work->wait();
    expect("all_reduce_async", t, base * tri);
  }
  if (comm->backend() == dist::Backend::kNccl) {  // MPI has no bf16 sum
    auto t = (base * (r + 1)).to(torch::kBFloat16);
    comm->all_reduce(t);
    expect("all_reduce bf16", t.to(torch::kFloat32), base * tri);
  }
  {
    const auto g = comm->all_gather((base * (r + 1)).reshape({2, 4}));
    std::vector<torch::Tensor> want;
    for (int k = 0; k < K; ++k) want.push_back((base * (k + 1)).reshape({2, 4}));
    expect("all_gather", g, torch::cat(want, 0));
  }
  {
    const auto g = comm->all_gather_v(torch::full({r + 1, 3}, static_cast<float>(r), opts));
    std::vector<torch::Tensor> want;
    for (int k = 0; k < K; ++k) want.push_back(torch::full({k + 1, 3}, static_cast<float>(k), opts));
    expect("all_gather_v", g, torch::cat(want, 0));
  }
  {
    const auto s = comm->reduce_scatter(torch::arange(0, 2 * K, opts).reshape({K, 2}) * (r + 1));
    expect("reduce_scatter", s, torch::arange(2 * r, 2 * r + 2, opts).reshape({1, 2}) * tri);
  }
  {
    auto t = r == 0 ? base.clone() : torch::zeros_like(base);
    comm->broadcast(t, 0);
    expect("broadcast", t, base);
  }
  comm->barrier();
  const double device_s = comm->take_device_seconds();
  const bool ok = failed.empty();
  // All-reduce time by size (float32), after a warm-up.
  json sizes = json::array();
  for (const int64_t mb : {1, 16, 64}) {
    auto t = torch::ones({mb * (1 << 20) / 4}, opts);
    comm->all_reduce(t);
    const int reps = 10;
    comm->barrier();
    const auto t0 = Clock::now();
    for (int i = 0; i < reps; ++i) comm->all_reduce(t);
    (void)t.sum().item<float>();  // the host waits for the device
    const double ms = 1e3 * std::chrono::duration<double>(Clock::now() - t0).count() / reps;
    sizes.push_back({{"mb", mb}, {"ms", ms}});
    if (r == 0) std::printf("  all_reduce %3lld MB: %.3f ms\n", static_cast<long long>(mb), ms);
  }
  if (r == 0) {
    std::string bad;
    for (const auto& f : failed) bad += " " + f;
    std::printf("comm %s on %d rank(s): all_reduce, all_reduce_async,%s all_gather, all_gather_v, reduce_scatter, "
                "broadcast, barrier: %s%s",
                dist::backend_name(comm->backend()), K,
                comm->backend() == dist::Backend::kNccl ? " bf16 all_reduce," : "", ok ? "ok" : "FAILED:", bad.c_str());
    if (device_s >= 0) std::printf(" (device time of the checks %.3f ms)", device_s * 1e3);
    std::printf("\n");
    result("comm", ok, {{"backend", dist::backend_name(comm->backend())}, {"ranks", K}, {"failed", failed},
                        {"all_reduce", sizes}});
  }
  return ok ? 0 : 1;
}

// ---- throughput: training steps on synthetic input ---------------------------------------------

double peak_rss_mib() {  // this process's peak resident memory (the CPU's "peak memory")
  struct rusage u {};
  getrusage(RUSAGE_SELF, &u);
  return static_cast<double>(u.ru_maxrss) / 1024.0;
}

// As mart-train steps: the multi-tensor Adam, cuDNN's benchmark mode, channels-last on request,
// no host read inside a step. Timed in --repeats blocks of --steps steps, each block ended by one
// read of a weight (the host waits for the queue); the median block gives ms/step.
int check_throughput(int argc, char** argv, const Args& a) {
  dist::World world(&argc, &argv);
  const torch::Device dev = device_of(a);
  auto comm = dist::make_communicator(world, dev);
  const auto mo = preset(a.get("preset", "paper"));
  const int64_t batch = a.i("batch", 48);
  const bool bf16 = a.i("bf16", 0) != 0, overlap = a.i("overlap", 1) != 0, channels_last = a.i("channels-last", 0) != 0;
  const int steps = a.i("steps", 10), warmup = a.i("warmup", 2), repeats = a.i("repeats", 1);
  const int64_t local = batch / comm->size();
  MART_CHECK(local * comm->size() == batch, "--batch must split evenly over the ranks");
  if (dev.is_cuda()) at::globalContext().setBenchmarkCuDNN(true);
  torch::manual_seed(1);
  model::MartModel model(mo);
  model->to(comm->device());
  model->use_channels_last(channels_last);
  model->train();
  dist::broadcast_parameters(*model, *comm);
  std::vector<torch::Tensor> params = model->parameters();
  dist::ReducerOptions ro;
  ro.overlap = overlap;
  dist::GradientReducer reducer(params, *comm, ro);
  run::ForeachAdam opt(params, torch::optim::AdamOptions(3e-4));
  const loss::HierarchicalContrastiveLoss loss_fn(mo.loss_options());
  const auto va = torch::randn({local, 1, mo.n_mels, mo.frames}).to(comm->device());
  const auto vb = torch::randn({local, mo.clips_total(), mo.n_mels, mo.frames}).to(comm->device());
  run::StepLoss l;
  double comm_s = 0;
  auto step = [&](bool last) {
    opt.zero_grad();
    {
      const run::Bf16Autocast autocast(bf16, comm->device().type());
      l = run::forward_loss(model, loss_fn, va, vb, comm.get(), {}, last);
    }
    l.backward.backward();
    reducer.finalize();
    opt.step();
    const double c = comm->take_device_seconds();
    comm_s += c >= 0 ? c : l.gather_s + reducer.last_timing().finalize_s;
  };
  for (int s = 0; s < warmup; ++s) step(false);
  (void)params.front().sum().item<float>();
  std::vector<double> per_step;
  comm_s = 0;
  for (int r = 0; r < repeats; ++r) {
    const auto t0 = Clock::now();
    for (int s = 0; s < steps; ++s) step(r + 1 == repeats && s + 1 == steps);  // the loss of the last step
    (void)params.front().sum().item<float>();  // the host waits for the block's last kernels
    per_step.push_back(std::chrono::duration<double>(Clock::now() - t0).count() / steps);
  }
  std::sort(per_step.begin(), per_step.end());
  const double step_s = per_step[per_step.size() / 2], sps = static_cast<double>(batch) / step_s;
  const double loss = l.global, comm_ms = 1e3 * comm_s / (repeats * steps);
  if (comm->rank() == 0) {
    std::printf("throughput %s %s batch %lld on %d rank(s), %s%s, overlap %s: %.1f samples/s (%.1f ms/step, comm %.1f "
                "ms/step), loss %.4f\n",
                dev.str().c_str(), a.get("preset", "paper").c_str(), static_cast<long long>(batch), comm->size(),
                bf16 ? "bf16" : "fp32", channels_last ? ", channels-last" : "", overlap ? "on" : "off", sps, 1e3 * step_s,
                comm_ms, loss);
    result("throughput", std::isfinite(loss),
           {{"device", dev.str()}, {"preset", a.get("preset", "paper")}, {"batch", batch}, {"ranks", comm->size()},
            {"bf16", bf16}, {"channels_last", channels_last}, {"overlap", overlap}, {"samples_per_s", sps},
            {"step_ms", 1e3 * step_s}, {"comm_ms", comm_ms}, {"loss", loss}, {"peak_rss_mib", peak_rss_mib()}});
  }
  return std::isfinite(loss) ? 0 : 1;
}

// ---- losses: fp32 against bf16 training runs ---------------------------------------------------

std::vector<double> read_losses(const std::string& path) {
  std::ifstream in(path);
  MART_CHECK(in, "cannot read ", path, ": did that mart-train run finish?");
  std::vector<double> out;
  for (std::string line; std::getline(in, line);)
    if (!line.empty()) out.push_back(json::parse(line).at("loss").get<double>());
  MART_CHECK(!out.empty(), path, " holds no steps");
  return out;
}

int check_losses(const Args& a) {
  const auto fp32 = read_losses(a.get("fp32", "")), bf16 = read_losses(a.get("bf16", ""));
  const size_t last = static_cast<size_t>(a.i("last", 20));
  const double tol = a.d("tol", 0.05);
  auto tail_mean = [&](const std::vector<double>& v) {
    const size_t n = std::min(last, v.size());
    double s = 0;
    for (size_t i = v.size() - n; i < v.size(); ++i) s += v[i];
    return s / static_cast<double>(n);
  };
  const double m32 = tail_mean(fp32), m16 = tail_mean(bf16);
  const double rel = std::abs(m16 - m32) / std::abs(m32);
  const bool ok = fp32.size() == bf16.size() && std::isfinite(m16) && rel <= tol;
  std::printf("losses over %zu steps: first %.4f / %.4f, mean of the last %zu: fp32 %.4f, bf16 %.4f (rel %.3f, "
              "tolerance %.2f): %s\n",
              fp32.size(), fp32.front(), bf16.front(), std::min(last, fp32.size()), m32, m16, rel, tol,
              ok ? "ok" : "FAILED");
  result("bf16_vs_fp32_loss", ok, {{"steps", fp32.size()}, {"fp32", m32}, {"bf16", m16}, {"rel", rel}, {"tol", tol}});
  return ok ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    const Args a = parse(argc, argv);
    torch::set_num_threads(a.i("threads", static_cast<int>(torch::get_num_threads())));
    if (a.command == "step") return check_step(a);
    if (a.command == "comm") return check_comm(argc, argv, a);
    if (a.command == "throughput") return check_throughput(argc, argv, a);
    if (a.command == "losses") return check_losses(a);
    MART_CONFIG_ERROR("unknown check '", a.command, "': step, comm, throughput or losses");
  } catch (const std::exception& e) {
    std::fprintf(stderr, "mart-gpu-check: %s\n", e.what());
    return 2;
  }
}
