#include "mart/eval/finetune.h"

#include <spdlog/spdlog.h>
#include <torch/torch.h>

#include <algorithm>
#include <map>

#include "mart/core/error.h"
#include "mart/core/rng.h"
#include "mart/dist/block.h"
#include "mart/dist/gradient_reducer.h"
#include "mart/dist/mpi_communicator.h"
#include "mart/eval/batch_norm_stats.h"
#include "mart/model/mart_model.h"
#include "mart/run/step.h"
#include "early_stopping.h"
#include "track_crops.h"

namespace mart::eval {

namespace {

struct Row {
  size_t track;   // index into EmbeddingSet::tracks
  int64_t start;  // top-clip start
};

// The evaluation crops of `tracks`, in track order, and the shards they are read from.
class CropTable {
 public:
  CropTable(const std::string& dir, const EmbeddingSet& e) : e_(e), crops_(dir, e) {}

  std::vector<Row> rows(const std::vector<size_t>& tracks) {
    std::vector<Row> out;
    for (size_t i : tracks) {
      const auto& t = e_.tracks[i];
      const auto starts = crops_.starts(i);
      MART_CHECK(static_cast<int64_t>(starts.size()) == t.crop_end - t.crop_begin, "track '", t.id,
                 "': the shards give another crop count than the embeddings; were they made from other data?");
      for (int64_t k : starts) out.push_back({i, k});
    }
    return out;
  }

  // [rows, clips_total, n_mels, T] of rows [begin, end).
  torch::Tensor batch(const std::vector<Row>& rows, size_t begin, size_t end) {
    std::vector<std::pair<size_t, int64_t>> pairs;
    for (size_t r = begin; r < end; ++r) pairs.emplace_back(rows[r].track, rows[r].start);
    return crops_.hierarchies(pairs);
  }

 private:
  const EmbeddingSet& e_;
  TrackCrops crops_;
};

// Targets of rows [begin, end): [n, k] 0/1 floats (multilabel) or [n] class indices.
torch::Tensor targets(const EmbeddingSet& e, const std::vector<Row>& rows, size_t begin, size_t end, TaskKind task) {
  const int64_t n = static_cast<int64_t>(end - begin);
  if (task == TaskKind::multiclass) {
    auto y = torch::empty({n}, torch::kLong);
    for (size_t r = begin; r < end; ++r) y[static_cast<int64_t>(r - begin)] = e.tracks[rows[r].track].class_index;
    return y;
  }
  const int64_t k = static_cast<int64_t>(e.tag_names.size());
  auto y = torch::empty({n, k});
  for (size_t r = begin; r < end; ++r)
    for (int64_t j = 0; j < k; ++j) y[static_cast<int64_t>(r - begin)][j] = static_cast<float>(e.tracks[rows[r].track].tags[static_cast<size_t>(j)]);
  return y;
}

// Per-row losses [n].
torch::Tensor row_losses(const torch::Tensor& logits, const torch::Tensor& y, TaskKind task) {
  if (task == TaskKind::multilabel)
    return torch::binary_cross_entropy_with_logits(logits, y, {}, {}, at::Reduction::None).mean(1);
  return torch::nn::functional::cross_entropy(logits, y, torch::nn::functional::CrossEntropyFuncOptions().reduction(torch::kNone));
}

struct Net {
  model::MartModel model{nullptr};
  torch::nn::Linear head{nullptr};
  torch::Tensor forward(const torch::Tensor& x) { return head->forward(model->embed(x).hat[0].squeeze(1)); }
  std::vector<torch::Tensor> parameters() const {  // what the task trains: the projection head is unused
    std::vector<torch::Tensor> p;
    for (auto& x : model->encoder->parameters()) p.push_back(x);
    if (model->pwt) for (auto& x : model->pwt->parameters()) p.push_back(x);
    for (auto& x : head->parameters()) p.push_back(x);
    return p;
  }
};

// One fine-tuning job on the ranks of a group: the model and its optimiser, and the crops of the
// training, validation and test tracks. Each step of the job is a member.
class FineTuning {
 public:
  FineTuning(const std::string& data_dir, const EmbeddingSet& e, const std::string& checkpoint_dir,
             const model::ModelOptions& m, const std::vector<size_t>& train, const std::vector<size_t>& valid,
             const std::vector<size_t>& test, TaskKind task, const FinetuneOptions& o, MPI_Comm group)
      : e_(e), task_(task), options_(o), comm_(group), table_(data_dir, e), train_rows_(table_.rows(train)),
        valid_rows_(table_.rows(valid)), test_rows_(table_.rows(test)), net_(initial_net(checkpoint_dir, m)),
        params_(net_.parameters()),
        opt_(params_, torch::optim::AdamOptions(o.lr).weight_decay(o.weight_decay)),
        reducer_(params_, comm_, dist::ReducerOptions::after_backward()),
        order_rng_(seed_of(o.seed, 0x66696e65ull)) {}

  bool leader() const { return comm_.rank() == 0; }
  const std::vector<torch::Tensor>& parameters() const { return params_; }

  // One epoch over the training crops in a new order (the same on every rank of the group), each
  // global batch split over the ranks.
  void train_epoch() {
    net_.model->train();
    if (options_.frozen_batch_norm) run::freeze_batch_norm(*net_.model);
    std::vector<size_t> order(train_rows_.size());
    for (size_t i = 0; i < order.size(); ++i) order[i] = i;
    order_rng_.shuffle(order);
    const size_t batch = static_cast<size_t>(options_.batch_size);
    for (size_t start = 0; start < order.size(); start += batch) {
      const size_t global = std::min(order.size(), start + batch) - start;
      const auto [begin, end] = dist::contiguous_block(global, comm_.rank(), comm_.size());
      std::vector<Row> mine;
      for (size_t i = start + begin; i < start + end; ++i) mine.push_back(train_rows_[order[i]]);
      opt_.zero_grad();
      if (!mine.empty()) {
        const auto losses = row_losses(net_.forward(table_.batch(mine, 0, mine.size())),
                                       targets(e_, mine, 0, mine.size(), task_), task_);
        // The reducer takes the mean over the group: scale so it is the mean over the global batch.
        (losses.sum() * (static_cast<double>(comm_.size()) / static_cast<double>(global))).backward();
      }
      reducer_.finalize();
      opt_.step();
    }
    net_.model->eval();
  }

  // The mean loss over the validation crops, each rank taking a block of them: the same bits on
  // every rank of the group.
  double valid_loss() {
    torch::NoGradGuard no_grad;
    const auto [begin, end] = dist::contiguous_block(valid_rows_.size(), comm_.rank(), comm_.size());
    double sum = 0;
    for (size_t start = begin; start < end; start += static_cast<size_t>(options_.batch_size)) {
      const size_t stop = std::min(end, start + static_cast<size_t>(options_.batch_size));
      sum += row_losses(net_.forward(table_.batch(valid_rows_, start, stop)), targets(e_, valid_rows_, start, stop, task_),
                        task_).sum().item<double>();
    }
    auto total = torch::tensor({sum}, torch::kFloat64);
    comm_.all_reduce(total);
    // MPI does not promise every rank the same bits of a sum; early stopping must agree exactly.
    comm_.broadcast(total, 0);
    return total.item<double>() / static_cast<double>(valid_rows_.size());
  }

  // The scores of the test crops in order, [crops, outputs]: each rank a block, gathered in rank order.
  std::vector<float> test_scores() {
    torch::NoGradGuard no_grad;
    net_.model->eval();
    const auto [begin, end] = dist::contiguous_block(test_rows_.size(), comm_.rank(), comm_.size());
    std::vector<torch::Tensor> parts;
    for (size_t start = begin; start < end; start += static_cast<size_t>(options_.batch_size)) {
      const size_t stop = std::min(end, start + static_cast<size_t>(options_.batch_size));
      const auto logits = net_.forward(table_.batch(test_rows_, start, stop));
      parts.push_back(task_ == TaskKind::multilabel ? torch::sigmoid(logits) : torch::softmax(logits, 1));
    }
    const auto mine = parts.empty() ? torch::empty({0, outputs()}) : torch::cat(parts);
    const auto all = (comm_.size() > 1 ? comm_.all_gather_v(mine.contiguous()) : mine).contiguous();
    return std::vector<float>(all.data_ptr<float>(), all.data_ptr<float>() + all.numel());
  }

 private:
  int64_t outputs() const {
    return static_cast<int64_t>(task_ == TaskKind::multilabel ? e_.tag_names.size() : e_.class_names.size());
  }

  // The model every rank of the group builds from the seed: the checkpoint's weights (a random
  // initialisation without one, its BatchNorm statistics measured) and a new linear head.
  Net initial_net(const std::string& checkpoint_dir, const model::ModelOptions& m) {
    torch::manual_seed(static_cast<int64_t>(options_.seed));
    Net net;
    net.model = model::MartModel(m);
    if (!checkpoint_dir.empty()) model::load_weights(*net.model, checkpoint_dir + "/model.pt", comm_.device());
    net.head = torch::nn::Linear(m.dim, outputs());
    if (checkpoint_dir.empty() && options_.frozen_batch_norm && options_.bn_estimate_crops > 0)
      measure_batch_norm(*net.model);
    return net;
  }

  // A random model's statistics are 0 / 1: frozen, they would leave it unnormalised. Measure them
  // on up to bn_estimate_crops training crops, evenly spaced in the training order (every rank a
  // block of them; the result does not depend on the split).
  void measure_batch_norm(model::MartModelImpl& model) {
    std::vector<Row> sample;
    const size_t crops = std::min(train_rows_.size(), static_cast<size_t>(options_.bn_estimate_crops));
    for (size_t i = 0; i < crops; ++i) sample.push_back(train_rows_[i * train_rows_.size() / crops]);
    const auto [begin, end] = dist::contiguous_block(sample.size(), comm_.rank(), comm_.size());
    const size_t batch = static_cast<size_t>(options_.batch_size);
    const int64_t clips = estimate_batch_norm(*model.encoder, (end - begin + batch - 1) / batch, [&](size_t b) {
      const auto x = table_.batch(sample, begin + b * batch, std::min(end, begin + (b + 1) * batch));
      return x.reshape({-1, 1, x.size(2), x.size(3)});
    }, &comm_);
    if (leader())
      spdlog::info("  random initialisation: BatchNorm statistics measured on {} training crops ({} clips)", crops, clips);
  }

  const EmbeddingSet& e_;
  TaskKind task_;
  FinetuneOptions options_;
  dist::MpiCommunicator comm_;
  CropTable table_;
  std::vector<Row> train_rows_, valid_rows_, test_rows_;
  Net net_;
  std::vector<torch::Tensor> params_;
  torch::optim::Adam opt_;
  dist::GradientReducer reducer_;
  Rng order_rng_;  // the epoch order, the same on every rank of the group
};

}  // namespace

ProbeRun finetune(const std::string& data_dir, const EmbeddingSet& e, const std::string& checkpoint_dir,
                  const model::ModelOptions& m, const std::vector<size_t>& train, const std::vector<size_t>& valid,
                  const std::vector<size_t>& test, TaskKind task, const FinetuneOptions& o, MPI_Comm group) {
  MART_CHECK(!train.empty() && !valid.empty(), "fine-tuning needs training and validation tracks");
  FineTuning tuning(data_dir, e, checkpoint_dir, m, train, valid, test, task, o, group);
  EarlyStopping stop(o.max_epochs, o.patience, EarlyStopping::Better::lower, 1e-9);
  while (stop.more()) {
    tuning.train_epoch();
    const double valid_loss = tuning.valid_loss();
    const bool best = stop.record(valid_loss, tuning.parameters());
    if (tuning.leader())
      spdlog::info("  fine-tuning epoch {}/{}: valid loss {:.4f}{}", stop.epochs(), o.max_epochs, valid_loss,
                   best ? " (best)" : "");
  }
  MART_CHECK(stop.improved_once(), "fine-tuning: the validation loss was never finite (", stop.best(),
             "): the model diverged; lower eval.finetune_lr");
  stop.restore(tuning.parameters());  // the early-stopping point
  ProbeRun r;
  r.scores = tuning.test_scores();
  r.epochs = stop.epochs();
  r.best_valid_loss = stop.best();
  return r;
}

}  // namespace mart::eval
