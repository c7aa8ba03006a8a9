#include "mart/eval/evaluate.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <map>
#include <nlohmann/json.hpp>
#include <numeric>
#include <optional>
#include <set>
#include <sstream>

#include "mart/app/plot.h"
#include "mart/core/error.h"
#include "mart/core/fs.h"
#include "mart/core/hash.h"
#include "mart/core/mpi_check.h"
#include "mart/core/rng.h"
#include "mart/core/text.h"
#include "mart/data/manifest.h"
#include "mart/data/shard.h"
#include "mart/eval/covers_finetune.h"
#include "mart/eval/covers_split.h"
#include "mart/eval/finetune.h"
#include "mart/metrics/metrics.h"
#include "mart/metrics/retrieval.h"
#include "mart/model/config.h"
#include "mart/run/checkpoint.h"
#include "mart/run/checkpoint_info.h"
#include "mart/run/cpu_allocator.h"

namespace fs = std::filesystem;
using json = nlohmann::json;

namespace mart::eval {

void declare_options(Config& c) {
  c.add_required<std::string>("data", "folder of mart-preprocess output for the evaluation dataset", "Data");
  c.add_required<std::string>("run", "output folder: embeddings, report.md, results.json, logs", "Data");
  c.add<std::string>("checkpoint", "", "a mart-train run folder (its newest checkpoint) or a checkpoint folder; "
                                       "empty: baselines only", "Data");
  c.add<std::string>("eval.tasks", "auto", "tagging, classification, covers (comma-separated) or auto: all the labels allow", "Tasks");
  c.add<std::string>("eval.probe", "linear", "linear or mlp (one hidden layer of 512)", "Tasks");
  c.add<int>("eval.seeds", 3, "probe seeds; the report gives mean and standard deviation", "Tasks");
  c.add<int>("eval.folds", 10, "data without a test split (GTZAN without split lists): every probe and fine-tuning "
             "job runs on each of this many folds, stratified by class and seeded (the report pools folds and seeds); "
             "0: refuse such data", "Tasks");
  c.add<std::string>("eval.covers_split", "",
                     "covers: fractions of the works for train/valid/test, e.g. 0.8/0.1/0.1, drawn by work (a work's "
                     "versions stay on one side) when the data has no split of its own (a covers list without a "
                     "split column); with a split, the frozen ranking uses the test works only; empty: all works",
                     "Tasks");
  c.add<int>("eval.covers_split_seed", 1, "seed of eval.covers_split's draw", "Tasks");
  c.add<std::string>("eval.score_split", "test", "the split that is scored. test: the report. valid: a development "
                     "run for choosing settings: the valid tracks (covers: valid works) are scored, a tenth of the "
                     "training tracks (works) stands in for valid, and no test label or score and nothing of "
                     "eval.transfer_data is used", "Tasks");
  c.add<std::string>("eval.label_fractions", "1.0", "fractions of the training labels, e.g. 0.01,0.1,1.0", "Tasks");
  c.add<int>("eval.max_epochs", 200, "probe epochs at most", "Tasks");
  c.add<int>("eval.patience", 10, "early-stopping patience (epochs without a better validation loss)", "Tasks");
  c.add<std::string>("eval.embedding", "hat0", "the vector tasks see: hat0 (s^^0, after the part-whole transformer), "
                     "tilde0 (s~^0, the encoder's output) or levels (every level's mean, concatenated)", "Tasks");
  c.add<bool>("eval.baselines", true, "also evaluate a randomly initialised encoder and log-mel statistics", "Tasks");
  c.add<std::string>("eval.finetune_fractions", "", "fine-tune the whole model (trained and random) with these "
                     "fractions of the training labels, e.g. 0.01,0.1; empty: no fine-tuning", "Fine-tuning");
  c.add<int>("eval.finetune_seeds", 0, "fine-tuning seeds (0: eval.seeds); fine-tuning costs far more than a probe",
             "Fine-tuning");
  c.add<int>("eval.finetune_epochs", 30, "fine-tuning epochs at most", "Fine-tuning");
  c.add<int>("eval.finetune_patience", 5, "fine-tuning early-stopping patience (epochs)", "Fine-tuning");
  c.add<double>("eval.finetune_lr", 1e-4, "fine-tuning Adam learning rate (weight decay 1e-6)", "Fine-tuning");
  c.add<std::string>("eval.finetune_batch_norm", "frozen", "frozen: BatchNorm on running statistics (the same result "
                     "for any group size; a random model's are first measured on training crops, eval.finetune_bn_crops); "
                     "batch: per-rank batch statistics", "Fine-tuning");
  c.add<int>("eval.finetune_bn_crops", 512, "from-scratch fine-tuning with frozen BatchNorm: measure the random model's "
             "BatchNorm statistics on up to this many training crops first (0: keep its initial 0/1, no normalisation)",
             "Fine-tuning");
  c.add<int>("eval.finetune_batch", 16, "fine-tuning global batch (crops), split over the group's ranks", "Fine-tuning");
  c.add<std::string>("eval.covers_models", "", "the paper's table-3 protocol: train these on the covers split's "
                     "training works (cqtnet: CQTNet from scratch on the constant-Q, mart-preprocess --features.cqt; mart: "
                     "the checkpoint fine-tuned; mart+cqtnet: both, fused before the embedding layer), stop early on the "
                     "valid works' MAP, rank the test works (comma-separated; empty: none). Needs a split by work",
                     "Covers fine-tuning");
  c.add<std::string>("eval.transfer_data", "", "a second covers dataset (mart-preprocess output, Covers80-style): "
                     "every model, frozen or fine-tuned on eval.covers_models, also ranks all its works; never trained on",
                     "Covers fine-tuning");
  c.add<int>("eval.covers_seeds", 1, "seeds of each eval.covers_models job", "Covers fine-tuning");
  c.add<int>("eval.covers_epochs", 30, "epochs at most", "Covers fine-tuning");
  c.add<int>("eval.covers_patience", 5, "early-stopping patience (epochs without a better valid MAP)", "Covers fine-tuning");
  c.add<double>("eval.covers_lr", 1e-3, "Adam learning rate of what starts untrained: CQTNet, the embedding layer, "
                "the classifier (weight decay 1e-5, as CQTNet)", "Covers fine-tuning");
  c.add<double>("eval.covers_pretrained_lr", 1e-3, "Adam learning rate of the pretrained MART encoder and part-whole "
                "transformer (models mart, mart+cqtnet; 1e-4 hardly moved it on the demo: docs/metrics.md)",
                "Covers fine-tuning");
  c.add<int>("eval.covers_batch", 16, "global batch (tracks), split over the group's ranks", "Covers fine-tuning");
  c.add<int>("eval.covers_train_crops", 1, "MART crop hierarchies per training track, their s^0 averaged (ranking "
             "averages all of a track's crops; models mart, mart+cqtnet)", "Covers fine-tuning");
  c.add<int>("eval.covers_bn_batch", 8, "tracks per BatchNorm micro-batch (fixed, so results do not depend on the "
             "group size)", "Covers fine-tuning");
  c.add<std::string>("eval.covers_segments", "200,300,400", "constant-Q frames of a training segment, one length per "
                     "batch in turn (CQTNet's)", "Covers fine-tuning");
  c.add<double>("eval.covers_cqtnet_width", 1.0, "CQTNet's channels x this (1: the authors' 32..512)", "Covers fine-tuning");
  c.add<int>("eval.group_ranks", 1, "ranks per fine-tuning job: jobs run side by side on groups of this many ranks "
             "(MPI communicator split), each group sharing its job's batches", "Execution");
  c.add<bool>("eval.force", false, "recompute embeddings even when the run folder holds some (of another model: "
              "without this the run stops)", "Data");
  c.add<int>("eval.threads", 0, "intra-op threads per rank (0: cores / ranks on the node)", "Execution");
}

std::vector<std::string> available_tasks(const EmbeddingSet& e) {
  std::vector<std::string> t;
  bool tags = false, classes = false, covers = false;
  for (const auto& x : e.tracks) {
    for (auto v : x.tags) tags = tags || v;
    classes = classes || x.class_index >= 0;
    covers = covers || x.cover_group >= 0;
  }
  if (tags) t.push_back("tagging");
  if (classes) t.push_back("classification");
  if (covers) t.push_back("covers");
  return t;
}

bool has_test_split(const EmbeddingSet& e, const std::string& task) {
  for (const auto& t : e.tracks)
    if (t.split == "test" && !(task == "classification" && t.class_index < 0)) return true;
  return false;
}

void develop_splits(std::vector<TrackInfo>* tracks) {
  for (auto& t : *tracks) t.split = develop_split(t.split);
}

std::vector<int> stratified_folds(const EmbeddingSet& e, const std::vector<size_t>& tracks, bool by_class, int folds) {
  if (folds < 2) MART_CONFIG_ERROR("eval.folds must be at least 2 to make folds, got ", folds);
  if (tracks.size() < static_cast<size_t>(folds))
    MART_CONFIG_ERROR("cannot make ", folds, " folds of ", tracks.size(), " tracks: lower eval.folds or give the data a "
                      "test split");
  std::map<int32_t, std::vector<size_t>> strata;  // class -> positions in `tracks`
  for (size_t j = 0; j < tracks.size(); ++j) strata[by_class ? e.tracks[tracks[j]].class_index : 0].push_back(j);
  std::vector<int> fold(tracks.size());
  size_t next = 0;
  for (auto& [cls, members] : strata) {
    Rng rng(seed_of(0x666f6c6473ull, static_cast<uint64_t>(static_cast<int64_t>(cls) + 1)));  // "folds"
    rng.shuffle(members);
    for (size_t j : members) fold[j] = static_cast<int>(next++ % static_cast<size_t>(folds));
  }
  return fold;
}

TaskTracks task_tracks(const EmbeddingSet& e, const std::string& task, double fraction, uint64_t seed, int fold,
                       int folds) {
  TaskTracks s;
  for (size_t i = 0; i < e.tracks.size(); ++i) {
    const auto& t = e.tracks[i];
    if (task == "classification" && t.class_index < 0) continue;
    if (t.split == "train") s.train.push_back(i);
    else if (t.split == "valid") s.valid.push_back(i);
    else if (t.split == "test") s.test.push_back(i);
  }
  if (fold >= 0) {  // no test split: fold `fold` of the training tracks tests
    MART_CHECK(s.test.empty(), "task ", task, ": folds asked for although the data has a test split");
    MART_CHECK(fold < folds, "fold ", fold, " of ", folds);
    const auto of = stratified_folds(e, s.train, task == "classification", folds);
    std::vector<size_t> keep;
    for (size_t j = 0; j < s.train.size(); ++j) (of[j] == fold ? s.test : keep).push_back(s.train[j]);
    s.train = keep;
  }
  if (s.valid.empty()) {
    std::vector<size_t> keep;
    for (size_t j = 0; j < s.train.size(); ++j) (j % 10 == 9 ? s.valid : keep).push_back(s.train[j]);
    s.train = keep;
  }
  if (s.train.empty() || s.valid.empty() || s.test.empty())
    MART_CONFIG_ERROR("task ", task, " needs tracks in the train, valid and test splits; found ", s.train.size(), ", ",
                      s.valid.size(), ", ", s.test.size(), ": give the dataset a split (labels CSV or split lists)",
                      s.test.empty() ? " or let mart-eval make folds (eval.folds at least 2)" : "");
  if (fraction < 1.0) {  // a seeded subset of the training tracks (at least one)
    Rng rng(seed_of(seed, 0x66726163ull, static_cast<uint64_t>(fraction * 1e6)));
    rng.shuffle(s.train);
    s.train.resize(std::max<size_t>(1, static_cast<size_t>(fraction * static_cast<double>(s.train.size()))));
    std::sort(s.train.begin(), s.train.end());
  }
  return s;
}

namespace {

ProbeSet crop_rows(const EmbeddingSet& e, const std::vector<size_t>& tracks, const std::string& task) {
  ProbeSet p;
  p.d = e.dim;
  p.k = task == "tagging" ? static_cast<int64_t>(e.tag_names.size()) : static_cast<int64_t>(e.class_names.size());
  for (size_t i : tracks) {
    const auto& t = e.tracks[i];
    for (int64_t c = t.crop_begin; c < t.crop_end; ++c) {
      p.x.insert(p.x.end(), e.crops.begin() + c * e.dim, e.crops.begin() + (c + 1) * e.dim);
      if (task == "tagging") {
        for (auto v : t.tags) p.y.push_back(static_cast<float>(v));
      } else {
        p.y.push_back(static_cast<float>(t.class_index));
      }
      ++p.n;
    }
  }
  return p;
}

}  // namespace

std::vector<TaskScore> score_tracks(const EmbeddingSet& e, const std::string& task, const std::vector<size_t>& test,
                                    const std::vector<float>& crop_scores, const TaskScore& stamp) {
  const size_t k = task == "tagging" ? e.tag_names.size() : e.class_names.size();
  std::vector<double> scores;
  std::vector<uint8_t> tags;
  std::vector<int64_t> classes;
  size_t row = 0;
  for (size_t i : test) {
    const auto& t = e.tracks[i];
    const size_t n = static_cast<size_t>(t.crop_end - t.crop_begin);
    MART_CHECK((row + n) * k <= crop_scores.size(), "fewer crop scores than test crops");
    for (size_t j = 0; j < k; ++j) {
      double m = 0;
      for (size_t c = 0; c < n; ++c) m += crop_scores[(row + c) * k + j];
      scores.push_back(m / static_cast<double>(n));
    }
    row += n;
    tags.insert(tags.end(), t.tags.begin(), t.tags.end());
    classes.push_back(t.class_index);
  }
  MART_CHECK(row * k == crop_scores.size(), "more crop scores than test crops");
  std::vector<TaskScore> out;
  auto add = [&](const std::string& metric, double v) {
    TaskScore s = stamp;
    s.task = task, s.metric = metric, s.value = v;
    out.push_back(s);
  };
  if (task == "tagging") {
    const auto m = metrics::tagging_metrics(scores, tags, k);
    add("ROC-AUC", m.roc_auc.value);
    add("PR-AUC", m.pr_auc.value);
  } else {
    const auto m = metrics::classification_metrics(scores, classes, k);
    add("accuracy", m.accuracy);
    add("ROC-AUC", m.roc_auc.value);
    add("PR-AUC", m.pr_auc.value);
  }
  return out;
}

std::vector<TaskScore> run_probe_task(const EmbeddingSet& e, const std::string& task, double fraction,
                                      const ProbeOptions& o, int fold, int folds) {
  const TaskTracks s = task_tracks(e, task, fraction, o.seed, fold, folds);
  const TaskKind kind = task == "tagging" ? TaskKind::multilabel : TaskKind::multiclass;
  const ProbeSet train = crop_rows(e, s.train, task), valid = crop_rows(e, s.valid, task),
                 test = crop_rows(e, s.test, task);
  const ProbeRun r = train_probe(train, valid, test.x, test.n, kind, o);
  TaskScore stamp;
  stamp.source = e.source, stamp.protocol = o.kind == ProbeKind::linear ? "linear" : "mlp";
  stamp.fraction = fraction, stamp.seed = o.seed, stamp.fold = fold;
  return score_tracks(e, task, s.test, r.scores, stamp);
}

namespace {

// One table: columns are task metrics (with the label fraction when not 1), rows the models in
// first-seen order, cells "mean ± std" over seeds.
std::string table(const std::vector<TaskScore>& scores) {
  std::vector<std::string> sources, columns;
  std::map<std::pair<std::string, std::string>, std::vector<double>> cells;
  for (const auto& s : scores) {
    std::ostringstream col;
    col << s.task << " " << s.metric;
    if (s.fraction < 1.0) col << " @" << s.fraction * 100 << "%";
    if (std::find(sources.begin(), sources.end(), s.source) == sources.end()) sources.push_back(s.source);
    if (std::find(columns.begin(), columns.end(), col.str()) == columns.end()) columns.push_back(col.str());
    cells[{s.source, col.str()}].push_back(s.value);
  }
  std::ostringstream md;
  md << "| model |";
  for (const auto& c : columns) md << " " << c << " |";
  md << "\n|---|";
  for (size_t i = 0; i < columns.size(); ++i) md << "---|";
  md << "\n";
  for (const auto& src : sources) {
    md << "| " << src << " |";
    for (const auto& c : columns) {
      auto it = cells.find({src, c});
      if (it == cells.end()) {
        md << " - |";
        continue;
      }
      const auto ms = metrics::mean_std(it->second);
      char buf[64];
      if (ms.n > 1) std::snprintf(buf, sizeof buf, " %.4f ± %.4f |", ms.mean, ms.std);
      else std::snprintf(buf, sizeof buf, " %.4f |", ms.mean);
      md << buf;
    }
    md << "\n";
  }
  return md.str();
}

}  // namespace

std::string markdown_report(const std::vector<TaskScore>& scores, const std::string& scored) {
  // As the paper: one table for frozen embeddings (probes, covers), one for fine-tuning, and
  // with eval.covers_models a third shaped like its table 3 (covers rows only).
  std::vector<TaskScore> frozen, tuned, covers;
  for (const auto& s : scores) {
    if (s.protocol == "covers_finetune") {
      TaskScore x = s;
      x.source = s.source == "cqtnet" ? "cqtnet (from scratch)" : s.source + " (fine-tuned)";
      covers.push_back(x);
      continue;
    }
    if (s.protocol == "chance") {  // the expectation of a random ranking, in both covers tables
      TaskScore x = s;
      x.source = "chance (random ranking)";
      frozen.push_back(x);
      covers.push_back(x);
      continue;
    }
    (s.protocol == "finetune" ? tuned : frozen).push_back(s);
    if (s.protocol.empty() && (s.task == "covers" || s.task == "covers_transfer")) {
      TaskScore x = s;
      x.source = s.source + " (frozen)";
      covers.push_back(x);
    }
  }
  if (tuned.empty() && covers.empty()) return table(frozen);
  std::string md;
  if (!frozen.empty()) md += "Frozen embeddings (probes; covers by cosine similarity):\n\n" + table(frozen) + "\n";
  if (!tuned.empty()) md += "Fine-tuned whole model (encoder and part-whole transformer):\n\n" + table(tuned) + "\n";
  if (!covers.empty()) {
    // Fine-tuned rows first, as the paper lists them.
    std::stable_partition(covers.begin(), covers.end(), [](const TaskScore& x) { return x.protocol == "covers_finetune"; });
    const bool transfer = std::any_of(covers.begin(), covers.end(), [](const TaskScore& x) { return x.task == "covers_transfer"; });
    md += "Cover songs as the paper's table 3 (" + scored + " works" +
          (transfer ? "; covers_transfer: the transfer set, never trained on" : "") + "):\n\n" + table(covers) + "\n";
  }
  return md;
}

namespace {

// Every rank's JSON array, concatenated in rank order.
json gather_json(const json& mine, const dist::World& w) {
  json out = json::array();
  for (const auto& part : w.all_gather_bytes(mine.dump()))
    for (auto& x : json::parse(part)) out.push_back(x);
  return out;
}

// The ranks of one fine-tuning group: MPI_Comm_split of the world into consecutive blocks.
class RankGroups {
 public:
  RankGroups(const dist::World& w, int ranks_per_group)
      : per_(std::min(ranks_per_group, w.size())), count_((w.size() + per_ - 1) / per_), index_(w.rank() / per_) {
    MPI_CHECK(MPI_Comm_split(w.comm(), index_, w.rank(), &comm_));
    MPI_CHECK(MPI_Comm_rank(comm_, &rank_));
  }
  ~RankGroups() { MPI_Comm_free(&comm_); }
  RankGroups(const RankGroups&) = delete;
  RankGroups& operator=(const RankGroups&) = delete;
  int count() const { return count_; }
  int index() const { return index_; }
  bool leader() const { return rank_ == 0; }
  MPI_Comm comm() const { return comm_; }

 private:
  int per_, count_, index_, rank_ = 0;
  MPI_Comm comm_ = MPI_COMM_NULL;
};

json score_json(size_t job, const TaskScore& r) {
  return {job, r.source, r.protocol, r.task, r.metric, r.fraction, r.seed, r.value, r.fold};
}

// Every rank's finished jobs, in job order: the report is the same whatever rank ran a job.
void collect(const json& mine, const dist::World& w, std::vector<TaskScore>* scores) {
  json done = gather_json(mine, w);
  std::stable_sort(done.begin(), done.end(), [](const json& a, const json& b) { return a[0].get<size_t>() < b[0].get<size_t>(); });
  for (const auto& x : done)
    scores->push_back({x[1], x[2], x[3], x[4], x[5].get<double>(), x[6].get<uint64_t>(), x[7].get<double>(), x[8].get<int>()});
}

// Covers ranking of n embeddings [n, dim] by their groups, query blocks spread over the ranks;
// the summary is valid on rank 0.
metrics::RetrievalSummary rank_covers(const float* data, size_t n, size_t dim, const std::vector<int64_t>& groups,
                             const dist::World& w) {
  const metrics::Embeddings emb{data, n, dim};
  const size_t per = (n + static_cast<size_t>(w.size()) - 1) / static_cast<size_t>(w.size());
  const size_t q0 = std::min(n, per * static_cast<size_t>(w.rank())), q1 = std::min(n, q0 + per);
  json part = json::array();
  for (const auto& q : metrics::retrieval_block(emb, groups, q0, q1))
    part.push_back({q.query, q.n_relevant, q.average_precision, q.precision_at_k, q.first_rank});
  std::vector<metrics::QueryResult> all;
  for (const auto& x : gather_json(part, w)) {
    metrics::QueryResult q;
    q.query = x[0], q.n_relevant = x[1], q.average_precision = x[2], q.precision_at_k = x[3], q.first_rank = x[4];
    all.push_back(q);
  }
  return w.is_root() ? metrics::summarize_retrieval(all) : metrics::RetrievalSummary{};
}

void push_covers(std::vector<TaskScore>* scores, const std::string& source, const std::string& protocol,
                 const std::string& task, uint64_t seed, const metrics::RetrievalSummary& sum) {
  scores->push_back({source, protocol, task, "MAP", 1.0, seed, sum.map});
  scores->push_back({source, protocol, task, "P@10", 1.0, seed, sum.precision_at_k});
  scores->push_back({source, protocol, task, "MR1", 1.0, seed, sum.mr1});
}

struct Source {
  std::unique_ptr<FeatureSource> features;
  bool trainable = false;  // a MART model (trained or random) that fine-tuning can start from
  std::string checkpoint;  // its weights ("" = random initialisation)
  std::string identity;    // what made the embeddings: written to and checked in the embeddings file
  bool reuse = false;      // the run folder holds its embeddings already
};

std::vector<double> fractions_of(const Config& c, const std::string& key, bool allow_empty) {
  const std::string text = c.get<std::string>(key);
  if (allow_empty && text.empty()) return {};
  const auto v = parse_double_list(text, key);
  for (double fr : v)
    if (!(fr > 0 && fr <= 1)) MART_CONFIG_ERROR(key, " must lie in (0, 1], got ", fr);
  return v;
}

}  // namespace

int run(app::StageContext& ctx) {
  // mart-train's default: embedding and fine-tuning allocate the same large activations
  // (mart/run/cpu_allocator.h; the same values, the same peak memory, fewer page faults).
  run::use_huge_page_cpu_allocator();
  const auto& c = ctx.cfg;
  auto& w = ctx.world;
  const std::string data = c.get<std::string>("data"), out = ctx.run_dir;
  const auto manifest = data::load_manifest(data + "/manifest.json");
  const auto& f = manifest.features;
  ProbeOptions po;
  const std::string probe = c.get<std::string>("eval.probe");
  if (probe != "linear" && probe != "mlp") MART_CONFIG_ERROR("eval.probe must be linear or mlp, got '", probe, "'");
  po.kind = probe == "linear" ? ProbeKind::linear : ProbeKind::mlp;
  po.max_epochs = c.get<int>("eval.max_epochs");
  po.patience = c.get<int>("eval.patience");
  const int seeds = c.get<int>("eval.seeds");
  if (seeds < 1) MART_CONFIG_ERROR("eval.seeds must be at least 1, got ", seeds);
  const int folds = c.get<int>("eval.folds");
  if (folds < 0 || folds == 1) MART_CONFIG_ERROR("eval.folds must be 0 (no folds) or at least 2, got ", folds);
  if (po.max_epochs < 1 || po.patience < 1) MART_CONFIG_ERROR("eval.max_epochs and eval.patience must be at least 1");
  const auto covers_fractions = parse_covers_split(c.get<std::string>("eval.covers_split"));
  const auto covers_seed = static_cast<uint64_t>(c.get<int>("eval.covers_split_seed"));
  const std::string score_split = c.get<std::string>("eval.score_split");
  if (score_split != "test" && score_split != "valid")
    MART_CONFIG_ERROR("eval.score_split must be test or valid, got '", score_split, "'");
  const bool develop = score_split == "valid";
  // The split by work of a covers set's tracks (the same for every model: the frozen ranking and
  // the trained jobs read it from here). `tracks` carry the data's own splits.
  auto covers_split_of = [&](const std::vector<TrackInfo>& tracks) {
    std::vector<int64_t> groups;
    std::vector<std::string> splits;
    for (const auto& t : tracks) groups.push_back(t.cover_group), splits.push_back(t.split);
    const CoversSplit cs = covers_split(groups, splits, covers_fractions, covers_seed);
    return develop ? develop_covers_split(cs, groups, covers_seed) : cs;
  };
  const auto fractions = fractions_of(c, "eval.label_fractions", false);
  const auto ft_fractions = fractions_of(c, "eval.finetune_fractions", true);
  FinetuneOptions fo;
  fo.lr = c.get<double>("eval.finetune_lr");
  fo.max_epochs = c.get<int>("eval.finetune_epochs");
  fo.patience = c.get<int>("eval.finetune_patience");
  fo.batch_size = c.get<int>("eval.finetune_batch");
  fo.bn_estimate_crops = c.get<int>("eval.finetune_bn_crops");
  if (fo.bn_estimate_crops < 0) MART_CONFIG_ERROR("eval.finetune_bn_crops must be 0 or more, got ", fo.bn_estimate_crops);
  if (fo.max_epochs < 1 || fo.patience < 1 || fo.batch_size < 1 || !(fo.lr > 0))
    MART_CONFIG_ERROR("eval.finetune_epochs, eval.finetune_patience, eval.finetune_batch must be at least 1 and "
                      "eval.finetune_lr positive");
  const int ft_seeds = c.get<int>("eval.finetune_seeds") > 0 ? c.get<int>("eval.finetune_seeds") : seeds;
  const int group_ranks = c.get<int>("eval.group_ranks");
  if (group_ranks < 1) MART_CONFIG_ERROR("eval.group_ranks must be at least 1, got ", group_ranks);
  const int threads = dist::threads_per_rank(w, c.get<int>("eval.threads"));
  std::vector<CoversModel> covers_models;
  for (const auto& name : split_list(c.get<std::string>("eval.covers_models"), ',')) covers_models.push_back(parse_covers_model(name));
  std::string transfer_data = c.get<std::string>("eval.transfer_data");
  if (develop && !transfer_data.empty()) {
    if (w.is_root())
      spdlog::info("eval.score_split valid: the transfer set {} is a test set and is not read", transfer_data);
    transfer_data.clear();
  }
  if (develop && w.is_root())
    spdlog::info("eval.score_split valid: scoring the valid split; a tenth of the training tracks (works) validates; "
                 "the test split is held out");
  const int covers_seeds = c.get<int>("eval.covers_seeds");
  CoversFinetuneOptions co;
  co.max_epochs = c.get<int>("eval.covers_epochs");
  co.patience = c.get<int>("eval.covers_patience");
  co.lr = c.get<double>("eval.covers_lr");
  co.pretrained_lr = c.get<double>("eval.covers_pretrained_lr");
  co.batch_size = c.get<int>("eval.covers_batch");
  co.bn_batch = c.get<int>("eval.covers_bn_batch");
  co.train_crops = c.get<int>("eval.covers_train_crops");
  co.segments = parse_int_list(c.get<std::string>("eval.covers_segments"), "eval.covers_segments");
  co.cqtnet_width = c.get<double>("eval.covers_cqtnet_width");
  if (covers_seeds < 1 || co.max_epochs < 1 || co.patience < 1 || co.batch_size < 1 || co.bn_batch < 1 ||
      co.train_crops < 1 || !(co.lr > 0) || !(co.pretrained_lr > 0) || !(co.cqtnet_width > 0) || co.segments.empty())
    MART_CONFIG_ERROR("eval.covers_seeds, _epochs, _patience, _batch, _bn_batch, _train_crops must be at least 1, "
                      "eval.covers_lr, _pretrained_lr and _cqtnet_width positive, eval.covers_segments not empty");
  for (int64_t len : co.segments)
    if (len < 1) MART_CONFIG_ERROR("eval.covers_segments: lengths must be positive, got ", len);
  const bool covers_need_cqt = std::any_of(covers_models.begin(), covers_models.end(), [](CoversModel k) { return k != CoversModel::mart; });
  for (const auto& dir : {data, transfer_data}) {
    if (dir.empty() || !covers_need_cqt) continue;
    const auto m = data::load_manifest(dir + "/manifest.json");
    if (!m.shards.empty() && data::ShardReader(dir + "/" + m.shards[0].file, m.features).cqt_bins() == 0)
      MART_CONFIG_ERROR("eval.covers_models cqtnet and mart+cqtnet read the constant-Q, which the shards in '", dir,
                        "' do not have: run mart-preprocess on it again with --features.cqt true");
  }
  if (!transfer_data.empty()) {
    const auto tm = data::load_manifest(transfer_data + "/manifest.json");
    if (tm.features.canonical() != f.canonical())
      MART_CONFIG_ERROR("eval.transfer_data '", transfer_data, "' was preprocessed with other features than '", data,
                        "':\n  ", tm.features.canonical(), "\n  ", f.canonical(), "\nrun mart-preprocess on it with the same config");
  }
  const std::string fbn = c.get<std::string>("eval.finetune_batch_norm");
  if (fbn != "frozen" && fbn != "batch")
    MART_CONFIG_ERROR("eval.finetune_batch_norm must be frozen or batch, got '", fbn, "'");
  fo.frozen_batch_norm = fbn == "frozen";
  // Tasks asked for by name must have their labels in the data, checked before any embedding.
  const std::string asked = c.get<std::string>("eval.tasks");
  if (asked != "auto")
    for (const auto& t : split_list(asked, ',')) {
      if (t != "tagging" && t != "classification" && t != "covers")
        MART_CONFIG_ERROR("eval.tasks: unknown task '", t, "' (tasks: tagging, classification, covers, or auto)");
      if ((t == "tagging" && manifest.labels.tag_names.empty()) || (t == "classification" && manifest.labels.class_names.empty()))
        MART_CONFIG_ERROR("task '", t, "' needs labels the shards in '", data, "' do not have (no ",
                          t == "tagging" ? "tag" : "class", " names in the manifest): preprocess with a dataset kind or "
                          "labels CSV that gives them");
    }
  // Identities use canonical paths: "run/", "./run" and a symlink to it are the same model.
  auto canonical = [](const std::string& p) {
    std::string s = fs::weakly_canonical(fs::absolute(p)).string();
    while (s.size() > 1 && s.back() == '/') s.pop_back();
    return s;
  };
  const std::string data_identity = "data=" + canonical(data) +
                                    ";preprocess=" + hex64(manifest.preprocess_hash);

  // The feature sources: the trained model first, then the baselines.
  std::vector<Source> sources;
  const std::string vector = c.get<std::string>("eval.embedding");
  const std::string vector_identity = vector == "hat0" ? "" : ";vector=" + vector;  // hat0: as before the option
  const std::string ckpt_arg = c.get<std::string>("checkpoint");
  model::ModelOptions mo;
  if (!ckpt_arg.empty()) {
    const run::CheckpointInfo ckpt = run::open_checkpoint(ckpt_arg);
    mo = run::model_for_features(ckpt, f);
    const auto state = run::read_train_state(ckpt.dir);
    sources.push_back({mart_source(ckpt.dir, mo, 1, threads, vector), true, ckpt.dir,
                       "checkpoint=" + canonical(ckpt.dir) + ";step=" + std::to_string(state.step) +
                           ";run=" + state.config_hash + ";model=" + mo.canonical() + vector_identity});
    if (w.is_root()) spdlog::info("evaluating checkpoint {}", ckpt.dir);
  }
  if (c.get<bool>("eval.baselines")) {
    if (ckpt_arg.empty()) {  // a random encoder needs a model shape: the small default at these features
      mo = model::with_input_of(model::ModelOptions::small(), f);
    }
    sources.push_back({mart_source("", mo, 1, threads, vector), true, "",
                       "random_init;seed=1;model=" + mo.canonical() + vector_identity});
    sources.push_back({logmel_stats_source(f), false, "", "logmel_stats;features=" + f.canonical()});
  }
  if (sources.empty()) MART_CONFIG_ERROR("nothing to evaluate: give --checkpoint or keep eval.baselines on");
  // Embeddings already in the run folder are reused when the same model made them from the same
  // data (a rerun after a kill skips the embedding); another model's are refused, not overwritten.
  // Rank 0 decides (a rank on another node might not see the file yet) and every rank follows.
  const bool force = c.get<bool>("eval.force");
  for (auto& src : sources) {
    src.identity += ";" + data_identity;
    const std::string path = out + "/embeddings-" + src.features->name() + ".h5";
    std::string had;
    const bool exists = w.is_root() && !force && fs::exists(path);
    if (exists) had = embeddings_identity(path);
    if (w.any(exists && had != src.identity)) {
      if (!w.is_root()) MART_CONFIG_ERROR("run folder '", out, "' holds embeddings of another model (see rank 0)");
      MART_CONFIG_ERROR("run folder '", out, "' holds embeddings of another model or data in '", path, "':\n  file:  ",
                        had.empty() ? std::string("(no identity: written by an older mart-eval)") : had,
                        "\n  asked: ", src.identity,
                        "\nuse another --run folder, or --eval.force true to recompute and overwrite them");
    }
    src.reuse = w.any(exists);
  }
  RankGroups groups(w, group_ranks);
  if (w.is_root() && !ft_fractions.empty())
    spdlog::info("fine-tuning jobs run on {} group(s) of up to {} rank(s)", groups.count(), std::min(group_ranks, w.size()));

  const std::string trained_checkpoint = !sources.empty() && sources[0].trainable ? sources[0].checkpoint : "";
  for (const auto kind : covers_models)
    if (kind != CoversModel::cqtnet && trained_checkpoint.empty())
      MART_CONFIG_ERROR("eval.covers_models: ", covers_model_name(kind), " starts from the pretrained model: give --checkpoint");
  std::optional<EmbeddingSet> covers_meta, transfer_meta;
  // The works of the ranked tracks, for the chance row (the same for every model; the transfer
  // set's come from transfer_meta).
  std::optional<std::vector<int64_t>> chance_groups;
  std::vector<TaskScore> scores;
  for (auto& src : sources) {
    const std::string path = out + "/embeddings-" + src.features->name() + ".h5";
    EmbeddingSet e;
    if (src.reuse) {
      e = read_embeddings(path);
      if (w.is_root()) spdlog::info("{}: reusing {} (same model and data)", e.source, path);
    } else {
      e = extract(data, *src.features, w);
      e.identity = src.identity;
      if (w.is_root()) write_embeddings(path, e);
    }
    if (w.is_root()) spdlog::info("{}: {} tracks, {} crops, {}-d embeddings", e.source, e.tracks.size(), e.num_crops(), e.dim);
    // The data's own splits: covers splits by work from these (covers_split_of develops them itself).
    const std::vector<TrackInfo> data_tracks = e.tracks;
    if (develop) develop_splits(&e.tracks);
    std::vector<std::string> tasks = available_tasks(e);
    if (asked != "auto") {
      const auto want = split_list(asked, ',');
      for (const auto& t : want)
        if (std::find(tasks.begin(), tasks.end(), t) == tasks.end())
          MART_CONFIG_ERROR("task '", t, "' needs labels the shards in '", data, "' do not have (they support: ",
                            [&] { std::string s; for (auto& x : tasks) s += x + " "; return s; }(), ")");
      tasks = want;
    }
    // The folds of each task: [-1] with a test split in the data, else 0 .. folds-1 (and [-1] when
    // folds are off: task_tracks then refuses the data).
    auto folds_of = [&](const std::string& task) {
      if (develop && !has_test_split(e, task))  // (after develop_splits, "test" holds the valid tracks)
        MART_CONFIG_ERROR("eval.score_split valid scores the valid split, but the ", task, " tracks of '", data,
                          "' have no valid split: give the data one (labels CSV or split lists), or score the test "
                          "split");
      if (has_test_split(e, task) || folds == 0) return std::vector<int>{-1};
      std::vector<int> v(static_cast<size_t>(folds));
      for (int i = 0; i < folds; ++i) v[static_cast<size_t>(i)] = i;
      if (w.is_root()) spdlog::info("{}: {} has no test split: {} stratified folds, every job on each", e.source, task, folds);
      return v;
    };
    // Probe jobs (task x fraction x seed x fold) round-robin over the ranks.
    json mine = json::array();
    size_t job = 0;
    for (const auto& task : tasks) {
      if (task == "covers") continue;
      const auto task_folds = folds_of(task);
      for (double fr : fractions)
        for (int s = 0; s < seeds; ++s)
          for (int fold : task_folds) {
            const size_t this_job = job++;
            if (this_job % static_cast<size_t>(w.size()) != static_cast<size_t>(w.rank())) continue;
            ProbeOptions o = po;
            o.seed = static_cast<uint64_t>(s + 1);
            for (const auto& r : run_probe_task(e, task, fr, o, fold, folds)) mine.push_back(score_json(this_job, r));
          }
    }
    collect(mine, w, &scores);
    // Fine-tuning jobs (task x fraction x seed) round-robin over the rank groups; the ranks of a
    // group share each batch.
    if (src.trainable && !ft_fractions.empty()) {
      json tuned = json::array();
      size_t ft_job = 0;
      for (const auto& task : tasks) {
        if (task == "covers") continue;
        const auto task_folds = folds_of(task);
        for (double fr : ft_fractions)
          for (int s = 0; s < ft_seeds; ++s)
            for (int fold : task_folds) {
              const size_t this_job = ft_job++;
              if (static_cast<int>(this_job % static_cast<size_t>(groups.count())) != groups.index()) continue;
              FinetuneOptions o = fo;
              o.seed = static_cast<uint64_t>(s + 1);
              const TaskTracks tt = task_tracks(e, task, fr, o.seed, fold, folds);
              const auto t0 = std::chrono::steady_clock::now();
              if (groups.leader())
                spdlog::info("{} fine-tuning on {}: {} training tracks ({}%), seed {}, group {} of {}", e.source, task,
                             tt.train.size(), fr * 100, o.seed, groups.index() + 1, groups.count());
              const ProbeRun r = finetune(data, e, src.checkpoint, mo, tt.train, tt.valid, tt.test,
                                          task == "tagging" ? TaskKind::multilabel : TaskKind::multiclass, o, groups.comm());
              if (!groups.leader()) continue;
              spdlog::info("{} fine-tuned on {} ({} training tracks, seed {}): {} epochs, best valid loss {:.4f}, {:.1f} s",
                           e.source, task, tt.train.size(), o.seed, r.epochs, r.best_valid_loss,
                           std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
              TaskScore stamp;
              stamp.source = e.source, stamp.protocol = "finetune", stamp.fraction = fr, stamp.seed = o.seed;
              stamp.fold = fold;
              for (const auto& x : score_tracks(e, task, tt.test, r.scores, stamp)) tuned.push_back(score_json(this_job, x));
            }
      }
      collect(tuned, w, &scores);
    }
    // Covers: every track with a cover group queries all others by its track embedding (tracks
    // without one are only distractors); query blocks spread over ranks. With a split by work
    // (the data's, or eval.covers_split's draw), only the test side is ranked.
    if (std::find(tasks.begin(), tasks.end(), "covers") != tasks.end()) {
      const CoversSplit cs = covers_split_of(data_tracks);
      std::vector<size_t> keep;  // the tracks ranked
      for (size_t i = 0; i < e.tracks.size(); ++i)
        if (cs.source == CoversSplitSource::none || cs.split[i] == "test") keep.push_back(i);
      std::vector<int64_t> cover_groups;
      std::vector<float> kept(keep.size() * static_cast<size_t>(e.dim));
      for (size_t j = 0; j < keep.size(); ++j) {
        cover_groups.push_back(e.tracks[keep[j]].cover_group);
        std::copy_n(e.track_level[0].data() + keep[j] * static_cast<size_t>(e.dim), e.dim,
                    kept.data() + j * static_cast<size_t>(e.dim));
      }
      if (w.is_root()) {
        if (cs.source == CoversSplitSource::none)
          spdlog::info("{}: covers: no split by work: all {} works ranked", e.source, cs.works[2]);
        else
          spdlog::info("{}: covers: split by work from {}: {} train / {} valid / {} test works; the {} test-side "
                       "tracks are ranked", e.source,
                       cs.source == CoversSplitSource::data ? "the data" : "eval.covers_split (seeded)", cs.works[0],
                       cs.works[1], cs.works[2], keep.size());
        if (cs.source == CoversSplitSource::data && covers_fractions)
          spdlog::warn("{}: covers: the data has its own split by work; eval.covers_split is not used", e.source);
      }
      const auto ungrouped = std::count_if(cover_groups.begin(), cover_groups.end(), [](int64_t g) { return g < 0; });
      if (w.is_root() && ungrouped > 0)
        spdlog::info("{}: covers: {} of {} tracks have no cover group: neither queries nor answers, ranked as "
                     "distractors", e.source, ungrouped, cover_groups.size());
      const auto sum = rank_covers(kept.data(), keep.size(), static_cast<size_t>(e.dim), cover_groups, w);
      if (w.is_root()) push_covers(&scores, e.source, "", "covers", 0, sum);
      if (!chance_groups) chance_groups = cover_groups;
      // The transfer set, all its works, with the same frozen model.
      if (!transfer_data.empty()) {
        EmbeddingSet te = extract(transfer_data, *src.features, w);
        std::vector<int64_t> tg;
        for (const auto& t : te.tracks) tg.push_back(t.cover_group);
        const auto ts = rank_covers(te.track_level[0].data(), te.tracks.size(), static_cast<size_t>(te.dim), tg, w);
        if (w.is_root()) {
          spdlog::info("{}: covers on the transfer set {}: {} tracks, MAP {:.4f}", e.source, transfer_data, te.tracks.size(), ts.map);
          push_covers(&scores, e.source, "", "covers_transfer", 0, ts);
        }
        if (!transfer_meta) {
          te.crops.clear(), te.track_level.clear();  // the fine-tuned jobs need the tracks only
          transfer_meta = std::move(te);
        }
      }
    }
    if (!covers_meta) {
      covers_meta = EmbeddingSet{};
      covers_meta->source = e.source, covers_meta->tracks = data_tracks;
    }
  }
  // The paper's table 3: models trained on the training works (jobs = model x seed, round-robin
  // over the rank groups, the ranks of a group sharing each batch).
  if (!covers_models.empty()) {
    if (!transfer_data.empty() && !transfer_meta) {  // the covers task was not asked for: no frozen pass read it
      // Only the tracks are needed: the cheapest source reads them (log-mel statistics, no model).
      EmbeddingSet te = extract(transfer_data, *logmel_stats_source(f), w);
      te.crops.clear(), te.track_level.clear();
      transfer_meta = std::move(te);
    }
    const CoversSplit cs = covers_split_of(covers_meta->tracks);
    if (cs.source == CoversSplitSource::none)
      MART_CONFIG_ERROR("eval.covers_models needs a split by work: a covers list with a split column, or eval.covers_split "
                        "(e.g. 0.8/0.1/0.1)");
    std::vector<size_t> tr, va, te;
    for (size_t i = 0; i < covers_meta->tracks.size(); ++i) {
      if (cs.split[i] == "test") te.push_back(i);  // with the distractors (no work) of the test side
      else if (covers_meta->tracks[i].cover_group < 0) continue;
      else if (cs.split[i] == "train") tr.push_back(i);
      else if (cs.split[i] == "valid") va.push_back(i);  // "held_out" (eval.score_split valid): never read
    }
    if (!chance_groups) {  // the frozen covers task did not run: the chance row of the tracks ranked here
      chance_groups.emplace();
      for (size_t i : te) chance_groups->push_back(covers_meta->tracks[i].cover_group);
    }
    const CoversSet main_set{data, &*covers_meta};
    const CoversSet transfer_set{transfer_data, transfer_meta ? &*transfer_meta : nullptr};
    // Jobs go to the least-loaded group, the costliest first (mart+cqtnet costs about the other
    // two together: 91 s against 30 s and 37 s on the demo): the same plan on every rank.
    struct CoversJob {
      CoversModel kind;
      int seed;
      size_t index;
    };
    std::vector<CoversJob> jobs;
    for (const auto kind : covers_models)
      for (int s = 0; s < covers_seeds; ++s) jobs.push_back({kind, s, jobs.size()});
    auto cost = [](CoversModel k) { return k == CoversModel::mart_cqtnet ? 2 : 1; };
    std::stable_sort(jobs.begin(), jobs.end(), [&](const CoversJob& a, const CoversJob& b) { return cost(a.kind) > cost(b.kind); });
    std::vector<int> load(static_cast<size_t>(groups.count()), 0);
    json done = json::array();
    for (const auto& job : jobs) {
      const auto g = static_cast<int>(std::min_element(load.begin(), load.end()) - load.begin());
      load[static_cast<size_t>(g)] += cost(job.kind);
      if (g != groups.index()) continue;
      CoversFinetuneOptions o = co;
      o.seed = static_cast<uint64_t>(job.seed + 1);
      const auto t0 = std::chrono::steady_clock::now();
      const std::string name = covers_model_name(job.kind);
      if (groups.leader())
        spdlog::info("covers: training {} on {} tracks of {} works (early stopping on {} tracks, {} {}), seed {}, group {} of {}",
                     name, tr.size(), cs.works[0], va.size(), score_split, te.size(), o.seed, groups.index() + 1, groups.count());
      const auto r = covers_finetune(job.kind, main_set, tr, va, te, transfer_set, trained_checkpoint, mo, o, groups.comm());
      if (!groups.leader()) continue;
      spdlog::info("covers: {} (seed {}): {} epochs, best early-stopping MAP {:.4f} at epoch {}; {} MAP {:.4f}{}; {:.1f} s", name,
                   o.seed, r.epochs, r.best_valid_map, r.best_epoch, score_split, r.test.map,
                   r.has_transfer ? ", transfer MAP " + std::to_string(r.transfer.map) : std::string(),
                   std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
      // Which tracks trained it (an audit: the transfer set and the valid and test works never do).
      std::string trained = "data\ttrack\tsplit\twork\n";
      for (size_t i : r.trained) {
        const auto& t = covers_meta->tracks[i];
        trained += data + "\t" + t.id + "\t" + cs.split[i] + "\t" + std::to_string(t.cover_group) + "\n";
      }
      write_file_atomic(out + "/covers-" + name + "-seed" + std::to_string(o.seed) + "-trained.tsv", trained);
      std::vector<TaskScore> mine;
      push_covers(&mine, name, "covers_finetune", "covers", o.seed, r.test);
      if (r.has_transfer) push_covers(&mine, name, "covers_finetune", "covers_transfer", o.seed, r.transfer);
      for (const auto& x : mine) done.push_back(score_json(job.index, x));
    }
    collect(done, w, &scores);
  }
  // What a random ranking scores (exact expectation): a row at this level finds no covers.
  if (w.is_root() && chance_groups) {
    push_covers(&scores, "chance", "chance", "covers", 0, metrics::chance_retrieval(*chance_groups));
    if (transfer_meta) {  // read by the frozen ranking or the trained jobs
      std::vector<int64_t> tg;
      for (const auto& t : transfer_meta->tracks) tg.push_back(t.cover_group);
      push_covers(&scores, "chance", "chance", "covers_transfer", 0, metrics::chance_retrieval(tg));
    }
  }
  if (w.is_root()) {
    json results = json::array();
    for (const auto& s : scores) {
      json row = {{"model", s.source}, {"protocol", s.protocol}, {"task", s.task}, {"metric", s.metric},
                  {"label_fraction", s.fraction}, {"seed", s.seed}, {"value", s.value},
                  {"split", score_split}};
      if (s.fold >= 0) row["fold"] = s.fold;  // mart-eval's own folds (the data had no test split)
      results.push_back(row);
    }
    write_file_atomic(out + "/results.json", results.dump(1));
    const std::string md = (develop ? std::string("Scored on the **valid** split (eval.score_split valid: a development run "
                                                  "for choosing settings; no test label or score was used).\n\n")
                                    : std::string()) +
                           markdown_report(scores, score_split);
    write_file_atomic(out + "/report.md", "# mart-eval on " + data + "\n\n" + md);
    spdlog::info("report ({} probe{}, {} seed(s)); written to {}/report.md\n{}", probe,
                 ft_fractions.empty() ? "" : " and fine-tuning", seeds, out, md);
    const std::string bars = app::plot("results", out);
    if (!bars.empty()) spdlog::info("the report's bars per task: {}", bars);
  }
  return app::kExitOk;
}

}  // namespace mart::eval
