#include "mart/eval/probe.h"

#include <torch/torch.h>

#include <cmath>

#include "mart/core/error.h"
#include "mart/model/mart_model.h"
#include "early_stopping.h"

namespace mart::eval {

namespace {

torch::Tensor rows(const std::vector<float>& v, int64_t n, int64_t d) {
  return torch::from_blob(const_cast<float*>(v.data()), {n, d}).clone();
}

torch::Tensor loss_of(const torch::Tensor& logits, const torch::Tensor& y, TaskKind task) {
  return task == TaskKind::multilabel ? torch::binary_cross_entropy_with_logits(logits, y)
                                      : torch::nn::functional::cross_entropy(logits, y.to(torch::kLong));
}

class MartSource : public FeatureSource {
 public:
  MartSource(const std::string& checkpoint, const model::ModelOptions& m, uint64_t seed, std::string vector)
      : model_(model::inference_model(m, checkpoint, seed)),
        name_(checkpoint.empty() ? "random_init" : "mart"),
        vector_(std::move(vector)) {
    if (vector_ != "hat0" && vector_ != "tilde0" && vector_ != "levels")
      MART_CONFIG_ERROR("eval.embedding must be hat0, tilde0 or levels, got '", vector_, "'");
  }
  std::string name() const override { return name_; }
  int64_t dim() const override { return model_->options.dim * (vector_ == "levels" ? model_->options.levels : 1); }
  int levels() const override { return vector_ == "levels" ? 1 : model_->options.levels; }
  void embed(const float* hier, int64_t n, std::vector<std::vector<float>>* out) override {
    torch::NoGradGuard no_grad;
    const auto& o = model_->options;
    auto x = torch::from_blob(const_cast<float*>(hier), {n, o.clips_total(), o.n_mels, o.frames});
    const auto e = model_->embed(x);
    auto assign = [&](size_t l, const torch::Tensor& t) {
      const auto c = t.contiguous();
      (*out)[l].assign(c.data_ptr<float>(), c.data_ptr<float>() + c.numel());
    };
    if (vector_ == "levels") {  // one vector: every level's mean over its clips, concatenated
      std::vector<torch::Tensor> means;
      for (const auto& h : e.hat) means.push_back(h.mean(1));
      out->assign(1, {});
      assign(0, torch::cat(means, 1));
      return;
    }
    out->assign(static_cast<size_t>(o.levels), {});
    for (int l = 0; l < o.levels; ++l)  // each level's mean over its clips
      assign(static_cast<size_t>(l), e.hat[static_cast<size_t>(l)].mean(1));
    if (vector_ == "tilde0") assign(0, e.tilde[0].mean(1));  // the encoder's own output, before the PWT
  }

 private:
  model::MartModel model_;
  std::string name_;
  std::string vector_;  // what level 0 holds: hat0 (s^^0), tilde0 (s~^0) or levels (all levels' means)
};

}  // namespace

ProbeRun train_probe(const ProbeSet& train, const ProbeSet& valid, const std::vector<float>& test_x, int64_t n_test,
                     TaskKind task, const ProbeOptions& o) {
  MART_CHECK(train.n > 0 && valid.n > 0, "a probe needs training and validation examples");
  torch::manual_seed(static_cast<int64_t>(o.seed));
  const int64_t dim = train.d, outputs = train.k;
  // Standardised with the training statistics.
  const auto train_raw = rows(train.x, train.n, dim);
  const auto mean = train_raw.mean(0), std_dev = train_raw.std(0).clamp_min(1e-6);
  const auto train_in = (train_raw - mean) / std_dev, valid_in = (rows(valid.x, valid.n, dim) - mean) / std_dev;
  const auto train_y = task == TaskKind::multilabel ? rows(train.y, train.n, outputs) : torch::tensor(train.y);
  const auto valid_y = task == TaskKind::multilabel ? rows(valid.y, valid.n, outputs) : torch::tensor(valid.y);
  torch::nn::Sequential net;
  if (o.kind == ProbeKind::linear) {
    net->push_back(torch::nn::Linear(dim, outputs));
  } else {
    net->push_back(torch::nn::Linear(dim, o.hidden));
    net->push_back(torch::nn::ReLU());
    net->push_back(torch::nn::Linear(o.hidden, outputs));
  }
  torch::optim::Adam opt(net->parameters(), torch::optim::AdamOptions(o.lr).weight_decay(o.weight_decay));
  EarlyStopping stop(o.max_epochs, o.patience, EarlyStopping::Better::lower, 1e-9);
  while (stop.more()) {
    net->train();
    const auto order = torch::randperm(train.n);
    for (int64_t start = 0; start < train.n; start += o.batch_size) {
      const auto batch = order.narrow(0, start, std::min<int64_t>(o.batch_size, train.n - start));
      opt.zero_grad();
      loss_of(net->forward(train_in.index_select(0, batch)), train_y.index_select(0, batch), task).backward();
      opt.step();
    }
    torch::NoGradGuard no_grad;
    net->eval();
    stop.record(loss_of(net->forward(valid_in), valid_y, task).item<double>(), net->parameters());
  }
  MART_CHECK(stop.improved_once(), "the probe's validation loss was never finite (", stop.best(),
             "): the embeddings hold NaN or inf, or the probe diverged");
  stop.restore(net->parameters());  // the early-stopping point
  torch::NoGradGuard no_grad;
  net->eval();
  const auto logits = net->forward((rows(test_x, n_test, dim) - mean) / std_dev);
  const auto probs = (task == TaskKind::multilabel ? torch::sigmoid(logits) : torch::softmax(logits, 1)).contiguous();
  ProbeRun r;
  r.scores.assign(probs.data_ptr<float>(), probs.data_ptr<float>() + probs.numel());
  r.epochs = stop.epochs();
  r.best_valid_loss = stop.best();
  return r;
}

std::unique_ptr<FeatureSource> mart_source(const std::string& checkpoint, const model::ModelOptions& m,
                                           uint64_t seed, int threads, const std::string& vector) {
  if (threads > 0) at::set_num_threads(threads);
  return std::make_unique<MartSource>(checkpoint, m, seed, vector);
}

}  // namespace mart::eval
