// bf16 autocast (issue 16, defects 8-9): the scope helper switches autocast on and back, and under
// it the training step gathers its negatives, and reduce-scatters their gradients, in float32.
// Run under mpirun -np 2, on the CPU (the same code path as CUDA's autocast).
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>
#include <vector>

#include "mart/dist/communicator.h"
#include "mart/dist/world.h"
#include "mart/run/autocast.h"
#include "mart/run/step.h"

namespace {

using namespace mart;

TEST(Autocast, Bf16ScopeSwitchesOnAndRestores) {
  torch::nn::Linear fc(4, 3);
  const auto x = torch::randn({2, 4});
  ASSERT_FALSE(run::autocast_enabled(torch::kCPU));
  {
    const run::Bf16Autocast on(true, torch::kCPU);
    EXPECT_TRUE(run::autocast_enabled(torch::kCPU));
    EXPECT_EQ(fc(x).scalar_type(), torch::kBFloat16);
    {
      const run::AutocastOff off;
      EXPECT_FALSE(run::autocast_enabled(torch::kCPU));
      EXPECT_EQ(fc(x).scalar_type(), torch::kFloat32);
    }
    EXPECT_TRUE(run::autocast_enabled(torch::kCPU));
  }
  EXPECT_FALSE(run::autocast_enabled(torch::kCPU));
  EXPECT_EQ(fc(x).scalar_type(), torch::kFloat32);
  {
    const run::Bf16Autocast disabled(false, torch::kCPU);
    EXPECT_FALSE(run::autocast_enabled(torch::kCPU));
  }
}

TEST(Autocast, FullPrecisionKeepsFloat32AndFloat64) {
  EXPECT_EQ(run::full_precision(torch::ones({2}, torch::kBFloat16)).scalar_type(), torch::kFloat32);
  EXPECT_EQ(run::full_precision(torch::ones({2}, torch::kHalf)).scalar_type(), torch::kFloat32);
  EXPECT_EQ(run::full_precision(torch::ones({2}, torch::kFloat64)).scalar_type(), torch::kFloat64);
}

// Forwards to a real communicator and notes the dtype of every gather and reduce-scatter.
class Recording final : public dist::Communicator {
 public:
  explicit Recording(dist::Communicator& c) : c_(c) {}
  dist::Backend backend() const override { return c_.backend(); }
  int rank() const override { return c_.rank(); }
  int size() const override { return c_.size(); }
  torch::Device device() const override { return c_.device(); }
  void all_reduce(torch::Tensor& t) override { c_.all_reduce(t); }
  std::unique_ptr<dist::Work> all_reduce_async(torch::Tensor& t) override { return c_.all_reduce_async(t); }
  torch::Tensor all_gather(const torch::Tensor& t) override {
    gathered.push_back(t.scalar_type());
    return c_.all_gather(t);
  }
  torch::Tensor all_gather_v(const torch::Tensor& t) override { return c_.all_gather_v(t); }
  torch::Tensor reduce_scatter(const torch::Tensor& t) override {
    scattered.push_back(t.scalar_type());
    return c_.reduce_scatter(t);
  }
  void broadcast(torch::Tensor& t, int root) override { c_.broadcast(t, root); }
  void barrier() override { c_.barrier(); }
  std::vector<torch::ScalarType> gathered, scattered;

 private:
  dist::Communicator& c_;
};

TEST(Autocast, TheStepGathersAndScattersInFloat32) {
  int argc = 0;
  char** argv = nullptr;
  dist::World world(&argc, &argv);
  auto mpi = dist::make_communicator(world, torch::kCPU);
  ASSERT_EQ(mpi->size(), 2);
  Recording comm(*mpi);
  auto mo = model::ModelOptions::small();
  mo.levels = 2;
  mo.n_mels = 16;
  mo.frames = 16;
  mo.use_pwt = false;  // LibTorch 1.13's CPU layer_norm takes no bf16 input under autocast (CUDA's does)
  torch::manual_seed(3);
  model::MartModel model(mo);
  const loss::HierarchicalContrastiveLoss loss_fn(mo.loss_options());
  torch::manual_seed(10 + world.rank());
  const auto a = torch::randn({2, 1, mo.n_mels, mo.frames});
  const auto b = torch::randn({2, mo.clips_total(), mo.n_mels, mo.frames});
  run::StepLoss l;
  // oneDNN has no bf16 convolution below AVX-512 ("could not create a primitive descriptor
  // iterator" under ONEDNN_MAX_CPU_ISA=AVX2, tests/portability.sh): ATen's own kernels run bf16 on
  // any x86-64 CPU. mart-train's bf16 is CUDA-only; this test checks the step's dtypes.
  const bool mkldnn = at::globalContext().userEnabledMkldnn();
  at::globalContext().setUserEnabledMkldnn(false);
  {
    const run::Bf16Autocast autocast(true, torch::kCPU);
    // The premise: under autocast the head's outputs are bf16.
    EXPECT_EQ(model->forward(a, b).z_tilde0.scalar_type(), torch::kBFloat16);
    l = run::forward_loss(model, loss_fn, a, b, &comm);
  }
  l.backward.backward();
  at::globalContext().setUserEnabledMkldnn(mkldnn);
  ASSERT_EQ(comm.gathered.size(), 2u);  // s~^0 and s^^0
  ASSERT_EQ(comm.scattered.size(), 2u);  // their gradients
  for (auto t : comm.gathered) EXPECT_EQ(t, torch::kFloat32);
  for (auto t : comm.scattered) EXPECT_EQ(t, torch::kFloat32);
  EXPECT_EQ(l.backward.scalar_type(), torch::kFloat32);
  EXPECT_TRUE(std::isfinite(l.global));
  // The loss is the global batch's on every rank.
  auto both = torch::tensor({l.global}, torch::kFloat64);
  mpi->all_reduce(both);
  EXPECT_DOUBLE_EQ(both.item<double>(), 2 * l.global);
}

}  // namespace
