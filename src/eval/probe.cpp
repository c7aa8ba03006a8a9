#include "mart/eval/probe.h"

#include <torch/torch.h>

#include <cmath>
#include <limits>

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
  MartSource(const std::string& checkpoint, const model::ModelOptions& m, uint64_t seed, EmbeddingVector vector)
      : model_(model::inference_model(m, checkpoint, seed)),
        name_(checkpoint.empty() ? "random_init" : "mart"),
        vector_(vector) {}
  std::string name() const override { return name_; }
  int64_t dim() const override {
    return model_->options.dim * (vector_ == EmbeddingVector::levels ? model_->options.levels : 1);
  }
  int levels() const override { return vector_ == EmbeddingVector::levels ? 1 : model_->options.levels; }
  void embed(const float* hier, int64_t n, std::vector<std::vector<float>>* out) override {
    torch::NoGradGuard no_grad;
    const auto& shape = model_->options;
    const auto crops = torch::from_blob(const_cast<float*>(hier), {n, shape.clips_total(), shape.n_mels, shape.frames});
    const auto embeddings = model_->embed(crops);
    auto assign = [&](size_t level, const torch::Tensor& t) {
      const auto values = t.contiguous();
      (*out)[level].assign(values.data_ptr<float>(), values.data_ptr<float>() + values.numel());
    };
    if (vector_ == EmbeddingVector::levels) {  // one vector: every level's mean over its clips, concatenated
      std::vector<torch::Tensor> means;
      for (const auto& hat : embeddings.hat) means.push_back(hat.mean(1));
      out->assign(1, {});
      assign(0, torch::cat(means, 1));
      return;
    }
    out->assign(static_cast<size_t>(shape.levels), {});
    for (int level = 0; level < shape.levels; ++level)  // each level's mean over its clips
      assign(static_cast<size_t>(level), embeddings.hat[static_cast<size_t>(level)].mean(1));
    // tilde0: the encoder's own output, before the PWT.
    if (vector_ == EmbeddingVector::tilde0) assign(0, embeddings.tilde[0].mean(1));
  }

 private:
  model::MartModel model_;
  std::string name_;
  EmbeddingVector vector_;  // what level 0 holds
};

}  // namespace

ProbeKind parse_probe_kind(const std::string& name) {
  if (name == "linear") return ProbeKind::linear;
  if (name == "mlp") return ProbeKind::mlp;
  MART_CONFIG_ERROR("eval.probe must be linear or mlp, got '", name, "'");
}

const char* probe_kind_name(ProbeKind kind) { return kind == ProbeKind::linear ? "linear" : "mlp"; }

EmbeddingVector parse_embedding_vector(const std::string& name) {
  if (name == "hat0") return EmbeddingVector::hat0;
  if (name == "tilde0") return EmbeddingVector::tilde0;
  if (name == "levels") return EmbeddingVector::levels;
  MART_CONFIG_ERROR("eval.embedding must be hat0, tilde0 or levels, got '", name, "'");
}

const char* embedding_vector_name(EmbeddingVector vector) {
  switch (vector) {
    case EmbeddingVector::hat0: return "hat0";
    case EmbeddingVector::tilde0: return "tilde0";
    case EmbeddingVector::levels: return "levels";
  }
  return "?";
}

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
                                           uint64_t seed, int threads, EmbeddingVector vector) {
  if (threads > 0) at::set_num_threads(threads);
  return std::make_unique<MartSource>(checkpoint, m, seed, vector);
}

}  // namespace mart::eval
