#include "mart/eval/covers_finetune.h"

#include <spdlog/spdlog.h>
#include <torch/torch.h>

#include <algorithm>
#include <map>
#include <set>

#include "mart/core/error.h"
#include "mart/core/rng.h"
#include "mart/dist/block.h"
#include "mart/dist/gradient_reducer.h"
#include "mart/dist/mpi_communicator.h"
#include "mart/model/cqtnet.h"
#include "mart/model/mart_model.h"
#include "early_stopping.h"
#include "track_crops.h"

namespace mart::eval {

CoversModel parse_covers_model(const std::string& name) {
  if (name == "cqtnet") return CoversModel::cqtnet;
  if (name == "mart") return CoversModel::mart;
  if (name == "mart+cqtnet") return CoversModel::mart_cqtnet;
  MART_CONFIG_ERROR("unknown covers model '", name, "' (models: cqtnet, mart, mart+cqtnet)");
}

std::string covers_model_name(CoversModel kind) {
  switch (kind) {
    case CoversModel::cqtnet: return "cqtnet";
    case CoversModel::mart: return "mart";
    case CoversModel::mart_cqtnet: return "mart+cqtnet";
  }
  return "?";
}

std::vector<int64_t> draw_train_crops(std::vector<int64_t> starts, size_t want, Rng& rng) {
  MART_CHECK(!starts.empty() && want >= 1, "draw_train_crops: no crop to draw or none wanted");
  const size_t available = starts.size();
  std::vector<int64_t> chosen;
  chosen.reserve(want);
  for (size_t k = 0; k < want; ++k) {
    if (want < available) std::swap(starts[k], starts[k + rng.next() % (available - k)]);
    chosen.push_back(starts[k % available]);
  }
  return chosen;
}

namespace {

// The audio features of one covers set's tracks: the constant-Q (normalised as CQTNet's input,
// kept in memory: 84 floats per 0.46 s) and the log-mel crop hierarchies, read from the shards.
class TrackReader {
 public:
  TrackReader(const CoversSet& set, bool need_cqt)
      : dir_(set.data_dir), tracks_(*set.tracks), crops_(set.data_dir, *set.tracks) {
    if (need_cqt)
      for (const auto& t : tracks_.tracks)
        MART_CHECK(crops_.reader(t.shard).cqt_bins() > 0, "the shards in '", dir_, "' have no constant-Q: the covers "
                   "models cqtnet and mart+cqtnet need mart-preprocess --features.cqt true");
  }
  int bins() { return tracks_.tracks.empty() ? 0 : crops_.reader(tracks_.tracks[0].shard).cqt_bins(); }

  // [bins, T] divided by its largest value.
  const torch::Tensor& cqt(size_t track) {
    auto cached = cqt_.find(track);
    if (cached == cqt_.end()) {
      const auto& info = tracks_.tracks[track];
      const auto& reader = crops_.reader(info.shard);
      auto values = reader.track_cqt(info.shard_track);
      const int64_t bins = reader.cqt_bins(), rows = static_cast<int64_t>(values.size()) / bins;
      MART_CHECK(rows > 0, "track '", info.id, "' has no constant-Q frames (shorter than 20 hops?)");
      auto raw = torch::from_blob(values.data(), {rows, bins}, torch::kFloat32).t().contiguous();
      cached = cqt_.emplace(track, model::cqtnet_normalize(raw)).first;
    }
    return cached->second;
  }
  // A segment of `len` frames from `offset` (zero-padded past the end), [bins, len].
  torch::Tensor segment(size_t track, int64_t len, Rng& rng) {
    const auto& full = cqt(track);
    const int64_t frames = full.size(1);
    if (frames <= len) return torch::constant_pad_nd(full, {0, len - frames});
    const int64_t off =
        static_cast<int64_t>(rng.next() % static_cast<uint64_t>(frames - len));  // as cut_data: [0, T - len)
    return full.slice(1, off, off + len);
  }
  // The top-clip starts of the track's evaluation crops.
  std::vector<int64_t> crop_starts(size_t track) { return crops_.starts(track); }
  // The hierarchies of `starts` of `track`: [n, clips_total, n_mels, T].
  torch::Tensor crops(size_t track, const std::vector<int64_t>& starts) {
    std::vector<std::pair<size_t, int64_t>> pairs;
    for (int64_t start : starts) pairs.emplace_back(track, start);
    return crops_.hierarchies(pairs);
  }

 private:
  std::string dir_;
  const EmbeddingSet& tracks_;
  TrackCrops crops_;
  std::map<size_t, torch::Tensor> cqt_;
};

// The network: CQTNet's pooled features and/or MART's s^0, concatenated, -> embedding -> works.
struct CoversNet : torch::nn::Module {
  CoversNet(CoversModel kind, const model::ModelOptions& mart_options, const std::string& checkpoint_dir,
            const CoversFinetuneOptions& options, int64_t bins, int64_t works) {
    int64_t in_features = 0;
    if (kind != CoversModel::mart) {
      auto cqt_options = model::cqtnet_options(options.cqtnet_width);
      cqt_options.bins = bins;
      cqtnet = register_module("cqtnet", model::CqtNet(cqt_options));
      in_features += cqt_options.channels.back();
    }
    if (kind != CoversModel::cqtnet) {
      mart = register_module("mart", model::MartModel(mart_options));
      if (!checkpoint_dir.empty()) model::load_weights(*mart, checkpoint_dir + "/model.pt", torch::kCPU);
      in_features += mart_options.dim;
    }
    fc0 = register_module("fc0", torch::nn::Linear(in_features, options.embedding));
    fc1 = register_module("fc1", torch::nn::Linear(options.embedding, works));
  }
  // cqt: [B, bins, L] (undefined without CQTNet); hier: [B, crops_per_item, clips_total, n_mels, T]
  // (undefined without MART): s^0 averaged over an item's crops. -> the embedding [B, embedding].
  torch::Tensor embed(const torch::Tensor& cqt, const torch::Tensor& hier) {
    std::vector<torch::Tensor> parts;
    if (cqtnet) parts.push_back(cqtnet->forward(cqt));
    if (mart) {
      // s^0 of every crop, averaged per item; 8 crops per forward at most (a whole song's crops at
      // once would hold gigabytes of activations), which gives the same mean.
      const int64_t items = hier.size(0), crops = hier.size(1);
      const auto flat = hier.flatten(0, 1);
      std::vector<torch::Tensor> s0;
      for (int64_t c = 0; c < flat.size(0); c += 8)
        s0.push_back(mart->embed(flat.slice(0, c, std::min<int64_t>(flat.size(0), c + 8))).hat[0].squeeze(1));
      parts.push_back(torch::cat(s0).reshape({items, crops, -1}).mean(1));
    }
    return fc0(parts.size() == 1 ? parts[0] : torch::cat(parts, 1));
  }
  // What the task trains (the MART projection head is unused): the pretrained part (MART's
  // encoder and part-whole transformer) and the new one (CQTNet, the embedding layer, the classifier).
  std::vector<torch::Tensor> pretrained_parameters() {
    std::vector<torch::Tensor> params;
    if (mart) {
      for (auto& x : mart->encoder->parameters()) params.push_back(x);
      if (mart->pwt) for (auto& x : mart->pwt->parameters()) params.push_back(x);
    }
    return params;
  }
  std::vector<torch::Tensor> new_parameters() {
    std::vector<torch::Tensor> params;
    if (cqtnet) for (auto& x : cqtnet->parameters()) params.push_back(x);
    for (auto& x : fc0->parameters()) params.push_back(x);
    for (auto& x : fc1->parameters()) params.push_back(x);
    return params;
  }
  std::vector<torch::nn::BatchNorm2dImpl*> batch_norms() {
    std::vector<torch::nn::BatchNorm2dImpl*> out;
    for (auto& mod : modules(false))
      if (auto* bn = dynamic_cast<torch::nn::BatchNorm2dImpl*>(mod.get())) out.push_back(bn);
    return out;
  }

  model::CqtNet cqtnet{nullptr};
  model::MartModel mart{nullptr};
  torch::nn::Linear fc0{nullptr}, fc1{nullptr};
};

// Training works -> class indices, in order of first appearance in `train`. A valid or test track
// of a training work is an error: the split must be by work.
std::map<int64_t, int64_t> training_works(const EmbeddingSet& set, const std::vector<size_t>& train,
                                          const std::vector<size_t>& valid, const std::vector<size_t>& test) {
  std::map<int64_t, int64_t> work_class;
  for (size_t i : train) {
    MART_CHECK(set.tracks[i].cover_group >= 0, "covers fine-tuning: training track '", set.tracks[i].id,
               "' has no work");
    work_class.emplace(set.tracks[i].cover_group, static_cast<int64_t>(work_class.size()));
  }
  for (const auto* side : {&valid, &test})
    for (size_t i : *side)
      MART_CHECK(work_class.count(set.tracks[i].cover_group) == 0, "covers fine-tuning: track '", set.tracks[i].id,
                 "' is not a training track but its work is trained on (split by work first)");
  return work_class;
}

// The network's inputs for a batch of items: CQT segments [B, bins, L] (undefined without CQTNet)
// and crop hierarchies [B, crops, clips_total, n_mels, T] (undefined without MART).
struct NetInputs {
  torch::Tensor cqt, crops;
};

// One covers model's training on the ranks of a group: the network, its optimiser and what its
// steps share. The early-stopping loop is covers_finetune's.
class CoversTraining {
 public:
  CoversTraining(CoversModel kind, const CoversSet& set, const std::vector<size_t>& train,
                 const std::vector<size_t>& valid, const std::vector<size_t>& test, const std::string& checkpoint_dir,
                 const model::ModelOptions& model_options, const CoversFinetuneOptions& options, MPI_Comm group)
      : kind_(kind),
        options_(options),
        use_cqt_(kind != CoversModel::mart),
        use_mart_(kind != CoversModel::cqtnet),
        tracks_(*set.tracks),
        comm_(group),
        reader_(set, use_cqt_),
        work_class_(training_works(tracks_, train, valid, test)),
        net_(seeded_net(model_options, checkpoint_dir)),
        params_(trained_parameters()),
        opt_(param_groups(), adam(options.lr)),
        reducer_(params_, comm_, dist::ReducerOptions::after_backward()),
        order_(train),
        order_rng_(seed_of(options.seed, 0x636f7665ull)),
        bn_items_(batch_norm_items(train)) {
    trained_.insert(bn_items_.begin(), bn_items_.end());
  }

  bool leader() const { return comm_.rank() == 0; }
  TrackReader& reader() { return reader_; }
  // Every track that entered a training batch or a BatchNorm measurement, once each.
  std::vector<size_t> trained() const { return {trained_.begin(), trained_.end()}; }
  // What early stopping keeps at the best epoch: the weights and the BatchNorm statistics.
  std::vector<torch::Tensor> state() {
    std::vector<torch::Tensor> state = net_.parameters();
    for (const auto& buffer : net_.buffers()) state.push_back(buffer);
    return state;
  }

  // Epoch `epoch` (1-based) over the training tracks in a new order: every global batch is split
  // into micro-batches of bn_batch items, a rank taking whole ones. Returns the mean training loss.
  double train_epoch(int epoch) {
    order_rng_.shuffle(order_);
    net_.train();
    const size_t batch = static_cast<size_t>(options_.batch_size), micro = static_cast<size_t>(options_.bn_batch);
    double loss_sum = 0;
    size_t batch_index = 0;
    for (size_t start = 0; start < order_.size(); start += batch, ++batch_index) {
      const size_t global = std::min(order_.size(), start + batch) - start;
      trained_.insert(order_.begin() + static_cast<std::ptrdiff_t>(start),
                      order_.begin() + static_cast<std::ptrdiff_t>(start + global));
      const int64_t frames = options_.segments[batch_index % options_.segments.size()];
      const auto [begin, end] = dist::chunk_block(global, micro, comm_.rank(), comm_.size());
      reducer_.zero_grad();
      for (size_t first = start + begin; first < start + end; first += micro) {
        const std::vector<size_t> items = slice(order_, first, std::min(start + end, first + micro));
        const NetInputs inputs = train_inputs(items, frames, static_cast<uint64_t>(epoch), first);
        auto works = torch::empty({static_cast<int64_t>(items.size())}, torch::kLong);
        for (size_t j = 0; j < items.size(); ++j)
          works[static_cast<int64_t>(j)] = work_class_.at(tracks_.tracks[items[j]].cover_group);
        const auto loss = torch::nn::functional::cross_entropy(
            net_.fc1(net_.embed(inputs.cqt, inputs.crops)), works,
            torch::nn::functional::CrossEntropyFuncOptions().reduction(torch::kSum));
        loss_sum += loss.item<double>();
        // The reducer averages over the group: scale so the result is the mean over the global batch.
        (loss * (static_cast<double>(comm_.size()) / static_cast<double>(global))).backward();
      }
      reducer_.finalize();
      opt_.step();
    }
    auto total = torch::tensor({loss_sum}, torch::kFloat64);
    comm_.all_reduce(total);
    return total.item<double>() / static_cast<double>(order_.size());
  }

  // Precise BatchNorm: every BatchNorm's statistics become the mean of its batch statistics over
  // the micro-batches of a fixed set of training items (each rank a block of them).
  void precise_batch_norm() {
    torch::NoGradGuard no_grad;
    auto norms = net_.batch_norms();
    std::vector<c10::optional<double>> momentum;
    for (auto* norm : norms) {
      momentum.push_back(norm->options.momentum());
      norm->options.momentum(c10::nullopt);  // a cumulative average of the batches' statistics
      norm->reset_running_stats();
    }
    net_.train();
    const size_t micro = static_cast<size_t>(options_.bn_batch);
    const auto [begin, end] = dist::chunk_block(bn_items_.size(), micro, comm_.rank(), comm_.size());
    for (size_t first = begin; first < end; first += micro) {
      const auto items = slice(bn_items_, first, std::min(end, first + micro));
      const NetInputs inputs = train_inputs(items, options_.segments[0], 0xb0b0, first);
      net_.embed(inputs.cqt, inputs.crops);
    }
    // Sum over ranks of (statistics x batches), then divide by all batches.
    std::vector<torch::Tensor> sums;
    for (auto* norm : norms) {
      const double batches = static_cast<double>(norm->num_batches_tracked.item<int64_t>());
      sums.push_back(torch::cat({norm->running_mean.to(torch::kFloat64) * batches,
                                 norm->running_var.to(torch::kFloat64) * batches,
                                 torch::full({1}, batches, torch::kFloat64)}));
    }
    auto all = torch::cat(sums);
    if (comm_.size() > 1) {
      comm_.all_reduce(all);
      comm_.broadcast(all, 0);  // every rank the same bits
    }
    int64_t offset = 0;
    for (size_t index = 0; index < norms.size(); ++index) {
      auto* norm = norms[index];
      const int64_t channels = norm->running_mean.size(0);
      const double batches = all[offset + 2 * channels].item<double>();
      if (batches > 0) {
        norm->running_mean.copy_((all.slice(0, offset, offset + channels) / batches).to(torch::kFloat32));
        norm->running_var.copy_((all.slice(0, offset + channels, offset + 2 * channels) / batches).to(torch::kFloat32));
      }
      norm->options.momentum(momentum[index]);
      offset += 2 * channels + 1;
    }
    net_.eval();
  }

  // The covers metrics of `items` (indices into `set`'s tracks, read by `reader`) ranked by the
  // embeddings of whole tracks.
  metrics::RetrievalSummary rank(TrackReader& reader, const EmbeddingSet& set, const std::vector<size_t>& items) {
    const auto embeddings = embed_tracks(reader, items);
    std::vector<int64_t> works;
    for (size_t i : items) works.push_back(set.tracks[i].cover_group);
    const size_t dim = static_cast<size_t>(embeddings.size(1));
    return metrics::retrieval_metrics(metrics::Embeddings{embeddings.data_ptr<float>(), items.size(), dim}, works);
  }

 private:
  static std::vector<size_t> slice(const std::vector<size_t>& v, size_t begin, size_t end) {
    return {v.begin() + static_cast<std::ptrdiff_t>(begin), v.begin() + static_cast<std::ptrdiff_t>(end)};
  }
  torch::optim::AdamOptions adam(double lr) const {
    return torch::optim::AdamOptions(lr).weight_decay(options_.weight_decay);
  }

  CoversNet seeded_net(const model::ModelOptions& m, const std::string& checkpoint_dir) {
    torch::manual_seed(static_cast<int64_t>(options_.seed));  // every rank of the group builds the same weights
    return CoversNet(kind_, m, checkpoint_dir, options_, use_cqt_ ? reader_.bins() : 84,
                     static_cast<int64_t>(work_class_.size()));
  }
  std::vector<torch::Tensor> trained_parameters() {
    std::vector<torch::Tensor> params = net_.new_parameters();
    for (const auto& p : net_.pretrained_parameters()) params.push_back(p);
    return params;
  }
  // The new part at lr, the pretrained one (if any) at pretrained_lr.
  std::vector<torch::optim::OptimizerParamGroup> param_groups() {
    std::vector<torch::optim::OptimizerParamGroup> groups;
    groups.emplace_back(net_.new_parameters(), std::make_unique<torch::optim::AdamOptions>(adam(options_.lr)));
    const auto pretrained = net_.pretrained_parameters();
    if (!pretrained.empty())
      groups.emplace_back(pretrained, std::make_unique<torch::optim::AdamOptions>(adam(options_.pretrained_lr)));
    return groups;
  }
  // The training items whose micro-batches measure BatchNorm: a seeded draw of bn_items of them.
  std::vector<size_t> batch_norm_items(std::vector<size_t> train) const {
    Rng rng(seed_of(options_.seed, 0x626e6974ull));
    rng.shuffle(train);
    train.resize(std::min(train.size(), static_cast<size_t>(std::max(options_.bn_items, options_.bn_batch))));
    return train;
  }

  // Inputs of training items: a segment of `frames` CQT frames and train_crops crop hierarchies
  // each, drawn from (seed, epoch, position): the same on any rank that builds them.
  NetInputs train_inputs(const std::vector<size_t>& items, int64_t frames, uint64_t epoch, size_t first_position) {
    std::vector<torch::Tensor> cqts, crops;
    for (size_t index = 0; index < items.size(); ++index) {
      Rng rng(seed_of(options_.seed, epoch, first_position + index));
      if (use_cqt_) cqts.push_back(reader_.segment(items[index], frames, rng));
      if (use_mart_) {
        auto starts = reader_.crop_starts(items[index]);
        MART_CHECK(!starts.empty(), "track '", tracks_.tracks[items[index]].id, "' has no crop");
        const auto chosen = draw_train_crops(std::move(starts), static_cast<size_t>(options_.train_crops), rng);
        crops.push_back(reader_.crops(items[index], chosen));
      }
    }
    return {use_cqt_ ? torch::stack(cqts) : torch::Tensor(), use_mart_ ? torch::stack(crops) : torch::Tensor()};
  }

  // The embeddings of whole tracks, [items, embedding]: each rank a block, gathered in order.
  torch::Tensor embed_tracks(TrackReader& reader, const std::vector<size_t>& items) {
    torch::NoGradGuard no_grad;
    net_.eval();
    const auto [begin, end] = dist::contiguous_block(items.size(), comm_.rank(), comm_.size());
    std::vector<torch::Tensor> rows;
    for (size_t index = begin; index < end; ++index) {
      const size_t track = items[index];
      NetInputs inputs;
      if (use_cqt_) inputs.cqt = reader.cqt(track).unsqueeze(0);
      if (use_mart_) inputs.crops = reader.crops(track, reader.crop_starts(track)).unsqueeze(0);
      rows.push_back(net_.embed(inputs.cqt, inputs.crops));
    }
    auto mine = rows.empty() ? torch::empty({0, options_.embedding}) : torch::cat(rows);
    return (comm_.size() > 1 ? comm_.all_gather_v(mine.contiguous()) : mine).contiguous();
  }

  CoversModel kind_;
  CoversFinetuneOptions options_;
  bool use_cqt_, use_mart_;
  const EmbeddingSet& tracks_;  // the covers set's tracks (train, valid and test index them)
  dist::MpiCommunicator comm_;
  TrackReader reader_;
  std::map<int64_t, int64_t> work_class_;
  CoversNet net_;
  std::vector<torch::Tensor> params_;
  torch::optim::Adam opt_;
  dist::GradientReducer reducer_;
  std::vector<size_t> order_;  // the training tracks, reshuffled every epoch
  Rng order_rng_;
  std::vector<size_t> bn_items_;
  std::set<size_t> trained_;
};

}  // namespace

CoversFinetuneResult covers_finetune(CoversModel kind, const CoversSet& set, const std::vector<size_t>& train,
                                     const std::vector<size_t>& valid, const std::vector<size_t>& test,
                                     const CoversSet& transfer, const std::string& checkpoint_dir,
                                     const model::ModelOptions& model_options, const CoversFinetuneOptions& options,
                                     MPI_Comm group) {
  MART_CHECK(set.tracks != nullptr && !train.empty() && !valid.empty() && !test.empty(),
             "covers fine-tuning needs train, valid and test works");
  CoversTraining training(kind, set, train, valid, test, checkpoint_dir, model_options, options, group);
  EarlyStopping stop(options.max_epochs, options.patience, EarlyStopping::Better::higher, 1e-12);
  while (stop.more()) {
    const double loss = training.train_epoch(stop.epochs() + 1);
    training.precise_batch_norm();
    const double valid_map = training.rank(training.reader(), *set.tracks, valid).map;
    const bool best = stop.record(valid_map, training.state());
    if (training.leader())
      spdlog::info("  covers {} epoch {}/{}: train loss {:.4f}, valid MAP {:.4f}{}", covers_model_name(kind),
                   stop.epochs(), options.max_epochs, loss, valid_map, best ? " (best)" : "");
  }
  MART_CHECK(stop.improved_once(), "covers fine-tuning (", covers_model_name(kind), "): the valid MAP was never a "
             "number: the model diverged; lower eval.covers_lr or eval.covers_pretrained_lr");
  stop.restore(training.state());  // back to the early-stopping point, statistics included
  CoversFinetuneResult result;
  result.epochs = stop.epochs();
  result.best_epoch = stop.best_epoch();
  result.best_valid_map = stop.best();
  result.test = training.rank(training.reader(), *set.tracks, test);
  if (transfer.tracks != nullptr) {
    TrackReader transfer_reader(transfer, kind != CoversModel::mart);
    std::vector<size_t> all(transfer.tracks->tracks.size());
    for (size_t i = 0; i < all.size(); ++i) all[i] = i;
    result.transfer = training.rank(transfer_reader, *transfer.tracks, all);
    result.has_transfer = true;
  }
  result.trained = training.trained();
  return result;
}

}  // namespace mart::eval
