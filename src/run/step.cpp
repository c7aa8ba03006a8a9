#include "mart/run/step.h"

#include <atomic>
#include <chrono>
#include <cmath>

#include "mart/core/clock.h"
#include "mart/dist/all_gather_with_grad.h"
#include "mart/run/autocast.h"

namespace mart::run {

namespace {
std::atomic<int64_t> g_read_backs{0};
}  // namespace

double read_back(const torch::Tensor& scalar) {
  ++g_read_backs;
  return scalar.item<double>();
}

torch::Tensor read_back_tensor(const torch::Tensor& t) {
  ++g_read_backs;
  return t.cpu();
}

int64_t read_backs() { return g_read_backs.load(); }

namespace {
torch::Tensor unit_rows(const torch::Tensor& x) {
  const auto r = x.detach().to(torch::kFloat64).reshape({x.size(0), -1});
  return torch::nn::functional::normalize(r, torch::nn::functional::NormalizeFuncOptions().dim(-1));
}
}  // namespace

double alignment(const torch::Tensor& x, const torch::Tensor& y) {
  return read_back((unit_rows(x) - unit_rows(y)).pow(2).sum(-1).mean());
}

double uniformity(const torch::Tensor& x) {
  const auto u = unit_rows(x);
  const int64_t b = u.size(0);
  if (b < 2) return 0.0;
  const auto d2 = (2.0 - 2.0 * torch::matmul(u, u.t())).clamp_min(0.0);  // ||u_b - u_c||^2
  const auto off = torch::eye(b, u.options()).logical_not();
  return std::log(read_back(torch::exp(-2.0 * d2.masked_select(off)).mean()));
}

double effective_rank(const torch::Tensor& x) {
  const auto s = at::linalg_svdvals(x.detach().to(torch::kFloat64).reshape({x.size(0), -1}));  // on the device
  const auto p = s / s.sum().clamp_min(1e-300);
  const auto nz = p.masked_select(p > 0);
  return std::exp(-read_back((nz * nz.log()).sum()));
}

torch::Tensor local_diagnostics(const model::MartOutputs& o) {
  torch::NoGradGuard no_grad;
  std::vector<double> v{alignment(o.b.hat[0], o.tilde0_a), uniformity(o.b.hat[0]), effective_rank(o.b.hat[0])};
  for (size_t n = 0; n < o.b.hat.size(); ++n) {
    const auto t = o.b.tilde[n].detach().to(torch::kFloat64);
    const auto inc = o.b.hat[n].detach().to(torch::kFloat64) - t;
    v.push_back(read_back((inc.norm(2, -1) / t.norm(2, -1).clamp_min(1e-12)).mean()));
  }
  return torch::tensor(v, torch::kFloat64);
}

namespace {
// Names the global sums: `sums` = [loss, LossStat..., local diagnostics...] over `ranks` ranks,
// already on the host (the callers read them back, once).
std::vector<std::pair<std::string, double>> name_diagnostics(const torch::Tensor& sums, int ranks, int levels) {
  const auto c = sums.contiguous();
  const double* s = c.data_ptr<double>() + 1;
  const double n = std::max(1.0, s[loss::kInstances]);
  std::vector<std::pair<std::string, double>> d{
      {"log_pw", s[loss::kLogPw] / n},
      {"pos_logit", s[loss::kPositiveLogit] / n},
      {"neg_logit", s[loss::kNegativeLogit] / std::max(1.0, s[loss::kNegatives])},
      {"top1", s[loss::kTop1] / n}};
  const double* l = s + loss::kLossStats;
  d.emplace_back("align", l[0] / ranks);
  d.emplace_back("uniform", l[1] / ranks);
  d.emplace_back("eff_rank", l[2] / ranks);
  for (int lv = 0; lv < levels; ++lv) d.emplace_back("incr" + std::to_string(lv), l[3 + lv] / ranks);
  return d;
}
}  // namespace

torch::Tensor full_precision(const torch::Tensor& t) {
  const auto type = t.scalar_type();
  return type == torch::kBFloat16 || type == torch::kHalf ? t.to(torch::kFloat32) : t;
}

StepLoss forward_loss(model::MartModel& model, const loss::HierarchicalContrastiveLoss& loss_fn,
                      const torch::Tensor& view_a, const torch::Tensor& view_b, dist::Communicator* comm,
                      const torch::Tensor& track, bool log_step) {
  StepLoss out;
  const model::MartOutputs o = model->forward(view_a, view_b);
  const int levels = static_cast<int>(o.z_hat.size());
  // Under bf16 autocast the head's outputs are bf16: the loss and the gathered negatives (with the
  // reduce-scatter of their gradients) run in float32, a B x 256 cast that keeps the global sums exact.
  const AutocastOff float32_loss;
  std::vector<torch::Tensor> z_hat;
  for (const auto& z : o.z_hat) z_hat.push_back(full_precision(z));
  const torch::Tensor z_tilde0 = full_precision(o.z_tilde0);
  if (!comm || comm->size() == 1) {
    const loss::LossOutput l = loss_fn(z_hat, z_tilde0, track);
    out.backward = l.loss;
    out.local = l.loss.detach().to(torch::kFloat64);
    if (!log_step) return out;
    const auto sums = read_back_tensor(torch::cat({out.local.reshape({1}), l.stats})).to(torch::kFloat64);
    out.global = sums[0].item<double>();
    out.diagnostics = name_diagnostics(torch::cat({sums, local_diagnostics(o)}), 1, levels);
    return out;
  }
  const auto t0 = std::chrono::steady_clock::now();
  // Every rank contrasts against the global batch; the gather's backward returns each rank the
  // gradient of its own rows, summed over every rank's loss.
  const torch::Tensor z_hat0 = z_hat[0].reshape({z_hat[0].size(0), -1});
  const torch::Tensor global_tilde0 = dist::all_gather_with_grad(z_tilde0.contiguous(), *comm);
  const torch::Tensor global_hat0 = dist::all_gather_with_grad(z_hat0.contiguous(), *comm);
  out.gather_s = seconds_since(t0);
  const int64_t offset = comm->rank() * z_tilde0.size(0);
  const torch::Tensor global_track = track.defined() ? comm->all_gather(track.to(comm->device())) : torch::Tensor();
  const loss::LossOutput l = loss_fn(z_hat, z_tilde0, global_tilde0, global_hat0, offset, global_track);
  // l.loss is this rank's share of the global mean; the global gradient is the SUM of the ranks'
  // gradients, and the reducer averages, so scale by K.
  out.backward = l.loss * static_cast<double>(comm->size());
  out.local = l.loss.detach().to(torch::kFloat64);
  if (!log_step) return out;
  // One all-reduce carries the loss and every diagnostic sum.
  torch::Tensor total = torch::cat({out.local.reshape({1}), l.stats.to(torch::kFloat64),
                                    local_diagnostics(o).to(l.stats.device())})
                            .contiguous();
  comm->all_reduce(total);
  const auto host = read_back_tensor(total);
  out.global = host[0].item<double>();
  out.diagnostics = name_diagnostics(host, comm->size(), levels);
  return out;
}

StepLoss forward_supervised(model::MartModel& model, const torch::Tensor& view_a, const torch::Tensor& view_b,
                            const torch::Tensor& label, dist::Communicator* comm, bool log_step) {
  StepLoss out;
  const model::MartOutputs o = model->forward(view_a, view_b);
  const AutocastOff float32_loss;
  const int64_t b = view_b.size(0);
  const auto logits_b = full_precision(o.z_hat[0]).reshape({b, -1}), logits_a = full_precision(o.z_tilde0);
  const auto y = label.to(logits_b.device());
  const auto sum = torch::nn::functional::CrossEntropyFuncOptions().reduction(torch::kSum);
  const auto ce = 0.5 * (torch::nn::functional::cross_entropy(logits_b, y, sum) +
                         torch::nn::functional::cross_entropy(logits_a, y, sum));
  const int ranks = comm ? comm->size() : 1;
  const double global_batch = static_cast<double>(b * ranks);  // every rank holds b items
  // The reducer averages over ranks: scale each rank's sum so the mean is the global batch's mean.
  out.backward = ce * (static_cast<double>(ranks) / global_batch);
  out.local = ce.detach().to(torch::kFloat64) / global_batch;
  if (!log_step) return out;
  torch::Tensor total;
  {
    torch::NoGradGuard no_grad;
    const auto correct = (std::get<1>(logits_b.max(1)) == y).to(torch::kFloat64).sum();
    total = torch::stack({ce.detach().to(torch::kFloat64), correct}).contiguous();
  }
  if (ranks > 1) comm->all_reduce(total);
  const auto t = read_back_tensor(total);
  out.global = t[0].item<double>() / global_batch;
  out.diagnostics = {{"top1", t[1].item<double>() / global_batch}};
  return out;
}

void freeze_batch_norm(torch::nn::Module& module) {
  for (auto& m : module.modules(/*include_self=*/false))
    if (m->as<torch::nn::BatchNorm2d>() || m->as<torch::nn::BatchNorm1d>()) m->eval();
}

double learning_rate(double base, int64_t step, int64_t total, int64_t warmup, bool cosine) {
  if (warmup > 0 && step < warmup) return base * static_cast<double>(step + 1) / static_cast<double>(warmup);
  if (!cosine || total <= warmup) return base;
  const double p = static_cast<double>(step - warmup) / static_cast<double>(std::max<int64_t>(1, total - warmup));
  return base * 0.5 * (1.0 + std::cos(M_PI * std::min(1.0, p)));
}

}  // namespace mart::run
