// run::ForeachAdam (issue 27: a few multi-tensor kernels per step instead of ~10 per parameter)
// against torch::optim::Adam: the same weights after 5 steps of the small MART with weight decay,
// and the same after 3 steps, a save of the optimizer, a load into a fresh one and 2 more steps.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <sstream>

#include "mart/run/adam.h"
#include "mart/run/step.h"

namespace {

using namespace mart;

model::ModelOptions options() {
  auto m = model::ModelOptions::small();
  m.levels = 3;
  m.n_mels = 16;
  m.frames = 16;
  return m;
}

model::MartModel fresh_model() {
  torch::manual_seed(3);
  model::MartModel m(options());
  m->train();
  run::freeze_batch_norm(*m);  // the comparison is of the optimizers, not of batch statistics
  return m;
}

// One step on the batch of step `s` (the same for every model).
void train_step(model::MartModel& m, torch::optim::Optimizer& opt, int s) {
  const auto mo = options();
  torch::manual_seed(100 + s);
  const auto a = torch::randn({4, 1, mo.n_mels, mo.frames}), b = torch::randn({4, mo.clips_total(), mo.n_mels, mo.frames});
  const loss::HierarchicalContrastiveLoss loss_fn(mo.loss_options());
  opt.zero_grad();
  run::forward_loss(m, loss_fn, a, b, nullptr, {}, false).backward.backward();
  opt.step();
}

double max_rel_diff(model::MartModel& a, model::MartModel& b) {
  double worst = 0;
  const auto pa = a->parameters(), pb = b->parameters();
  for (size_t i = 0; i < pa.size(); ++i)
    worst = std::max(worst, ((pa[i] - pb[i]).abs().max() / pa[i].abs().max().clamp_min(1e-12)).item<double>());
  return worst;
}

const auto kOptions = torch::optim::AdamOptions(1e-3).weight_decay(1e-4);

TEST(ForeachAdam, GivesTorchAdamsWeightsAfterFiveSteps) {
  auto ref = fresh_model(), mine = fresh_model();
  torch::optim::Adam ref_opt(ref->parameters(), kOptions);
  run::ForeachAdam my_opt(mine->parameters(), kOptions);
  for (int s = 0; s < 5; ++s) train_step(ref, ref_opt, s), train_step(mine, my_opt, s);
  EXPECT_LT(max_rel_diff(ref, mine), 1e-6);
  // It moved: a broken update that left the weights alone would also "agree".
  auto untouched = fresh_model();
  EXPECT_GT(max_rel_diff(ref, untouched), 1e-4);
}

TEST(ForeachAdam, ResumesFromASavedStateAsTorchAdamDoes) {
  auto ref = fresh_model();
  torch::optim::Adam ref_opt(ref->parameters(), kOptions);
  for (int s = 0; s < 5; ++s) train_step(ref, ref_opt, s);
  // Three steps, the optimizer saved, a new model and optimizer loaded from the same point.
  auto first = fresh_model();
  run::ForeachAdam first_opt(first->parameters(), kOptions);
  for (int s = 0; s < 3; ++s) train_step(first, first_opt, s);
  std::stringstream saved;
  {
    torch::serialize::OutputArchive archive;
    first_opt.save(archive);
    archive.save_to(saved);
  }
  auto second = fresh_model();
  {
    torch::NoGradGuard no_grad;
    for (size_t i = 0; i < first->parameters().size(); ++i) second->parameters()[i].copy_(first->parameters()[i]);
  }
  run::ForeachAdam second_opt(second->parameters(), kOptions);
  torch::serialize::InputArchive archive;
  archive.load_from(saved);
  second_opt.load(archive);
  for (int s = 3; s < 5; ++s) train_step(second, second_opt, s);
  EXPECT_LT(max_rel_diff(ref, second), 1e-6);
}

}  // namespace
