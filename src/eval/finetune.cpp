#include "mart/eval/finetune.h"

#include <spdlog/spdlog.h>
#include <torch/torch.h>

#include <algorithm>
#include <limits>
#include <map>

#include "mart/core/error.h"
#include "mart/core/rng.h"
#include "mart/dist/block.h"
#include "mart/dist/gradient_reducer.h"
#include "mart/dist/mpi_communicator.h"
#include "mart/eval/batch_norm_stats.h"
#include "mart/model/mart_model.h"
#include "mart/run/step.h"
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

}  // namespace

ProbeRun finetune(const std::string& data_dir, const EmbeddingSet& e, const std::string& checkpoint_dir,
                  const model::ModelOptions& m, const std::vector<size_t>& train, const std::vector<size_t>& valid,
                  const std::vector<size_t>& test, TaskKind task, const FinetuneOptions& o, MPI_Comm group) {
  MART_CHECK(!train.empty() && !valid.empty(), "fine-tuning needs training and validation tracks");
  dist::MpiCommunicator comm(group);
  const int64_t k = task == TaskKind::multilabel ? static_cast<int64_t>(e.tag_names.size())
                                                 : static_cast<int64_t>(e.class_names.size());
  CropTable table(data_dir, e);
  const std::vector<Row> train_rows = table.rows(train), valid_rows = table.rows(valid), test_rows = table.rows(test);

  // Every rank of the group builds the same initial weights from the seed.
  torch::manual_seed(static_cast<int64_t>(o.seed));
  Net net;
  net.model = model::MartModel(m);
  if (!checkpoint_dir.empty()) model::load_weights(*net.model, checkpoint_dir + "/model.pt", comm.device());
  net.head = torch::nn::Linear(m.dim, k);
  if (checkpoint_dir.empty() && o.frozen_batch_norm && o.bn_estimate_crops > 0) {
    // A random model's statistics are 0 / 1: frozen, they would leave it unnormalised. Measure
    // them on training crops (every rank a block of them; the result does not depend on the split).
    std::vector<Row> sample;
    const size_t n = std::min(train_rows.size(), static_cast<size_t>(o.bn_estimate_crops));
    for (size_t i = 0; i < n; ++i) sample.push_back(train_rows[i * train_rows.size() / n]);
    const auto block = dist::contiguous_block(sample.size(), comm.rank(), comm.size());
    const size_t b0 = block.first, b1 = block.second, bs = static_cast<size_t>(o.batch_size);
    const int64_t clips = estimate_batch_norm(*net.model->encoder, (b1 - b0 + bs - 1) / bs, [&](size_t b) {
      const auto x = table.batch(sample, b0 + b * bs, std::min(b1, b0 + (b + 1) * bs));
      return x.reshape({-1, 1, x.size(2), x.size(3)});
    }, &comm);
    if (comm.rank() == 0)
      spdlog::info("  random initialisation: BatchNorm statistics measured on {} training crops ({} clips)", n, clips);
  }
  const auto params = net.parameters();
  torch::optim::Adam opt(params, torch::optim::AdamOptions(o.lr).weight_decay(o.weight_decay));
  dist::ReducerOptions ro;
  ro.overlap = false;
  dist::GradientReducer reducer(params, comm, ro);
  const double G = comm.size();

  // Mean loss over `rows`, each rank taking a block of them.
  auto mean_loss = [&](const std::vector<Row>& rows) {
    torch::NoGradGuard no_grad;
    const auto [b0, b1] = dist::contiguous_block(rows.size(), comm.rank(), comm.size());
    double sum = 0;
    for (size_t s = b0; s < b1; s += static_cast<size_t>(o.batch_size)) {
      const size_t end = std::min(b1, s + static_cast<size_t>(o.batch_size));
      sum += row_losses(net.forward(table.batch(rows, s, end)), targets(e, rows, s, end, task), task).sum().item<double>();
    }
    auto t = torch::tensor({sum}, torch::kFloat64);
    comm.all_reduce(t);
    // MPI does not promise every rank the same bits of a sum; early stopping must agree exactly.
    comm.broadcast(t, 0);
    return t.item<double>() / static_cast<double>(rows.size());
  };

  Rng rng(seed_of(o.seed, 0x66696e65ull));  // the epoch order, the same on every rank of the group
  std::vector<size_t> order(train_rows.size());
  double best = std::numeric_limits<double>::infinity();
  int since_best = 0, epochs = 0;
  std::vector<torch::Tensor> best_params;
  for (; epochs < o.max_epochs && since_best < o.patience; ++epochs) {
    net.model->train();
    if (o.frozen_batch_norm) run::freeze_batch_norm(*net.model);
    for (size_t i = 0; i < order.size(); ++i) order[i] = i;
    rng.shuffle(order);
    for (size_t s = 0; s < order.size(); s += static_cast<size_t>(o.batch_size)) {
      const size_t global = std::min(order.size(), s + static_cast<size_t>(o.batch_size)) - s;
      const auto [b0, b1] = dist::contiguous_block(global, comm.rank(), comm.size());
      std::vector<Row> mine;
      for (size_t i = s + b0; i < s + b1; ++i) mine.push_back(train_rows[order[i]]);
      opt.zero_grad();
      if (!mine.empty()) {
        const auto losses = row_losses(net.forward(table.batch(mine, 0, mine.size())), targets(e, mine, 0, mine.size(), task), task);
        // The reducer takes the mean over the group: scale so it is the mean over the global batch.
        (losses.sum() * (G / static_cast<double>(global))).backward();
      }
      reducer.finalize();
      opt.step();
    }
    net.model->eval();
    const double v = mean_loss(valid_rows);
    if (comm.rank() == 0)
      spdlog::info("  fine-tuning epoch {}/{}: valid loss {:.4f}{}", epochs + 1, o.max_epochs, v,
                   v < best - 1e-9 ? " (best)" : "");
    if (v < best - 1e-9) {
      best = v;
      since_best = 0;
      best_params.clear();
      for (auto& p : params) best_params.push_back(p.detach().clone());
    } else {
      ++since_best;
    }
  }
  MART_CHECK(!best_params.empty(), "fine-tuning: the validation loss was never finite (", best,
             "): the model diverged; lower eval.finetune_lr");
  torch::NoGradGuard no_grad;
  for (size_t i = 0; i < params.size(); ++i) params[i].copy_(best_params[i]);  // the early-stopping point
  net.model->eval();
  // Test scores: each rank a block of rows, gathered in rank order = row order.
  const auto [b0, b1] = dist::contiguous_block(test_rows.size(), comm.rank(), comm.size());
  std::vector<torch::Tensor> parts;
  for (size_t s = b0; s < b1; s += static_cast<size_t>(o.batch_size)) {
    const auto logits = net.forward(table.batch(test_rows, s, std::min(b1, s + static_cast<size_t>(o.batch_size))));
    parts.push_back(task == TaskKind::multilabel ? torch::sigmoid(logits) : torch::softmax(logits, 1));
  }
  const auto mine = parts.empty() ? torch::empty({0, k}) : torch::cat(parts);
  const auto all = (comm.size() > 1 ? comm.all_gather_v(mine.contiguous()) : mine).contiguous();
  ProbeRun r;
  r.scores.assign(all.data_ptr<float>(), all.data_ptr<float>() + all.numel());
  r.epochs = epochs;
  r.best_valid_loss = best;
  return r;
}

}  // namespace mart::eval
