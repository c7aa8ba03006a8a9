#include "mart/run/adam.h"

#include <cmath>
#include <map>
#include <string>
#include <vector>

#include "mart/core/error.h"

namespace mart::run {

torch::Tensor ForeachAdam::step(LossClosure closure) {
  torch::NoGradGuard no_grad;
  torch::Tensor loss;
  if (closure != nullptr) {
    at::AutoGradMode enable_grad(true);
    loss = closure();
  }
  for (auto& group : param_groups_) {
    auto& options = static_cast<torch::optim::AdamOptions&>(group.options());
    MART_CHECK(!options.amsgrad(), "ForeachAdam does not implement amsgrad");
    // Parameters grouped by their step count (one group in practice): the bias corrections are
    // per step.
    struct Lists {
      std::vector<torch::Tensor> params, grads, exp_avg, exp_avg_sq;
    };
    std::map<int64_t, Lists> by_step;
    for (auto& p : group.params()) {
      if (!p.grad().defined()) continue;
      MART_CHECK(!p.grad().is_sparse(), "Adam does not support sparse gradients");
      const std::string key = c10::guts::to_string(p.unsafeGetTensorImpl());
      auto it = state_.find(key);
      if (it == state_.end()) {  // as torch::optim::Adam initialises its state
        auto state = std::make_unique<torch::optim::AdamParamState>();
        state->step(0);
        state->exp_avg(torch::zeros_like(p, torch::MemoryFormat::Preserve));
        state->exp_avg_sq(torch::zeros_like(p, torch::MemoryFormat::Preserve));
        it = state_.emplace(key, std::move(state)).first;
      }
      auto& state = static_cast<torch::optim::AdamParamState&>(*it->second);
      state.step(state.step() + 1);
      Lists& l = by_step[state.step()];
      l.params.push_back(p);
      l.grads.push_back(p.grad());
      l.exp_avg.push_back(state.exp_avg());
      l.exp_avg_sq.push_back(state.exp_avg_sq());
    }
    const double beta1 = std::get<0>(options.betas()), beta2 = std::get<1>(options.betas());
    for (auto& [step, l] : by_step) {
      const double bias_correction1 = 1 - std::pow(beta1, static_cast<double>(step));
      const double bias_correction2 = 1 - std::pow(beta2, static_cast<double>(step));
      const auto grads = options.weight_decay() != 0 ? at::_foreach_add(l.grads, l.params, options.weight_decay()) : l.grads;
      at::_foreach_mul_(l.exp_avg, beta1);
      at::_foreach_add_(l.exp_avg, grads, 1 - beta1);
      at::_foreach_mul_(l.exp_avg_sq, beta2);
      at::_foreach_addcmul_(l.exp_avg_sq, grads, grads, 1 - beta2);
      auto denom = at::_foreach_sqrt(l.exp_avg_sq);
      at::_foreach_div_(denom, std::sqrt(bias_correction2));
      at::_foreach_add_(denom, options.eps());
      at::_foreach_addcdiv_(l.params, l.exp_avg, denom, -options.lr() / bias_correction1);
    }
  }
  return loss;
}

}  // namespace mart::run
