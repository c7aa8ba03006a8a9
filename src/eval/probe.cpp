#include "mart/eval/probe.h"

#include <torch/torch.h>

#include <cmath>
#include <limits>

#include "mart/core/error.h"
#include "mart/model/mart_model.h"
#include "early_stopping.h"

namespace mart::eval {

namespace {

// [rows, columns] of row-major `values`, copied.
torch::Tensor matrix(const std::vector<float>& values, int64_t rows, int64_t columns) {
  return torch::from_blob(const_cast<float*>(values.data()), {rows, columns}).clone();
}

torch::Tensor loss_of(const torch::Tensor& logits, const torch::Tensor& targets, TaskKind task) {
  return task == TaskKind::multilabel ? torch::binary_cross_entropy_with_logits(logits, targets)
                                      : torch::nn::functional::cross_entropy(logits, targets.to(torch::kLong));
}

class MartSource : public FeatureSource {
 public:
  MartSource(const std::string& checkpoint, const model::ModelOptions& model_options, uint64_t seed,
             EmbeddingVector vector)
      : model_(model::inference_model(model_options, checkpoint, seed)),
        name_(checkpoint.empty() ? "random_init" : "mart"),
        vector_(vector) {}
  std::string name() const override { return name_; }
  int64_t dim() const override {
    return model_->options.dim * (vector_ == EmbeddingVector::levels ? model_->options.levels : 1);
  }
  int levels() const override { return vector_ == EmbeddingVector::levels ? 1 : model_->options.levels; }
  void embed(const float* hier, int64_t count, std::vector<std::vector<float>>* out) override {
    torch::NoGradGuard no_grad;
    const auto& shape = model_->options;
    const auto crops =
        torch::from_blob(const_cast<float*>(hier), {count, shape.clips_total(), shape.n_mels, shape.frames});
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
                     TaskKind task, const ProbeOptions& options) {
  MART_CHECK(train.rows > 0 && valid.rows > 0, "a probe needs training and validation examples");
  torch::manual_seed(static_cast<int64_t>(options.seed));
  const int64_t dim = train.dim, outputs = train.outputs;
  // Standardised with the training statistics.
  const auto train_raw = matrix(train.features, train.rows, dim);
  const auto mean = train_raw.mean(0), std_dev = train_raw.std(0).clamp_min(1e-6);
  const auto train_in = (train_raw - mean) / std_dev;
  const auto valid_in = (matrix(valid.features, valid.rows, dim) - mean) / std_dev;
  auto targets = [&](const ProbeSet& set) {
    return task == TaskKind::multilabel ? matrix(set.targets, set.rows, outputs) : torch::tensor(set.targets);
  };
  const auto train_targets = targets(train), valid_targets = targets(valid);
  torch::nn::Sequential net;
  if (options.kind == ProbeKind::linear) {
    net->push_back(torch::nn::Linear(dim, outputs));
  } else {
    net->push_back(torch::nn::Linear(dim, options.hidden));
    net->push_back(torch::nn::ReLU());
    net->push_back(torch::nn::Linear(options.hidden, outputs));
  }
  torch::optim::Adam opt(net->parameters(),
                         torch::optim::AdamOptions(options.lr).weight_decay(options.weight_decay));
  EarlyStopping stop(options.max_epochs, options.patience, EarlyStopping::Better::lower, 1e-9);
  while (stop.more()) {
    net->train();
    const auto order = torch::randperm(train.rows);
    for (int64_t start = 0; start < train.rows; start += options.batch_size) {
      const auto batch = order.narrow(0, start, std::min<int64_t>(options.batch_size, train.rows - start));
      opt.zero_grad();
      loss_of(net->forward(train_in.index_select(0, batch)), train_targets.index_select(0, batch), task).backward();
      opt.step();
    }
    torch::NoGradGuard no_grad;
    net->eval();
    stop.record(loss_of(net->forward(valid_in), valid_targets, task).item<double>(), net->parameters());
  }
  MART_CHECK(stop.improved_once(), "the probe's validation loss was never finite (", stop.best(),
             "): the embeddings hold NaN or inf, or the probe diverged");
  stop.restore(net->parameters());  // the early-stopping point
  torch::NoGradGuard no_grad;
  net->eval();
  const auto logits = net->forward((matrix(test_x, n_test, dim) - mean) / std_dev);
  const auto probs = (task == TaskKind::multilabel ? torch::sigmoid(logits) : torch::softmax(logits, 1)).contiguous();
  ProbeRun result;
  result.scores.assign(probs.data_ptr<float>(), probs.data_ptr<float>() + probs.numel());
  result.epochs = stop.epochs();
  result.best_valid_loss = stop.best();
  return result;
}

std::unique_ptr<FeatureSource> mart_source(const std::string& checkpoint, const model::ModelOptions& model_options,
                                           uint64_t seed, int threads, EmbeddingVector vector) {
  if (threads > 0) at::set_num_threads(threads);
  return std::make_unique<MartSource>(checkpoint, model_options, seed, vector);
}

}  // namespace mart::eval
