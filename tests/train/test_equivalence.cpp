// K ranks of batch b == one rank of batch K*b: the same loss, the same averaged gradients, the
// same parameters after several Adam steps (DESIGN.md section 2). Run under mpirun -np 2.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include "mart/dist/communicator.h"
#include "mart/dist/gradient_reducer.h"
#include "mart/dist/world.h"
#include "mart/run/step.h"
#include "mart/train/augment.h"

namespace {

using namespace mart;

struct Fixture {
  // Adam turns noise-level gradients into full-size steps, so the 5-step comparison runs in
  // float64; the first step is also checked in float32.
  explicit Fixture(torch::ScalarType dtype = torch::kFloat32) { torch::set_default_dtype(caffe2::TypeMeta::fromScalarType(dtype)); }
  ~Fixture() { torch::set_default_dtype(caffe2::TypeMeta::Make<float>()); }
  model::ModelOptions mo = [] {
    auto m = model::ModelOptions::small();
    m.levels = 3;
    m.n_mels = 16;
    m.frames = 16;
    return m;
  }();
  int argc = 0;
  char** argv = nullptr;
  dist::World world{&argc, &argv};
  std::unique_ptr<dist::Communicator> comm = dist::make_communicator(world, torch::kCPU);
  int64_t B = 8;  // global batch
  int64_t b() const { return B / world.size(); }
  // Features that match mo (hops 128, 64, 32 samples), for the fresh augmentation.
  features::FeatureConfig features = [this] {
    features::FeatureConfig f;
    f.levels = mo.levels;
    f.parts = mo.parts;
    f.n_mels = mo.n_mels;
    f.frames = mo.frames;
    f.clip_samples = 4 * 16 * 32;
    f.validate();
    return f;
  }();
  train::AugmentOptions augment_options = [] {
    train::AugmentOptions o;
    o.p_noise = 0.5;  // every effect shows up in a batch of 8
    return o;
  }();
  train::LogMelAugmenter augment{augment_options, features, 9};

  model::MartModel make_model() {
    torch::manual_seed(3);  // the same initialisation on every rank
    model::MartModel m(mo);
    m->train();
    // Running statistics: per-rank batch statistics would differ from the global batch's.
    run::freeze_batch_norm(*m);
    return m;
  }
  // The global batch of step `s`, identical on every rank.
  std::pair<torch::Tensor, torch::Tensor> batch(int s) {
    torch::manual_seed(100 + s);
    auto a = torch::randn({B, 1, mo.n_mels, mo.frames});
    auto v = torch::randn({B, mo.clips_total(), mo.n_mels, mo.frames});
    return {a, v};
  }
  torch::Tensor local(const torch::Tensor& t) { return t.narrow(0, world.rank() * b(), b()).contiguous(); }
};

std::vector<torch::Tensor> grads_of(model::MartModel& m) {
  std::vector<torch::Tensor> g;
  for (auto& p : m->parameters()) g.push_back(p.grad().defined() ? p.grad().clone() : torch::zeros_like(p));
  return g;
}

// The largest difference of a tensor, relative to that tensor's largest value. Some gradients
// (the bottom-up attention's query/key projections at initialisation) are ~1e-9, pure rounding
// noise in float32: for them the scale is floored at 1e-3 of the largest value of all tensors.
double max_rel_diff(const std::vector<torch::Tensor>& a, const std::vector<torch::Tensor>& b) {
  double global = 0, worst = 0;
  for (const auto& t : a) global = std::max(global, t.abs().max().item<double>());
  for (size_t i = 0; i < a.size(); ++i) {
    const double scale = std::max(a[i].abs().max().item<double>(), 1e-3 * global);
    worst = std::max(worst, (a[i] - b[i]).abs().max().item<double>() / scale);
  }
  return worst;
}

// With `augment`, the one rank augments the global batch (samples 0..B-1) and each rank its slice
// (samples rank * b ...), as the trainer does. With `pairing`, both views anchor the loss and
// same-track pairs are masked, the batch holding repeated tracks on both ranks (issue 26).
void check_equivalence(torch::ScalarType dtype, int steps, bool augment = false, bool pairing = false) {
  Fixture fx(dtype);
  ASSERT_EQ(fx.world.size(), 2);
  if (pairing) fx.mo.loss.anchors = "both", fx.mo.loss.same_track = "masked";
  const loss::HierarchicalContrastiveLoss loss_fn(fx.mo.loss_options());
  // Tracks of the global batch of 8: 0 and 1 repeat within and across the ranks' halves.
  const auto track = pairing ? torch::tensor({0, 1, 0, 2, 1, 3, 0, 4}, torch::kLong) : torch::Tensor();
  auto ref = fx.make_model();
  auto dis = fx.make_model();
  torch::optim::Adam opt_ref(ref->parameters(), torch::optim::AdamOptions(1e-3).weight_decay(1e-6));
  torch::optim::Adam opt_dis(dis->parameters(), torch::optim::AdamOptions(1e-3).weight_decay(1e-6));
  dist::ReducerOptions ro;
  ro.bucket_bytes = 4096;  // several buckets
  dist::GradientReducer reducer(dis->parameters(), *fx.comm, ro);
  for (int s = 0; s < steps; ++s) {
    auto [a, v] = fx.batch(s);
    auto la = fx.local(a), lv = fx.local(v);
    if (augment) {
      const int64_t first = fx.world.rank() * fx.b();
      la = fx.augment(la, s, first, 0), lv = fx.augment(lv, s, first, 1);
      a = fx.augment(a, s, 0, 0), v = fx.augment(v, s, 0, 1);
    }
    opt_ref.zero_grad();
    auto lr = run::forward_loss(ref, loss_fn, a, v, nullptr, track);  // one rank, the whole batch
    lr.backward.backward();
    opt_dis.zero_grad();
    auto ld = run::forward_loss(dis, loss_fn, la, lv, fx.comm.get(), pairing ? fx.local(track) : torch::Tensor());
    ld.backward.backward();
    reducer.finalize();
    if (s == 0) {
      EXPECT_NEAR(ld.global, lr.global, 1e-5 * std::abs(lr.global)) << "loss at the first step";
      EXPECT_LT(max_rel_diff(grads_of(dis), grads_of(ref)), 1e-4) << "averaged gradients at the first step";
    }
    opt_ref.step();
    opt_dis.step();
  }
  std::vector<torch::Tensor> pr, pd;
  for (auto& p : ref->parameters()) pr.push_back(p.detach());
  for (auto& p : dis->parameters()) pd.push_back(p.detach());
  if (dtype == torch::kFloat64) {
    EXPECT_LT(max_rel_diff(pd, pr), 1e-4) << "parameters after " << steps << " steps";
  }
}

TEST(Equivalence, Float32FirstStepLossAndGradients) { check_equivalence(torch::kFloat32, 1); }

TEST(Equivalence, Float64LossGradientsAndParametersAfterFiveAdamSteps) { check_equivalence(torch::kFloat64, 5); }

TEST(Equivalence, BothAnchorsAndMaskedTracksAfterFiveAdamSteps) { check_equivalence(torch::kFloat64, 5, false, true); }

// The supervised positive control: its loss is the cross-entropy of the classes averaged over
// both views and the global batch (checked against torch's mean cross-entropy on one rank), and
// two ranks give that loss and its gradients.
TEST(Equivalence, SupervisedObjectiveIsTheMeanCrossEntropyOnAnyRankCount) {
  Fixture fx(torch::kFloat64);
  ASSERT_EQ(fx.world.size(), 2);
  fx.mo.projection_dim = 5;  // five classes
  const auto label = torch::tensor({0, 4, 2, 2, 1, 3, 0, 4}, torch::kLong);
  auto ref = fx.make_model();
  auto dis = fx.make_model();
  dist::GradientReducer reducer(dis->parameters(), *fx.comm, dist::ReducerOptions{});
  const auto [a, v] = fx.batch(0);
  auto lr = run::forward_supervised(ref, a, v, label, nullptr);
  lr.backward.backward();
  {
    torch::NoGradGuard no_grad;
    const auto o = ref->forward(a, v);
    const double want = 0.5 * (torch::nn::functional::cross_entropy(o.z_hat[0].reshape({fx.B, -1}), label).item<double>() +
                               torch::nn::functional::cross_entropy(o.z_tilde0, label).item<double>());
    EXPECT_NEAR(lr.global, want, 1e-12);
  }
  auto ld = run::forward_supervised(dis, fx.local(a), fx.local(v), fx.local(label), fx.comm.get());
  ld.backward.backward();
  reducer.finalize();
  EXPECT_NEAR(ld.global, lr.global, 1e-12);
  EXPECT_LT(max_rel_diff(grads_of(dis), grads_of(ref)), 1e-9);
  ASSERT_EQ(ld.diagnostics.size(), 1u);
  EXPECT_EQ(ld.diagnostics[0].first, "top1");
  EXPECT_DOUBLE_EQ(ld.diagnostics[0].second, lr.diagnostics[0].second);
}

TEST(Equivalence, Float64WithFreshAugmentationAfterFiveAdamSteps) { check_equivalence(torch::kFloat64, 5, true); }

TEST(Equivalence, AugmentedSlicesOfTheRanksGatheredAreTheOneRankAugmentedBatch) {
  Fixture fx;
  for (int s = 0; s < 3; ++s) {
    auto [a, v] = fx.batch(s);
    const int64_t first = fx.world.rank() * fx.b();
    const auto ga = fx.comm->all_gather(fx.augment(fx.local(a), s, first, 0).contiguous());
    const auto gv = fx.comm->all_gather(fx.augment(fx.local(v), s, first, 1).contiguous());
    const auto wa = fx.augment(a, s, 0, 0), wv = fx.augment(v, s, 0, 1);
    EXPECT_TRUE(torch::equal(ga, wa)) << "view A, step " << s;
    EXPECT_TRUE(torch::equal(gv, wv)) << "view B, step " << s;
    EXPECT_FALSE(torch::equal(wv, v)) << "nothing was augmented";
  }
}

TEST(Equivalence, AGatherWhoseBackwardKeepsOnlyTheLocalSliceFails) {
  // The wrong backward: other ranks' rows enter the loss as constants, so the gradient of this
  // rank's embeddings through every other rank's negatives is lost.
  Fixture fx;
  const loss::HierarchicalContrastiveLoss loss_fn(fx.mo.loss_options());
  auto ref = fx.make_model();
  auto dis = fx.make_model();
  auto [a, v] = fx.batch(0);
  auto lr = run::forward_loss(ref, loss_fn, a, v, nullptr);
  lr.backward.backward();
  dist::GradientReducer reducer(dis->parameters(), *fx.comm, {});
  const auto o = dis->forward(fx.local(a), fx.local(v));
  auto gather_local_grad_only = [&](const torch::Tensor& x) {
    auto all = fx.comm->all_gather(x.detach().contiguous());
    auto parts = all.split(fx.b(), 0);
    std::vector<torch::Tensor> rows(parts.begin(), parts.end());
    rows[static_cast<size_t>(fx.world.rank())] = x;  // only the own slice keeps its graph
    return torch::cat(rows, 0);
  };
  const auto z0 = o.z_hat[0].reshape({fx.b(), -1});
  const auto l = loss_fn(o.z_hat, o.z_tilde0, gather_local_grad_only(o.z_tilde0), gather_local_grad_only(z0),
                         fx.world.rank() * fx.b());
  (l.loss * fx.world.size()).backward();
  reducer.finalize();
  EXPECT_GT(max_rel_diff(grads_of(dis), grads_of(ref)), 1e-2) << "the wrong backward went unnoticed";
}

}  // namespace
