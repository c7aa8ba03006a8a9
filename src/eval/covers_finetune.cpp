#include "mart/eval/covers_finetune.h"

#include <spdlog/spdlog.h>
#include <torch/torch.h>

#include <algorithm>
#include <limits>
#include <map>
#include <set>

#include "mart/core/error.h"
#include "mart/core/rng.h"
#include "mart/dist/block.h"
#include "mart/dist/gradient_reducer.h"
#include "mart/dist/mpi_communicator.h"
#include "mart/model/cqtnet.h"
#include "mart/model/mart_model.h"
#include "track_crops.h"

namespace mart::eval {

CoversModel parse_covers_model(const std::string& name) {
  if (name == "cqtnet") return CoversModel::cqtnet;
  if (name == "mart") return CoversModel::mart;
  if (name == "mart+cqtnet") return CoversModel::mart_cqtnet;
  MART_CONFIG_ERROR("unknown covers model '", name, "' (models: cqtnet, mart, mart+cqtnet)");
}

std::string covers_model_name(CoversModel m) {
  switch (m) {
    case CoversModel::cqtnet: return "cqtnet";
    case CoversModel::mart: return "mart";
    case CoversModel::mart_cqtnet: return "mart+cqtnet";
  }
  return "?";
}

std::vector<int64_t> draw_train_crops(std::vector<int64_t> starts, size_t want, Rng& rng) {
  MART_CHECK(!starts.empty() && want >= 1, "draw_train_crops: no crop to draw or none wanted");
  const size_t n = starts.size();
  std::vector<int64_t> chosen;
  chosen.reserve(want);
  for (size_t k = 0; k < want; ++k) {
    if (want < n) std::swap(starts[k], starts[k + rng.next() % (n - k)]);
    chosen.push_back(starts[k % n]);
  }
  return chosen;
}

namespace {

// The audio features of one covers set's tracks: the constant-Q (normalised as CQTNet's input,
// kept in memory: 84 floats per 0.46 s) and the log-mel crop hierarchies, read from the shards.
class TrackReader {
 public:
  TrackReader(const CoversSet& s, bool need_cqt) : dir_(s.data_dir), e_(*s.tracks), crops_(s.data_dir, *s.tracks) {
    if (need_cqt)
      for (const auto& t : e_.tracks)
        MART_CHECK(crops_.reader(t.shard).cqt_bins() > 0, "the shards in '", dir_, "' have no constant-Q: the covers "
                   "models cqtnet and mart+cqtnet need mart-preprocess --features.cqt true");
  }
  int bins() { return e_.tracks.empty() ? 0 : crops_.reader(e_.tracks[0].shard).cqt_bins(); }

  // [bins, T] divided by its largest value.
  const torch::Tensor& cqt(size_t i) {
    auto it = cqt_.find(i);
    if (it == cqt_.end()) {
      const auto& t = e_.tracks[i];
      const auto& r = crops_.reader(t.shard);
      auto v = r.track_cqt(t.shard_track);
      const int64_t bins = r.cqt_bins(), rows = static_cast<int64_t>(v.size()) / bins;
      MART_CHECK(rows > 0, "track '", t.id, "' has no constant-Q frames (shorter than 20 hops?)");
      auto x = torch::from_blob(v.data(), {rows, bins}, torch::kFloat32).t().contiguous();
      it = cqt_.emplace(i, model::cqtnet_normalize(x)).first;
    }
    return it->second;
  }
  // A segment of `len` frames from `offset` (zero-padded past the end), [bins, len].
  torch::Tensor segment(size_t i, int64_t len, Rng& rng) {
    const auto& x = cqt(i);
    const int64_t T = x.size(1);
    if (T <= len) return torch::constant_pad_nd(x, {0, len - T});
    const int64_t off = static_cast<int64_t>(rng.next() % static_cast<uint64_t>(T - len));  // as cut_data: [0, T - len)
    return x.slice(1, off, off + len);
  }
  // The top-clip starts of the track's evaluation crops.
  std::vector<int64_t> crop_starts(size_t i) { return crops_.starts(i); }
  // The hierarchies of `starts` of track i: [n, clips_total, n_mels, T].
  torch::Tensor crops(size_t i, const std::vector<int64_t>& starts) {
    std::vector<std::pair<size_t, int64_t>> pairs;
    for (int64_t k : starts) pairs.emplace_back(i, k);
    return crops_.hierarchies(pairs);
  }

 private:
  std::string dir_;
  const EmbeddingSet& e_;
  TrackCrops crops_;
  std::map<size_t, torch::Tensor> cqt_;
};

// The network: CQTNet's pooled features and/or MART's s^0, concatenated, -> embedding -> works.
struct CoversNet : torch::nn::Module {
  CoversNet(CoversModel kind, const model::ModelOptions& m, const std::string& checkpoint_dir, const CoversFinetuneOptions& o,
            int64_t bins, int64_t works) {
    int64_t in = 0;
    if (kind != CoversModel::mart) {
      auto co = model::cqtnet_options(o.cqtnet_width);
      co.bins = bins;
      cqtnet = register_module("cqtnet", model::CqtNet(co));
      in += co.channels.back();
    }
    if (kind != CoversModel::cqtnet) {
      mart = register_module("mart", model::MartModel(m));
      if (!checkpoint_dir.empty()) model::load_weights(*mart, checkpoint_dir + "/model.pt", torch::kCPU);
      in += m.dim;
    }
    fc0 = register_module("fc0", torch::nn::Linear(in, o.embedding));
    fc1 = register_module("fc1", torch::nn::Linear(o.embedding, works));
  }
  // cqt: [B, bins, L] (undefined without CQTNet); hier: [B, crops_per_item, clips_total, n_mels, T]
  // (undefined without MART): s^0 averaged over an item's crops. -> the embedding [B, embedding].
  torch::Tensor embed(const torch::Tensor& cqt, const torch::Tensor& hier) {
    std::vector<torch::Tensor> parts;
    if (cqtnet) parts.push_back(cqtnet->forward(cqt));
    if (mart) {
      // s^0 of every crop, averaged per item; 8 crops per forward at most (a whole song's crops at
      // once would hold gigabytes of activations), which gives the same mean.
      const int64_t b = hier.size(0), k = hier.size(1);
      const auto flat = hier.flatten(0, 1);
      std::vector<torch::Tensor> s0;
      for (int64_t c = 0; c < flat.size(0); c += 8)
        s0.push_back(mart->embed(flat.slice(0, c, std::min<int64_t>(flat.size(0), c + 8))).hat[0].squeeze(1));
      parts.push_back(torch::cat(s0).reshape({b, k, -1}).mean(1));
    }
    return fc0(parts.size() == 1 ? parts[0] : torch::cat(parts, 1));
  }
  // What the task trains (the MART projection head is unused): the pretrained part (MART's
  // encoder and part-whole transformer) and the new one (CQTNet, the embedding layer, the classifier).
  std::vector<torch::Tensor> pretrained_parameters() {
    std::vector<torch::Tensor> p;
    if (mart) {
      for (auto& x : mart->encoder->parameters()) p.push_back(x);
      if (mart->pwt) for (auto& x : mart->pwt->parameters()) p.push_back(x);
    }
    return p;
  }
  std::vector<torch::Tensor> new_parameters() {
    std::vector<torch::Tensor> p;
    if (cqtnet) for (auto& x : cqtnet->parameters()) p.push_back(x);
    for (auto& x : fc0->parameters()) p.push_back(x);
    for (auto& x : fc1->parameters()) p.push_back(x);
    return p;
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

}  // namespace

CoversFinetuneResult covers_finetune(CoversModel kind, const CoversSet& set, const std::vector<size_t>& train,
                                     const std::vector<size_t>& valid, const std::vector<size_t>& test,
                                     const CoversSet& transfer, const std::string& checkpoint_dir,
                                     const model::ModelOptions& m, const CoversFinetuneOptions& o, MPI_Comm group) {
  MART_CHECK(set.tracks != nullptr && !train.empty() && !valid.empty() && !test.empty(),
             "covers fine-tuning needs train, valid and test works");
  MART_CHECK(o.batch_size >= 1 && o.bn_batch >= 1 && o.train_crops >= 1 && !o.segments.empty() && o.max_epochs >= 1 &&
                 o.patience >= 1 && o.lr > 0 && o.pretrained_lr > 0,
             "covers fine-tuning: batch, bn_batch, train_crops, segments, epochs, patience and both learning rates must "
             "be positive");
  const EmbeddingSet& e = *set.tracks;
  const bool use_cqt = kind != CoversModel::mart, use_mart = kind != CoversModel::cqtnet;
  dist::MpiCommunicator comm(group);
  TrackReader reader(set, use_cqt);

  // Training works -> class indices (in order of first appearance in `train`).
  std::map<int64_t, int64_t> work_class;
  for (size_t i : train) {
    MART_CHECK(e.tracks[i].cover_group >= 0, "covers fine-tuning: training track '", e.tracks[i].id, "' has no work");
    work_class.emplace(e.tracks[i].cover_group, static_cast<int64_t>(work_class.size()));
  }
  for (const auto* side : {&valid, &test})
    for (size_t i : *side)
      MART_CHECK(work_class.count(e.tracks[i].cover_group) == 0, "covers fine-tuning: track '", e.tracks[i].id,
                 "' is not a training track but its work is trained on (split by work first)");

  torch::manual_seed(static_cast<int64_t>(o.seed));  // every rank of the group builds the same weights
  CoversNet net(kind, m, checkpoint_dir, o, use_cqt ? reader.bins() : 84, static_cast<int64_t>(work_class.size()));
  const auto pretrained = net.pretrained_parameters(), fresh = net.new_parameters();
  std::vector<torch::Tensor> params = fresh;
  params.insert(params.end(), pretrained.begin(), pretrained.end());
  std::vector<torch::optim::OptimizerParamGroup> param_groups;
  param_groups.emplace_back(fresh, std::make_unique<torch::optim::AdamOptions>(torch::optim::AdamOptions(o.lr).weight_decay(o.weight_decay)));
  if (!pretrained.empty())
    param_groups.emplace_back(pretrained, std::make_unique<torch::optim::AdamOptions>(
                                              torch::optim::AdamOptions(o.pretrained_lr).weight_decay(o.weight_decay)));
  torch::optim::Adam opt(std::move(param_groups), torch::optim::AdamOptions(o.lr).weight_decay(o.weight_decay));
  dist::ReducerOptions ro;
  ro.overlap = false;
  dist::GradientReducer reducer(params, comm, ro);
  const double G = comm.size();
  std::set<size_t> trained;

  // Inputs of training items: a segment of `len` CQT frames and train_crops crop hierarchies each,
  // drawn from (seed, epoch, position): the same on any rank that builds them.
  auto train_inputs = [&](const std::vector<size_t>& items, int64_t len, uint64_t epoch, size_t first_pos) {
    std::vector<torch::Tensor> cqts, hiers;
    for (size_t j = 0; j < items.size(); ++j) {
      Rng rng(seed_of(o.seed, epoch, first_pos + j));
      if (use_cqt) cqts.push_back(reader.segment(items[j], len, rng));
      if (use_mart) {
        auto starts = reader.crop_starts(items[j]);
        MART_CHECK(!starts.empty(), "track '", e.tracks[items[j]].id, "' has no crop");
        const auto chosen = draw_train_crops(std::move(starts), static_cast<size_t>(o.train_crops), rng);
        hiers.push_back(reader.crops(items[j], chosen));
      }
    }
    return std::make_pair(use_cqt ? torch::stack(cqts) : torch::Tensor(), use_mart ? torch::stack(hiers) : torch::Tensor());
  };

  // Precise BatchNorm: every BatchNorm's statistics become the mean of its batch statistics over
  // the micro-batches of a fixed set of training items (each rank a block of them).
  Rng bn_rng(seed_of(o.seed, 0x626e6974ull));
  std::vector<size_t> bn_items = train;
  bn_rng.shuffle(bn_items);
  bn_items.resize(std::min(bn_items.size(), static_cast<size_t>(std::max(o.bn_items, o.bn_batch))));
  trained.insert(bn_items.begin(), bn_items.end());
  auto precise_batch_norm = [&]() {
    torch::NoGradGuard no_grad;
    auto bns = net.batch_norms();
    std::vector<c10::optional<double>> momentum;
    for (auto* bn : bns) {
      momentum.push_back(bn->options.momentum());
      bn->options.momentum(c10::nullopt);  // a cumulative average of the batches' statistics
      bn->reset_running_stats();
    }
    net.train();
    const size_t chunks = (bn_items.size() + static_cast<size_t>(o.bn_batch) - 1) / static_cast<size_t>(o.bn_batch);
    const auto [c0, c1] = dist::contiguous_block(chunks, comm.rank(), comm.size());
    for (size_t c = c0; c < c1; ++c) {
      const size_t a = c * static_cast<size_t>(o.bn_batch), b = std::min(bn_items.size(), a + static_cast<size_t>(o.bn_batch));
      const std::vector<size_t> items(bn_items.begin() + static_cast<std::ptrdiff_t>(a), bn_items.begin() + static_cast<std::ptrdiff_t>(b));
      const auto in = train_inputs(items, o.segments[0], 0xb0b0, a);
      net.embed(in.first, in.second);
    }
    // Sum over ranks of (statistics x batches), then divide by all batches.
    std::vector<torch::Tensor> acc;
    for (auto* bn : bns) {
      const double n = static_cast<double>(bn->num_batches_tracked.item<int64_t>());
      acc.push_back(torch::cat({bn->running_mean.to(torch::kFloat64) * n, bn->running_var.to(torch::kFloat64) * n,
                                torch::full({1}, n, torch::kFloat64)}));
    }
    auto all = torch::cat(acc);
    if (comm.size() > 1) {
      comm.all_reduce(all);
      comm.broadcast(all, 0);  // every rank the same bits
    }
    int64_t at = 0;
    for (size_t i = 0; i < bns.size(); ++i) {
      auto* bn = bns[i];
      const int64_t c = bn->running_mean.size(0);
      const double n = all[at + 2 * c].item<double>();
      if (n > 0) {
        bn->running_mean.copy_((all.slice(0, at, at + c) / n).to(torch::kFloat32));
        bn->running_var.copy_((all.slice(0, at + c, at + 2 * c) / n).to(torch::kFloat32));
      }
      bn->options.momentum(momentum[i]);
      at += 2 * c + 1;
    }
    net.eval();
  };

  // The embeddings of `tracks` of `s` (whole tracks), each rank a block, gathered in order.
  auto embed_tracks = [&](TrackReader& r, const std::vector<size_t>& tracks) {
    torch::NoGradGuard no_grad;
    net.eval();
    const auto [b0, b1] = dist::contiguous_block(tracks.size(), comm.rank(), comm.size());
    std::vector<torch::Tensor> rows;
    for (size_t j = b0; j < b1; ++j) {
      const size_t i = tracks[j];
      torch::Tensor cqt, hier;
      if (use_cqt) cqt = r.cqt(i).unsqueeze(0);
      if (use_mart) hier = r.crops(i, r.crop_starts(i)).unsqueeze(0);
      rows.push_back(net.embed(cqt, hier));
    }
    auto mine = rows.empty() ? torch::empty({0, o.embedding}) : torch::cat(rows);
    return (comm.size() > 1 ? comm.all_gather_v(mine.contiguous()) : mine).contiguous();
  };
  auto rank_tracks = [&](TrackReader& r, const EmbeddingSet& es, const std::vector<size_t>& tracks) {
    const auto emb = embed_tracks(r, tracks);
    std::vector<int64_t> groups;
    for (size_t i : tracks) groups.push_back(es.tracks[i].cover_group);
    return metrics::retrieval_metrics(metrics::Embeddings{emb.data_ptr<float>(), tracks.size(), static_cast<size_t>(emb.size(1))}, groups);
  };

  CoversFinetuneResult res;
  Rng order_rng(seed_of(o.seed, 0x636f7665ull));
  std::vector<size_t> order = train;
  std::vector<torch::Tensor> best_state;
  double best = -1;
  int since_best = 0, epoch = 0;
  const size_t B = static_cast<size_t>(o.batch_size), mb = static_cast<size_t>(o.bn_batch);
  for (; epoch < o.max_epochs && since_best < o.patience; ++epoch) {
    order_rng.shuffle(order);
    net.train();
    double loss_sum = 0;
    size_t batch_index = 0;
    for (size_t s = 0; s < order.size(); s += B, ++batch_index) {
      const size_t global = std::min(order.size(), s + B) - s;
      trained.insert(order.begin() + static_cast<std::ptrdiff_t>(s), order.begin() + static_cast<std::ptrdiff_t>(s + global));
      const int64_t len = o.segments[batch_index % o.segments.size()];
      const size_t chunks = (global + mb - 1) / mb;
      const auto [c0, c1] = dist::contiguous_block(chunks, comm.rank(), comm.size());
      opt.zero_grad();
      for (size_t c = c0; c < c1; ++c) {
        const size_t a = s + c * mb, b = std::min(s + global, a + mb);
        const std::vector<size_t> items(order.begin() + static_cast<std::ptrdiff_t>(a), order.begin() + static_cast<std::ptrdiff_t>(b));
        const auto in = train_inputs(items, len, static_cast<uint64_t>(epoch) + 1, a);
        auto y = torch::empty({static_cast<int64_t>(items.size())}, torch::kLong);
        for (size_t j = 0; j < items.size(); ++j) y[static_cast<int64_t>(j)] = work_class.at(e.tracks[items[j]].cover_group);
        const auto loss = torch::nn::functional::cross_entropy(
            net.fc1(net.embed(in.first, in.second)), y, torch::nn::functional::CrossEntropyFuncOptions().reduction(torch::kSum));
        loss_sum += loss.item<double>();
        // The reducer averages over the group: scale so the result is the mean over the global batch.
        (loss * (G / static_cast<double>(global))).backward();
      }
      reducer.finalize();
      opt.step();
    }
    auto l = torch::tensor({loss_sum}, torch::kFloat64);
    comm.all_reduce(l);
    precise_batch_norm();
    const double v = rank_tracks(reader, e, valid).map;
    if (comm.rank() == 0)
      spdlog::info("  covers {} epoch {}/{}: train loss {:.4f}, valid MAP {:.4f}{}", covers_model_name(kind), epoch + 1,
                   o.max_epochs, l.item<double>() / static_cast<double>(order.size()), v, v > best + 1e-12 ? " (best)" : "");
    if (v > best + 1e-12) {
      best = v, since_best = 0, res.best_epoch = epoch + 1;
      best_state.clear();
      for (const auto& p : net.parameters()) best_state.push_back(p.detach().clone());
      for (const auto& b : net.buffers()) best_state.push_back(b.detach().clone());
    } else {
      ++since_best;
    }
  }
  MART_CHECK(!best_state.empty(), "covers fine-tuning (", covers_model_name(kind), "): the valid MAP was never a number: "
             "the model diverged; lower eval.covers_lr or eval.covers_pretrained_lr");
  {
    torch::NoGradGuard no_grad;  // back to the early-stopping point, statistics included
    size_t k = 0;
    for (auto& p : net.parameters()) p.copy_(best_state[k++]);
    for (auto& b : net.buffers()) b.copy_(best_state[k++]);
  }
  res.epochs = epoch;
  res.best_valid_map = best;
  res.test = rank_tracks(reader, e, test);
  if (transfer.tracks != nullptr) {
    TrackReader tr(transfer, use_cqt);
    std::vector<size_t> all(transfer.tracks->tracks.size());
    for (size_t i = 0; i < all.size(); ++i) all[i] = i;
    res.transfer = rank_tracks(tr, *transfer.tracks, all);
    res.has_transfer = true;
  }
  res.trained.assign(trained.begin(), trained.end());
  return res;
}

}  // namespace mart::eval
