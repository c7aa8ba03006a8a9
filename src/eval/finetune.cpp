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
  CropTable(const std::string& dir, const EmbeddingSet& set) : tracks_(set), crops_(dir, set) {}

  std::vector<Row> rows(const std::vector<size_t>& tracks) {
    std::vector<Row> out;
    for (size_t track : tracks) {
      const auto& info = tracks_.tracks[track];
      const auto starts = crops_.starts(track);
      MART_CHECK(static_cast<int64_t>(starts.size()) == info.crop_end - info.crop_begin, "track '", info.id,
                 "': the shards give another crop count than the embeddings; were they made from other data?");
      for (int64_t start : starts) out.push_back({track, start});
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
  const EmbeddingSet& tracks_;
  TrackCrops crops_;
};

// Targets of rows [begin, end): [n, k] 0/1 floats (multilabel) or [n] class indices.
torch::Tensor targets(const EmbeddingSet& set, const std::vector<Row>& rows, size_t begin, size_t end, TaskKind task) {
  const int64_t count = static_cast<int64_t>(end - begin);
  if (task == TaskKind::multiclass) {
    auto target = torch::empty({count}, torch::kLong);
    for (size_t r = begin; r < end; ++r)
      target[static_cast<int64_t>(r - begin)] = set.tracks[rows[r].track].class_index;
    return target;
  }
  const int64_t tags = static_cast<int64_t>(set.tag_names.size());
  auto target = torch::empty({count, tags});
  for (size_t r = begin; r < end; ++r)
    for (int64_t j = 0; j < tags; ++j)
      target[static_cast<int64_t>(r - begin)][j] =
          static_cast<float>(set.tracks[rows[r].track].tags[static_cast<size_t>(j)]);
  return target;
}

// Per-row losses [n].
torch::Tensor row_losses(const torch::Tensor& logits, const torch::Tensor& target, TaskKind task) {
  if (task == TaskKind::multilabel)
    return torch::binary_cross_entropy_with_logits(logits, target, {}, {}, at::Reduction::None).mean(1);
  return torch::nn::functional::cross_entropy(logits, target,
                                              torch::nn::functional::CrossEntropyFuncOptions().reduction(torch::kNone));
}

struct Net {
  model::MartModel model{nullptr};
  torch::nn::Linear head{nullptr};
  torch::Tensor forward(const torch::Tensor& x) { return head->forward(model->embed(x).hat[0].squeeze(1)); }
  std::vector<torch::Tensor> parameters() const {  // what the task trains: the projection head is unused
    std::vector<torch::Tensor> params;
    for (auto& x : model->encoder->parameters()) params.push_back(x);
    if (model->pwt) for (auto& x : model->pwt->parameters()) params.push_back(x);
    for (auto& x : head->parameters()) params.push_back(x);
    return params;
  }
};

// One fine-tuning job on the ranks of a group: the model and its optimiser, and the crops of the
// training, validation and test tracks. Each step of the job is a member.
class FineTuning {
 public:
  FineTuning(const std::string& data_dir, const EmbeddingSet& set, const std::string& checkpoint_dir,
             const model::ModelOptions& model_options, const std::vector<size_t>& train,
             const std::vector<size_t>& valid, const std::vector<size_t>& test, TaskKind task,
             const FinetuneOptions& options, MPI_Comm group)
      : tracks_(set),
        task_(task),
        options_(options),
        comm_(group),
        table_(data_dir, set),
        train_rows_(table_.rows(train)),
        valid_rows_(table_.rows(valid)),
        test_rows_(table_.rows(test)),
        net_(initial_net(checkpoint_dir, model_options)),
        params_(net_.parameters()),
        opt_(params_, torch::optim::AdamOptions(options.lr).weight_decay(options.weight_decay)),
        reducer_(params_, comm_, dist::ReducerOptions::after_backward()),
        order_rng_(seed_of(options.seed, 0x66696e65ull)) {}

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
      reducer_.zero_grad();
      if (!mine.empty()) {
        const auto losses = row_losses(net_.forward(table_.batch(mine, 0, mine.size())),
                                       targets(tracks_, mine, 0, mine.size(), task_), task_);
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
      sum += row_losses(net_.forward(table_.batch(valid_rows_, start, stop)),
                        targets(tracks_, valid_rows_, start, stop, task_), task_)
                 .sum()
                 .item<double>();
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
    return static_cast<int64_t>(task_ == TaskKind::multilabel ? tracks_.tag_names.size() : tracks_.class_names.size());
  }

  // The model every rank of the group builds from the seed: the checkpoint's weights (a random
  // initialisation without one, its BatchNorm statistics measured) and a new linear head.
  Net initial_net(const std::string& checkpoint_dir, const model::ModelOptions& model_options) {
    torch::manual_seed(static_cast<int64_t>(options_.seed));
    Net net;
    net.model = model::MartModel(model_options);
    if (!checkpoint_dir.empty()) model::load_weights(*net.model, checkpoint_dir + "/model.pt", comm_.device());
    net.head = torch::nn::Linear(model_options.dim, outputs());
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
    const int64_t clips = estimate_batch_norm(
        *model.encoder, (end - begin + batch - 1) / batch,
        [&](size_t batch_index) {
          const auto hierarchies =
              table_.batch(sample, begin + batch_index * batch, std::min(end, begin + (batch_index + 1) * batch));
          return hierarchies.reshape({-1, 1, hierarchies.size(2), hierarchies.size(3)});
        },
        &comm_);
    if (leader())
      spdlog::info("  random initialisation: BatchNorm statistics measured on {} training crops ({} clips)", crops, clips);
  }

  const EmbeddingSet& tracks_;
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

ProbeRun finetune(const std::string& data_dir, const EmbeddingSet& set, const std::string& checkpoint_dir,
                  const model::ModelOptions& model_options, const std::vector<size_t>& train,
                  const std::vector<size_t>& valid, const std::vector<size_t>& test, TaskKind task,
                  const FinetuneOptions& options, MPI_Comm group) {
  MART_CHECK(!train.empty() && !valid.empty(), "fine-tuning needs training and validation tracks");
  FineTuning tuning(data_dir, set, checkpoint_dir, model_options, train, valid, test, task, options, group);
  EarlyStopping stop(options.max_epochs, options.patience, EarlyStopping::Better::lower, 1e-9);
  while (stop.more()) {
    tuning.train_epoch();
    const double valid_loss = tuning.valid_loss();
    const bool best = stop.record(valid_loss, tuning.parameters());
    if (tuning.leader())
      spdlog::info("  fine-tuning epoch {}/{}: valid loss {:.4f}{}", stop.epochs(), options.max_epochs, valid_loss,
                   best ? " (best)" : "");
  }
  MART_CHECK(stop.improved_once(), "fine-tuning: the validation loss was never finite (", stop.best(),
             "): the model diverged; lower eval.finetune_lr");
  stop.restore(tuning.parameters());  // the early-stopping point
  ProbeRun result;
  result.scores = tuning.test_scores();
  result.epochs = stop.epochs();
  result.best_valid_loss = stop.best();
  return result;
}

}  // namespace mart::eval
