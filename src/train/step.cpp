#include "mart/train/step.h"

#include <chrono>
#include <cmath>

#include "mart/dist/all_gather_with_grad.h"
#include "mart/train/autocast.h"

namespace mart::train {

torch::Tensor full_precision(const torch::Tensor& t) {
  const auto type = t.scalar_type();
  return type == torch::kBFloat16 || type == torch::kHalf ? t.to(torch::kFloat32) : t;
}

StepLoss forward_loss(model::MartModel& model, const loss::HierarchicalContrastiveLoss& loss_fn,
                      const torch::Tensor& view_a, const torch::Tensor& view_b, dist::Communicator* comm) {
  StepLoss out;
  const model::MartOutputs o = model->forward(view_a, view_b);
  // Under bf16 autocast the head's outputs are bf16: the loss and the gathered negatives (with the
  // reduce-scatter of their gradients) run in float32, a B x 256 cast that keeps the global sums exact.
  const AutocastOff float32_loss;
  std::vector<torch::Tensor> z_hat;
  for (const auto& z : o.z_hat) z_hat.push_back(full_precision(z));
  const torch::Tensor z_tilde0 = full_precision(o.z_tilde0);
  if (!comm || comm->size() == 1) {
    const loss::LossOutput l = loss_fn(z_hat, z_tilde0);
    out.backward = l.loss;
    out.global = l.loss.item<double>();
    return out;
  }
  const auto t0 = std::chrono::steady_clock::now();
  // Every rank contrasts against the global batch; the gather's backward returns each rank the
  // gradient of its own rows, summed over every rank's loss.
  const torch::Tensor z_hat0 = z_hat[0].reshape({z_hat[0].size(0), -1});
  const torch::Tensor global_tilde0 = dist::all_gather_with_grad(z_tilde0.contiguous(), *comm);
  const torch::Tensor global_hat0 = dist::all_gather_with_grad(z_hat0.contiguous(), *comm);
  out.gather_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  const int64_t offset = comm->rank() * z_tilde0.size(0);
  const loss::LossOutput l = loss_fn(z_hat, z_tilde0, global_tilde0, global_hat0, offset);
  // l.loss is this rank's share of the global mean; the global gradient is the SUM of the ranks'
  // gradients, and the reducer averages, so scale by K.
  out.backward = l.loss * static_cast<double>(comm->size());
  torch::Tensor total = l.loss.detach().clone().reshape({1}).to(torch::kFloat64).contiguous();
  comm->all_reduce(total);
  out.global = total.item<double>();
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

}  // namespace mart::train
