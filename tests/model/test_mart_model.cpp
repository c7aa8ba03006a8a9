// The MART model: encoder, part-whole transformer (eqs. 1-2), head, weights and the Python export.
#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <string>

#include "mart/core/error.h"
#include "mart/loss/hierarchical_contrastive_loss.h"
#include "mart/model/config.h"
#include "mart/model/cqtnet.h"
#include "mart/model/mart_model.h"

namespace {

using namespace mart::model;

// Smaller still than ModelOptions::small(), for the float64 gradient check.
ModelOptions tiny(int levels = 3, int parts = 2) {
  ModelOptions o;
  o.levels = levels;
  o.parts = parts;
  o.n_mels = 8;
  o.frames = 8;
  o.fcn_channels = {2, 3, 3, 3, 3, 3, 4};
  o.dim = 4;
  o.pwt_blocks = 2;
  o.heads = 2;
  o.head_dim = 2;
  o.ff_dim = 6;
  o.projection_dim = 3;
  return o;
}

torch::Tensor hierarchy_input(const ModelOptions& o, int64_t batch) {
  return torch::randn({batch, o.clips_total(), o.n_mels, o.frames});
}

bool same(const torch::Tensor& a, const torch::Tensor& b) { return torch::equal(a, b); }
bool close(const torch::Tensor& a, const torch::Tensor& b, double tol = 1e-5) {
  return torch::allclose(a, b, tol, tol);
}

// ---- options ----

TEST(ModelOptions, PaperDefaults) {
  const ModelOptions o;
  EXPECT_NO_THROW(o.validate());
  EXPECT_EQ(o.clips_total(), 15);
  EXPECT_EQ(o.attention_dim(), 192);
  EXPECT_EQ(o.fcn_channels.size(), 7u);
  EXPECT_EQ(o.dim, 512);
  EXPECT_EQ(o.pwt_blocks, 3);
  EXPECT_EQ(o.ff_dim, 2048);
  EXPECT_EQ(o.projection_dim, 256);
  EXPECT_DOUBLE_EQ(o.lambda(3), 1.0);
  EXPECT_DOUBLE_EQ(o.loss.tau, 0.5);
  EXPECT_TRUE(o.use_pwt && o.loss.use_hcl);
  // The open readings: eqs. 1-2 as printed, L_pw beside eq. 5 (the study's choice, docs/results.md).
  EXPECT_EQ(o.pwt_residual, "double");
  EXPECT_EQ(o.pwt_order, "parallel");
  EXPECT_EQ(o.loss.pw_term, "separate");
  EXPECT_DOUBLE_EQ(o.loss.pw_weight, 0.2);
  EXPECT_NO_THROW(ModelOptions::small().validate());
}

void expect_config_error_naming(const ModelOptions& o, const std::string& field) {
  try {
    o.validate();
    FAIL() << "no error for a bad " << field;
  } catch (const mart::ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find(field), std::string::npos) << e.what();
  }
}

TEST(ModelOptions, ValidateNamesTheBadField) {
  auto o = ModelOptions::small();
  o.dim = 31;
  expect_config_error_naming(o, "dim");
  o = ModelOptions::small();
  o.lambdas = {1.0, 1.0};
  expect_config_error_naming(o, "lambdas");
  o = ModelOptions::small();
  o.heads = 0;
  expect_config_error_naming(o, "heads");
  o = ModelOptions::small();
  o.loss.tau = 0;
  expect_config_error_naming(o, "tau");
  o = ModelOptions::small();
  o.parts = 1;
  expect_config_error_naming(o, "parts");
  o = ModelOptions::small();
  o.fcn_channels = {};
  expect_config_error_naming(o, "fcn_channels");
}

// ---- encoder ----

TEST(FcnEncoder, PoolingStopsAtOneAndOutputIsDim) {
  EXPECT_EQ(fcn_max_pool(torch::zeros({1, 1, 1, 5})).sizes(), torch::IntArrayRef({1, 1, 1, 2}));
  EXPECT_EQ(fcn_max_pool(torch::zeros({1, 1, 7, 1})).sizes(), torch::IntArrayRef({1, 1, 3, 1}));
  torch::manual_seed(1);
  const auto o = ModelOptions::small();
  FcnEncoder encoder(o);
  EXPECT_EQ(encoder(torch::randn({3, 1, 32, 32})).sizes(), torch::IntArrayRef({3, 32}));
  EXPECT_EQ(encoder(torch::randn({2, 20, 7})).sizes(), torch::IntArrayRef({2, 32}));  // odd, small
  encoder->eval();  // one clip through the shared encoder equals that clip inside a batch
  const auto x = torch::randn({4, 1, 32, 32});
  EXPECT_TRUE(close(encoder(x.narrow(0, 2, 1)), encoder(x).narrow(0, 2, 1)));
}

// The block computes max-pool before ReLU (cheaper); it must be the paper's conv -> BN -> ReLU ->
// pool exactly: the same output bytes and the same gradients for input and every parameter, in
// training mode (batch statistics), including windows whose four values are all negative, sides
// that are no longer pooled (7 -> 3 -> 1), and ties.
TEST(FcnBlock, PoolThenReluIsTheSameBlock) {
  torch::manual_seed(3);
  for (const auto& shape : {std::vector<int64_t>{4, 3, 8, 8}, std::vector<int64_t>{2, 3, 7, 1}}) {
    FcnBlock block(3, 5);
    block->train();
    auto x0 = torch::randn(shape);
    // A constant patch wider than the kernel: equal conv outputs inside it, so windows with ties.
    x0.select(0, 0).narrow(1, 0, 5).narrow(2, 0, std::min<int64_t>(5, shape[3])).fill_(0.5);
    auto x = x0.clone().requires_grad_(true), x_ref = x0.clone().requires_grad_(true);
    const auto out = block(x);
    auto& b = *block;
    const auto ref = fcn_max_pool(torch::relu(b.bn(b.conv(x_ref))));
    ASSERT_TRUE(torch::equal(out, ref));
    EXPECT_GT((out == 0).sum().item<int64_t>(), 0) << "no all-negative window: the case is untested";
    const auto w = torch::randn(out.sizes());
    std::vector<torch::Tensor> grads;
    (out * w).sum().backward();
    for (const auto& p : block->parameters()) grads.push_back(p.grad().clone());
    const auto gx = x.grad().clone();
    block->zero_grad();
    (ref * w).sum().backward();
    EXPECT_TRUE(torch::equal(gx, x_ref.grad()));
    size_t i = 0;
    for (const auto& p : block->parameters()) EXPECT_TRUE(torch::equal(grads[i++], p.grad())) << p.sizes();
  }
}

// ---- the transformer of eqs. (1)-(2) ----

// MultiHead(Q, C, C) written per head with explicit weight slices.
torch::Tensor attention_by_hand(CrossAttentionLayerImpl& l, const torch::Tensor& q,
                                const torch::Tensor& c) {
  std::vector<torch::Tensor> heads;
  for (int h = 0; h < l.heads; ++h) {
    auto proj = [&](torch::nn::Linear& lin, const torch::Tensor& x) {
      return torch::matmul(x, lin->weight.narrow(0, h * l.head_dim, l.head_dim).t()) +
             lin->bias.narrow(0, h * l.head_dim, l.head_dim);
    };
    const auto scores = torch::matmul(proj(l.query, q), proj(l.key, c).transpose(1, 2)) /
                        std::sqrt(double(l.head_dim));
    heads.push_back(torch::matmul(torch::softmax(scores, -1), proj(l.value, c)));
  }
  return l.out(torch::cat(heads, -1));
}

TEST(CrossAttentionLayer, IsThePostNormLayerWithCrossAttention) {
  torch::manual_seed(2);
  CrossAttentionLayer layer(8, 2, 3, 16);
  const auto q = torch::randn({5, 4, 8}), c = torch::randn({5, 3, 8});
  EXPECT_TRUE(close(layer->attend(q, c), attention_by_hand(*layer, q, c)));
  const auto y = layer->norm1(q + attention_by_hand(*layer, q, c));
  EXPECT_TRUE(close(layer(q, c), layer->norm2(y + layer->ff2(torch::relu(layer->ff1(y))))));
}

TEST(CrossAttentionLayer, SingleKeyShortcutEqualsTheSoftmaxFormula) {
  torch::manual_seed(3);
  CrossAttentionLayer layer(8, 3, 4, 16);
  const auto q = torch::randn({6, 3, 8}), whole = torch::randn({6, 1, 8});
  EXPECT_TRUE(close(layer->attend(q, whole), layer->attend(q, whole, /*force_softmax=*/true)));
  EXPECT_TRUE(close(layer->attend(q, whole), attention_by_hand(*layer, q, whole)));
}

struct UnitFixture : ::testing::Test {
  ModelOptions o = [] {
    auto x = ModelOptions::small();
    x.lambdas = {0.5, 2.0, 1.0, 1.0};
    return x;
  }();
  PartWholeUnit unit{nullptr};
  torch::Tensor wholes, parts;  // level 1 (2 wholes) and level 2 (4 parts) of 3 instances
  void SetUp() override {
    torch::manual_seed(4);
    unit = PartWholeUnit(o, 1);
    wholes = torch::randn({3, 2, o.dim});
    parts = torch::randn({3, 4, o.dim});
  }
};

TEST_F(UnitFixture, ForwardIsEquations1And2WithTheirLambdas) {
  const auto [w_hat, p_hat] = unit(wholes, parts);
  for (int64_t j = 0; j < 2; ++j) {  // eq. (1) for whole j of instance 1, by hand
    const auto w = wholes[1][j].view({1, 1, o.dim}), p = parts[1].narrow(0, 2 * j, 2).unsqueeze(0);
    EXPECT_TRUE(close(w_hat[1][j], (w + 2.0 * unit->bottom_up(w, p)).view({o.dim})));
    EXPECT_TRUE(close(p_hat[1].narrow(0, 2 * j, 2), (p + 1.0 * unit->top_down(p, w)).squeeze(0)));
  }
}

TEST_F(UnitFixture, APartChangesOnlyItsWholeAndAWholeOnlyItsParts) {
  const auto bu = unit->bottom_up_update(wholes, parts), td = unit->top_down_update(wholes, parts);
  auto parts2 = parts.clone();
  parts2[1][3] += 1.0;  // part 3 of instance 1 belongs to whole 1
  const auto bu2 = unit->bottom_up_update(wholes, parts2);
  EXPECT_FALSE(close(bu2[1][1], bu[1][1]));
  EXPECT_TRUE(same(bu2[1][0], bu[1][0]));
  EXPECT_TRUE(same(bu2[0], bu[0]) && same(bu2[2], bu[2]));
  auto wholes2 = wholes.clone();
  wholes2[2][0] += 1.0;  // whole 0 of instance 2 has parts 0 and 1
  const auto td2 = unit->top_down_update(wholes2, parts);
  EXPECT_FALSE(close(td2[2][0], td[2][0]));
  EXPECT_FALSE(close(td2[2][1], td[2][1]));
  EXPECT_TRUE(same(td2[2].narrow(0, 2, 2), td[2].narrow(0, 2, 2)));
  EXPECT_TRUE(same(td2[0], td[0]) && same(td2[1], td[1]));
}

TEST(PartWholeBlock, IntermediateLevelsSumBothUpdatesOfTheBlockInput) {
  torch::manual_seed(5);
  const auto o = ModelOptions::small();  // N = 4
  PartWholeBlock block(o);
  std::vector<torch::Tensor> in;
  for (int n = 0; n < o.levels; ++n) in.push_back(torch::randn({2, o.clips_at(n), o.dim}));
  const auto out = block(in);
  auto unit = [&](int n) { return (*block->units)[n]->as<PartWholeUnitImpl>(); };
  EXPECT_TRUE(close(out[0], in[0] + unit(0)->bottom_up_update(in[0], in[1])));
  for (int n = 1; n + 1 < o.levels; ++n)
    EXPECT_TRUE(close(out[n], in[n] + unit(n)->bottom_up_update(in[n], in[n + 1]) +
                                  unit(n - 1)->top_down_update(in[n - 1], in[n])))
        << "level " << n;
  EXPECT_TRUE(close(out[3], in[3] + unit(2)->top_down_update(in[2], in[3])));
}

TEST_F(UnitFixture, SingleResidualIsTheTransformerOutputAtLambdaOne) {
  o.pwt_residual = "single";
  o.lambdas = {1.0, 1.0, 0.5, 1.0};  // lambda_1 = 1 (wholes), lambda_2 = 0.5 (parts)
  torch::manual_seed(4);
  PartWholeUnit single(o, 1);
  const auto [w_hat, p_hat] = single(wholes, parts);
  for (int64_t j = 0; j < 2; ++j) {
    const auto w = wholes[0][j].view({1, 1, o.dim}), p = parts[0].narrow(0, 2 * j, 2).unsqueeze(0);
    // lambda 1: w^ = Transformer(w~, P~), no second "+ w~"
    EXPECT_TRUE(close(w_hat[0][j], single->bottom_up(w, p).view({o.dim})));
    // lambda 0.5: P^ = P~ + 0.5 (Transformer(P~, w~) - P~)
    EXPECT_TRUE(close(p_hat[0].narrow(0, 2 * j, 2), (p + 0.5 * (single->top_down(p, w) - p)).squeeze(0)));
  }
}

TEST(PartWholeBlock, SequentialGoesBottomUpThenTopDownOnUpdatedLevels) {
  torch::manual_seed(6);
  auto o = ModelOptions::small();  // N = 4
  o.pwt_order = "sequential";
  PartWholeBlock block(o);
  std::vector<torch::Tensor> in;
  for (int n = 0; n < o.levels; ++n) in.push_back(torch::randn({2, o.clips_at(n), o.dim}));
  const auto out = block(in);
  auto unit = [&](int n) { return (*block->units)[n]->as<PartWholeUnitImpl>(); };
  // By hand: wholes from the finest pair up, each reading the parts just updated...
  std::vector<torch::Tensor> x = in;
  x[2] = in[2] + unit(2)->bottom_up_update(in[2], in[3]);
  x[1] = in[1] + unit(1)->bottom_up_update(in[1], x[2]);
  x[0] = in[0] + unit(0)->bottom_up_update(in[0], x[1]);
  // ...then parts from the top down, each reading its whole's final value.
  x[1] = x[1] + unit(0)->top_down_update(x[0], x[1]);
  x[2] = x[2] + unit(1)->top_down_update(x[1], x[2]);
  x[3] = in[3] + unit(2)->top_down_update(x[2], in[3]);
  for (int n = 0; n < o.levels; ++n) EXPECT_TRUE(close(out[n], x[n])) << "level " << n;
  // and it is not the parallel reading
  auto p = o;
  p.pwt_order = "parallel";
  PartWholeBlock parallel(p);
  torch::NoGradGuard ng;
  for (size_t i = 0; i < parallel->parameters().size(); ++i) parallel->parameters()[i].copy_(block->parameters()[i]);
  EXPECT_FALSE(close(parallel(in)[1], out[1]));
}

TEST(ModelOptions, OpenChoicesAreValidatedAndOnlyNonDefaultsChangeTheCanonicalForm) {
  ModelOptions o;
  o.loss.pw_term = "inside";
  const std::string literal = o.canonical();
  EXPECT_EQ(literal.find("pwt_residual"), std::string::npos);  // older checkpoints keep their identity
  o.pwt_residual = "single";
  EXPECT_NE(o.canonical().find("pwt_residual=single"), std::string::npos);
  o.pwt_residual = "triple";
  EXPECT_THROW(o.validate(), mart::ConfigError);
  o = ModelOptions();
  o.pwt_order = "random";
  EXPECT_THROW(o.validate(), mart::ConfigError);
  o = ModelOptions();
  o.loss.pw_term = "inside";  // the literal reading prints nothing, whatever the default
  EXPECT_EQ(o.canonical().find("pw_term"), std::string::npos);
  o.loss.pw_term = "separate";
  o.loss.pw_weight = 0.25;
  EXPECT_NE(o.canonical().find("pw_term=separate;pw_weight=0.25"), std::string::npos);
  EXPECT_EQ(o.loss_options().pw_term, "separate");
  EXPECT_EQ(o.loss_options().pw_weight, 0.25);
  // The pairing switches: validated, and named in the canonical form only when not the default.
  o = ModelOptions();
  EXPECT_EQ(o.canonical().find("anchors"), std::string::npos);
  EXPECT_EQ(o.canonical().find("same_track"), std::string::npos);
  o.loss.anchors = "both";
  o.loss.same_track = "masked";
  EXPECT_NE(o.canonical().find(";anchors=both;same_track=masked"), std::string::npos) << o.canonical();
  EXPECT_NO_THROW(o.validate());
  o.loss.anchors = "two";
  expect_config_error_naming(o, "anchors");
  o = ModelOptions();
  o.loss.same_track = "ignored";
  expect_config_error_naming(o, "same_track");
}

// One home per setting: the options a config with no [model] keys gives, the struct's defaults and
// the loss's own defaults are the same values (the loss once defaulted to pw_term inside while the
// model said separate, so code that built a LossOptions got the reading the study rejected).
TEST(ModelOptions, AnEmptyConfigTheStructAndTheLossAgreeOnEveryDefault) {
  mart::Config c("test", "defaults");
  declare_model_options(c);
  const char* argv[] = {"test"};
  ASSERT_TRUE(c.parse(1, argv));
  const ModelOptions from_config = model_options_from(c), defaults;
  EXPECT_EQ(from_config.canonical(), defaults.canonical());
  EXPECT_EQ(model_ini(from_config), model_ini(defaults));
  const mart::loss::LossOptions loss;
  const auto l = defaults.loss_options();
  EXPECT_EQ(l.tau, loss.tau);
  EXPECT_EQ(l.use_hcl, loss.use_hcl);
  EXPECT_EQ(l.pw_term, loss.pw_term);
  EXPECT_EQ(l.pw_weight, loss.pw_weight);
  EXPECT_EQ(l.anchors, loss.anchors);
  EXPECT_EQ(l.same_track, loss.same_track);
  EXPECT_EQ(loss.levels, defaults.levels);
  EXPECT_EQ(loss.parts, defaults.parts);
}

// ---- the whole model ----

TEST(MartModel, ShapesForSeveralHierarchies) {
  for (auto [levels, parts] : {std::pair{3, 3}, std::pair{4, 2}, std::pair{1, 2}, std::pair{2, 4}}) {
    torch::manual_seed(6);
    auto o = ModelOptions::small();
    o.levels = levels;
    o.parts = parts;
    o.pwt_blocks = 1;
    MartModel model(o);
    const auto out = model(torch::randn({3, 1, 32, 32}), hierarchy_input(o, 3));
    EXPECT_EQ(out.tilde0_a.sizes(), torch::IntArrayRef({3, 32}));
    EXPECT_EQ(out.z_tilde0.sizes(), torch::IntArrayRef({3, 16}));
    ASSERT_EQ(out.z_hat.size(), static_cast<size_t>(levels));
    for (int n = 0; n < levels; ++n) {
      EXPECT_EQ(out.b.hat[n].sizes(), torch::IntArrayRef({3, o.clips_at(n), 32}));
      EXPECT_EQ(out.z_hat[n].sizes(), torch::IntArrayRef({3, o.clips_at(n), 16}));
    }
    const auto loss = mart::loss::HierarchicalContrastiveLoss(o.loss_options())(out.z_hat, out.z_tilde0);
    EXPECT_TRUE(std::isfinite(loss.loss.item<double>()));
  }
  MartModel model(ModelOptions::small());
  EXPECT_THROW(model(torch::randn({2, 1, 32, 32}), torch::randn({2, 14, 32, 32})), mart::Error);
}

TEST(MartModel, WithoutPwtTheOutputsAreTheInputs) {
  torch::manual_seed(7);
  auto o = ModelOptions::small();
  o.use_pwt = false;
  MartModel model(o);
  EXPECT_TRUE(model->named_parameters().find("pwt.blocks.0.units.0.top_down.ff1.weight") == nullptr);
  const auto e = model->embed(hierarchy_input(o, 2));
  for (int n = 0; n < o.levels; ++n) EXPECT_TRUE(same(e.hat[n], e.tilde[n])) << "level " << n;
  o.use_pwt = true;  // and with PWT they differ
  const auto e2 = MartModel(o)->embed(hierarchy_input(o, 2));
  EXPECT_FALSE(close(e2.hat[2], e2.tilde[2]));
}

TEST(MartModel, ChangingOneInstanceLeavesTheOthersAlone) {
  torch::manual_seed(8);
  const auto o = ModelOptions::small();
  MartModel model(o);
  model->eval();  // BatchNorm's batch statistics would couple the instances in training mode
  auto x = hierarchy_input(o, 3);
  const auto e = model->embed(x);
  x[1][5] += 1.0;  // a level-2 clip of instance 1
  const auto e2 = model->embed(x);
  for (int n = 0; n < o.levels; ++n) {
    EXPECT_TRUE(same(e2.hat[n][0], e.hat[n][0]) && same(e2.hat[n][2], e.hat[n][2])) << n;
    EXPECT_FALSE(close(e2.hat[n][1], e.hat[n][1])) << "level " << n << " of instance 1";
  }
}

TEST(MartModel, PermutingTheBatchPermutesEveryOutput) {
  torch::manual_seed(9);
  const auto o = ModelOptions::small();
  MartModel model(o);  // training mode: batch statistics are permutation invariant
  const auto a = torch::randn({4, 1, 32, 32}), b = hierarchy_input(o, 4);
  const auto perm = torch::tensor({2, 0, 3, 1}, torch::kLong);
  const auto out = model(a, b), permuted = model(a.index_select(0, perm), b.index_select(0, perm));
  EXPECT_TRUE(close(permuted.z_tilde0, out.z_tilde0.index_select(0, perm)));
  for (int n = 0; n < o.levels; ++n)
    EXPECT_TRUE(close(permuted.z_hat[n], out.z_hat[n].index_select(0, perm))) << "level " << n;
  const mart::loss::HierarchicalContrastiveLoss loss(o.loss_options());
  EXPECT_TRUE(close(loss(permuted.z_hat, permuted.z_tilde0).per_instance,
                    loss(out.z_hat, out.z_tilde0).per_instance.index_select(0, perm)));
}

TEST(MartModel, GradientsOfTheWholeStepMatchFiniteDifferences) {
  torch::manual_seed(10);
  const auto o = tiny();
  MartModel model(o);
  model->to(torch::kDouble);
  const auto a = torch::randn({3, 1, 8, 8}, torch::kDouble).requires_grad_(true);
  const auto b = torch::randn({3, o.clips_total(), 8, 8}, torch::kDouble);
  const mart::loss::HierarchicalContrastiveLoss loss(o.loss_options());
  auto f = [&] {
    const auto out = model(a, b);
    return loss(out.z_hat, out.z_tilde0).loss;
  };
  auto params = model->parameters();
  model->zero_grad();
  f().backward();
  const double h = 1e-6;
  int checked = 0;
  params.push_back(a);
  for (auto& p : params) {
    auto flat = p.detach().view(-1);
    ASSERT_TRUE(p.grad().defined()) << "a parameter of shape " << p.sizes() << " gets no gradient";
    const auto grad = p.grad().view(-1);
    for (int64_t k = 0; k < flat.numel(); k += std::max<int64_t>(1, flat.numel() / 2)) {
      const double x0 = flat[k].item<double>();
      torch::NoGradGuard no_grad;
      flat[k] = x0 + h;
      const double up = f().item<double>();
      flat[k] = x0 - h;
      const double down = f().item<double>();
      flat[k] = x0;
      const double numeric = (up - down) / (2 * h), analytic = grad[k].item<double>();
      EXPECT_NEAR(analytic, numeric, 1e-5 * std::max(1.0, std::abs(numeric)));
      ++checked;
    }
  }
  EXPECT_GT(checked, 100);
}

// ---- weights ----

std::string temp_path(const std::string& name) {
  return (std::filesystem::temp_directory_path() / ("mart_model_test_" + name)).string();
}

TEST(MartModel, SaveAndLoadRestoresTheOutputs) {
  const auto o = ModelOptions::small();
  torch::manual_seed(11);
  MartModel trained(o);
  trained(torch::randn({2, 1, 32, 32}), hierarchy_input(o, 2));  // moves BN running stats
  trained->eval();
  const auto x = hierarchy_input(o, 2);
  const auto path = temp_path("weights.pt");
  save_weights(*trained, path);
  torch::manual_seed(12);
  MartModel fresh(o);
  fresh->eval();
  EXPECT_FALSE(close(fresh->embed(x).hat[1], trained->embed(x).hat[1]));
  load_weights(*fresh, path, torch::kCPU);
  EXPECT_TRUE(same(fresh->embed(x).hat[1], trained->embed(x).hat[1]));
  std::filesystem::remove(path);
}

TEST(MartModel, ExportedStateDictHasEveryNameAndValue) {
  torch::manual_seed(13);
  MartModel model(ModelOptions::small());
  const auto path = temp_path("export.pt");
  export_state_dict(*model, path);
  const auto mine = state_dict(*model), read = read_exported_state_dict(path);
  ASSERT_EQ(read.size(), mine.size());
  for (size_t i = 0; i < mine.size(); ++i) {
    EXPECT_EQ(read[i].first, mine[i].first);
    EXPECT_TRUE(same(read[i].second, mine[i].second)) << mine[i].first;
  }
  bool has_bn = false;
  for (auto& [name, t] : mine) has_bn |= name == "encoder.blocks.0.bn.running_var";
  EXPECT_TRUE(has_bn);
  std::filesystem::remove(path);
}

bool python_has_torch() {
  return std::system("/usr/bin/python3 -c 'import torch' > /dev/null 2>&1") == 0;
}

TEST(MartModel, PythonLoadsTheExportIntoTheSameArchitecture) {
  if (!python_has_torch()) GTEST_SKIP() << "/usr/bin/python3 cannot import torch (python3-torch)";
  torch::manual_seed(14);
  auto o = ModelOptions::small();
  o.levels = 3;
  o.parts = 3;
  MartModel model(o);
  model(torch::randn({2, 1, 32, 32}), hierarchy_input(o, 2));  // non-trivial BN statistics
  model->eval();
  const auto x = hierarchy_input(o, 2);
  const auto e = model->embed(x);
  // The reference side: the input and what C++ computed from it, by name.
  c10::Dict<std::string, at::Tensor> expected;
  expected.insert("input", x);
  for (int n = 0; n < o.levels; ++n) {
    expected.insert("tilde." + std::to_string(n), e.tilde[n].detach());
    expected.insert("hat." + std::to_string(n), e.hat[n].detach());
    expected.insert("z_hat." + std::to_string(n), model->head(e.hat[n]).detach());
  }
  const auto weights = temp_path("py_weights.pt"), reference = temp_path("py_reference.pt");
  export_state_dict(*model, weights);
  const auto bytes = torch::pickle_save(c10::IValue(expected));
  std::ofstream(reference, std::ios::binary).write(bytes.data(), bytes.size());
  const std::string cmd = "/usr/bin/python3 " MART_SOURCE_DIR "/bench/model/mart_step.py check-export "
                          "--weights " + weights + " --reference " + reference +
                          " --levels 3 --parts 3 --small";
  EXPECT_EQ(std::system(cmd.c_str()), 0) << cmd;
  std::filesystem::remove(weights);
  std::filesystem::remove(reference);
}

}  // namespace

// CQTNet (issue 12) as its authors' models/CQTNet.py defines it.
TEST(CqtNet, HasTheAuthorsParametersAndPadsShortInputs) {
  torch::manual_seed(3);
  CqtNet net{CqtNetOptions{}};
  int64_t n = 0;
  for (const auto& p : net->parameters()) n += p.numel();
  // models/CQTNet.py without fc0 (512 x 300 + 300) and fc1: 5,080,428 - 153,900, counted with
  // PyTorch on the authors' module.
  EXPECT_EQ(n, 4926528);
  net->eval();
  torch::NoGradGuard no_grad;
  const auto x = torch::rand({2, 84, 64});
  const auto y = net->forward(x);
  ASSERT_EQ(y.sizes(), (std::vector<int64_t>{2, 512}));
  // Shorter than 200 frames: zero-padded at the end, as the authors' cut_data does.
  EXPECT_TRUE(torch::equal(y, net->forward(torch::constant_pad_nd(x, {0, 136}))));
  EXPECT_EQ(net->forward(torch::rand({1, 1, 84, 300})).sizes(), (std::vector<int64_t>{1, 512}));
  EXPECT_THROW(net->forward(torch::rand({1, 80, 200})), mart::Error);  // not 84 bins
  EXPECT_EQ(cqtnet_options(0.25).channels, (std::vector<int64_t>{8, 16, 16, 16, 32, 32, 64, 64, 128, 128}));
}

TEST(CqtNet, NormalisesEachTrackByItsLargestValue) {
  auto x = torch::rand({3, 84, 10}) * torch::tensor({1.0f, 5.0f, 100.0f}).view({3, 1, 1});
  const auto y = cqtnet_normalize(x);
  for (int i = 0; i < 3; ++i) {
    const double m = x[i].max().item<double>();
    EXPECT_NEAR(y[i].max().item<double>(), m / (m + 1e-6), 1e-6);
    EXPECT_TRUE(torch::allclose(y[i], x[i] / (m + 1e-6)));
  }
}

namespace {
// Channels-last convolutions (train.channels_last) change the memory layout, not the numbers: the
// same outputs and gradients as the default layout, and the encoder's weights are NHWC.
TEST(MartModel, ChannelsLastGivesTheSameOutputsAndGradients) {
  // float64: float32's rounding differs between the kernels of the two layouts, and the conv
  // biases' gradients below are rounding noise around zero.
  torch::set_default_dtype(caffe2::TypeMeta::Make<double>());
  auto o = ModelOptions::small();
  o.levels = 3;
  o.n_mels = 16;
  o.frames = 16;
  torch::manual_seed(4);
  MartModel plain(o);
  torch::manual_seed(4);
  MartModel nhwc(o);
  nhwc->use_channels_last(true);
  bool any4d = false;
  for (const auto& p : nhwc->encoder->parameters())
    if (p.dim() == 4) {
      any4d = true;
      EXPECT_TRUE(p.is_contiguous(torch::MemoryFormat::ChannelsLast));
    }
  EXPECT_TRUE(any4d);
  torch::manual_seed(5);
  const auto a = torch::randn({3, 1, o.n_mels, o.frames}), b = torch::randn({3, o.clips_total(), o.n_mels, o.frames});
  const auto x = plain->forward(a, b), y = nhwc->forward(a, b);
  auto rel = [](const torch::Tensor& p, const torch::Tensor& q) {
    return ((p - q).abs().max() / p.abs().max().clamp_min(1e-12)).item<double>();
  };
  EXPECT_LT(rel(x.z_tilde0, y.z_tilde0), 1e-12);
  EXPECT_LT(rel(x.z_hat.back(), y.z_hat.back()), 1e-12);
  (x.z_tilde0.sum() + x.z_hat.back().sum()).backward();
  (y.z_tilde0.sum() + y.z_hat.back().sum()).backward();
  // A convolution's bias has a zero gradient under BatchNorm in training (it moves the mean BN
  // removes): rounding noise, so each gradient's scale is floored at 1e-3 of the largest.
  const auto pg = plain->parameters(), ng = nhwc->parameters();
  double largest = 0;
  for (const auto& p : pg)
    if (p.grad().defined()) largest = std::max(largest, p.grad().abs().max().item<double>());
  for (size_t i = 0; i < pg.size(); ++i) {
    if (!pg[i].grad().defined()) continue;
    const double scale = std::max(pg[i].grad().abs().max().item<double>(), 1e-3 * largest);
    EXPECT_LT((pg[i].grad() - ng[i].grad()).abs().max().item<double>() / scale, 1e-9) << "parameter " << i;
  }
  torch::set_default_dtype(caffe2::TypeMeta::Make<float>());
}
}  // namespace
