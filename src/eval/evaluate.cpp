#include "mart/eval/evaluate.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <filesystem>
#include <map>
#include <nlohmann/json.hpp>
#include <numeric>
#include <set>
#include <sstream>

#include "mart/core/error.h"
#include "mart/core/fs.h"
#include "mart/core/rng.h"
#include "mart/data/manifest.h"
#include "mart/eval/metrics.h"
#include "mart/eval/retrieval.h"
#include "mart/preprocess/datasets.h"
#include "mart/train/checkpoint.h"
#include "mart/train/options.h"

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
  c.add<std::string>("eval.label_fractions", "1.0", "fractions of the training labels, e.g. 0.01,0.1,1.0", "Tasks");
  c.add<int>("eval.max_epochs", 200, "probe epochs at most", "Tasks");
  c.add<int>("eval.patience", 10, "early-stopping patience (epochs without a better validation loss)", "Tasks");
  c.add<bool>("eval.baselines", true, "also evaluate a randomly initialised encoder and log-mel statistics", "Tasks");
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

namespace {

struct Splits {
  std::vector<size_t> train, valid, test;
};

// The train/valid/test tracks that carry the task's labels. Without a valid split, every tenth
// training track (by position) validates.
Splits splits_for(const EmbeddingSet& e, const std::string& task) {
  Splits s;
  for (size_t i = 0; i < e.tracks.size(); ++i) {
    const auto& t = e.tracks[i];
    if (task == "classification" && t.class_index < 0) continue;
    if (t.split == "train") s.train.push_back(i);
    else if (t.split == "valid") s.valid.push_back(i);
    else if (t.split == "test") s.test.push_back(i);
  }
  if (s.valid.empty()) {
    std::vector<size_t> keep;
    for (size_t j = 0; j < s.train.size(); ++j) (j % 10 == 9 ? s.valid : keep).push_back(s.train[j]);
    s.train = keep;
  }
  if (s.train.empty() || s.valid.empty() || s.test.empty())
    MART_CONFIG_ERROR("task ", task, " needs tracks in the train, valid and test splits; found ", s.train.size(), ", ",
                      s.valid.size(), ", ", s.test.size(), ": give the dataset a split (labels CSV or split lists)");
  return s;
}

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

std::vector<TaskScore> run_probe_task(const EmbeddingSet& e, const std::string& task, double fraction,
                                      const ProbeOptions& o) {
  Splits s = splits_for(e, task);
  if (fraction < 1.0) {  // a seeded subset of the training tracks (at least one)
    Rng rng(seed_of(o.seed, 0x66726163ull, static_cast<uint64_t>(fraction * 1e6)));
    for (size_t i = s.train.size(); i > 1; --i) std::swap(s.train[i - 1], s.train[static_cast<size_t>(rng.next() % i)]);
    s.train.resize(std::max<size_t>(1, static_cast<size_t>(fraction * static_cast<double>(s.train.size()))));
    std::sort(s.train.begin(), s.train.end());
  }
  const TaskKind kind = task == "tagging" ? TaskKind::multilabel : TaskKind::multiclass;
  const ProbeSet train = crop_rows(e, s.train, task), valid = crop_rows(e, s.valid, task),
                 test = crop_rows(e, s.test, task);
  const ProbeRun r = train_probe(train, valid, test.x, test.n, kind, o);
  // A track's scores: the mean over its crops.
  const size_t k = static_cast<size_t>(train.k);
  std::vector<double> scores;
  std::vector<uint8_t> tags;
  std::vector<int64_t> classes;
  size_t row = 0;
  for (size_t i : s.test) {
    const auto& t = e.tracks[i];
    const size_t n = static_cast<size_t>(t.crop_end - t.crop_begin);
    for (size_t j = 0; j < k; ++j) {
      double m = 0;
      for (size_t c = 0; c < n; ++c) m += r.scores[(row + c) * k + j];
      scores.push_back(m / static_cast<double>(n));
    }
    row += n;
    tags.insert(tags.end(), t.tags.begin(), t.tags.end());
    classes.push_back(t.class_index);
  }
  std::vector<TaskScore> out;
  auto add = [&](const std::string& metric, double v) { out.push_back({e.source, task, metric, fraction, o.seed, v}); };
  if (kind == TaskKind::multilabel) {
    const auto m = tagging_metrics(scores, tags, k);
    add("ROC-AUC", m.roc_auc.value);
    add("PR-AUC", m.pr_auc.value);
  } else {
    const auto m = classification_metrics(scores, classes, k);
    add("accuracy", m.accuracy);
    add("ROC-AUC", m.roc_auc.value);
    add("PR-AUC", m.pr_auc.value);
  }
  return out;
}

std::string markdown_report(const std::vector<TaskScore>& scores) {
  // Columns: task metric (and fraction when not 1); rows: sources in first-seen order.
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
      const auto ms = mean_std(it->second);
      char buf[64];
      if (ms.n > 1) std::snprintf(buf, sizeof buf, " %.4f ± %.4f |", ms.mean, ms.std);
      else std::snprintf(buf, sizeof buf, " %.4f |", ms.mean);
      md << buf;
    }
    md << "\n";
  }
  return md.str();
}

namespace {

// Every rank's JSON array, concatenated in rank order.
json gather_json(const json& mine, const dist::World& w) {
  json out = json::array();
  for (const auto& part : w.all_gather_bytes(mine.dump()))
    for (auto& x : json::parse(part)) out.push_back(x);
  return out;
}

// The checkpoint folder: the given one, or a train run's newest.
std::string resolve_checkpoint(const std::string& path) {
  if (fs::exists(path + "/COMPLETE")) return path;
  if (auto latest = train::latest_checkpoint(path)) return *latest;
  MART_CONFIG_ERROR("checkpoint '", path, "' is neither a complete checkpoint folder nor a mart-train run with one");
}

model::ModelOptions model_of_checkpoint(const std::string& ckpt, const audio::FeatureConfig& f) {
  Config c("checkpoint", "model options");
  train::declare_model_options(c);
  c.parse_ini_text(read_file(ckpt + "/model.ini"), ckpt + "/model.ini");
  model::ModelOptions m = train::model_options_from(c);
  m.levels = f.levels;
  m.parts = f.parts;
  m.n_mels = f.n_mels;
  m.frames = f.frames;
  const auto state = train::read_train_state(ckpt);
  if (state.model_canonical != m.canonical())
    MART_CONFIG_ERROR("checkpoint '", ckpt, "' was trained on features with another hierarchy or mel size than '",
                      "the evaluation data:\n  checkpoint: ", state.model_canonical, "\n  data gives: ", m.canonical(),
                      "\nrun mart-preprocess on the evaluation data with the features of the training data");
  return m;
}

}  // namespace

int run(app::StageContext& ctx) {
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
  const auto fractions = train::parse_double_list(c.get<std::string>("eval.label_fractions"), "eval.label_fractions");
  for (double fr : fractions)
    if (!(fr > 0 && fr <= 1)) MART_CONFIG_ERROR("eval.label_fractions must lie in (0, 1], got ", fr);
  const int threads = c.get<int>("eval.threads") > 0 ? c.get<int>("eval.threads") : std::max(1, 2 / w.local_size());

  // The feature sources: the trained model first, then the baselines.
  std::vector<std::unique_ptr<FeatureSource>> sources;
  const std::string ckpt_arg = c.get<std::string>("checkpoint");
  model::ModelOptions mo;
  if (!ckpt_arg.empty()) {
    const std::string ckpt = resolve_checkpoint(ckpt_arg);
    mo = model_of_checkpoint(ckpt, f);
    sources.push_back(mart_source(ckpt, mo, 1, threads));
    if (w.is_root()) spdlog::info("evaluating checkpoint {}", ckpt);
  }
  if (c.get<bool>("eval.baselines")) {
    if (ckpt_arg.empty()) {  // a random encoder needs a model shape: the small default at these features
      mo = model::ModelOptions::small();
      mo.levels = f.levels, mo.parts = f.parts, mo.n_mels = f.n_mels, mo.frames = f.frames;
    }
    sources.push_back(mart_source("", mo, 1, threads));
    sources.push_back(logmel_stats_source(f));
  }
  if (sources.empty()) MART_CONFIG_ERROR("nothing to evaluate: give --checkpoint or keep eval.baselines on");

  std::vector<TaskScore> scores;
  json covers = json::array();
  for (auto& src : sources) {
    const EmbeddingSet e = extract(data, *src, w);
    if (w.is_root()) {
      write_embeddings(out + "/embeddings-" + e.source + ".h5", e);
      spdlog::info("{}: {} tracks, {} crops, {}-d embeddings", e.source, e.tracks.size(), e.num_crops(), e.dim);
    }
    std::vector<std::string> tasks = available_tasks(e);
    const std::string asked = c.get<std::string>("eval.tasks");
    if (asked != "auto") {
      const auto want = preprocess::split_list(asked, ',');
      for (const auto& t : want)
        if (std::find(tasks.begin(), tasks.end(), t) == tasks.end())
          MART_CONFIG_ERROR("task '", t, "' needs labels the shards in '", data, "' do not have (they support: ",
                            [&] { std::string s; for (auto& x : tasks) s += x + " "; return s; }(), ")");
      tasks = want;
    }
    // Probe jobs (task x fraction x seed) round-robin over the ranks.
    json mine = json::array();
    size_t job = 0;
    for (const auto& task : tasks) {
      if (task == "covers") continue;
      for (double fr : fractions)
        for (int s = 0; s < seeds; ++s, ++job) {
          if (job % static_cast<size_t>(w.size()) != static_cast<size_t>(w.rank())) continue;
          ProbeOptions o = po;
          o.seed = static_cast<uint64_t>(s + 1);
          for (const auto& r : run_probe_task(e, task, fr, o))
            mine.push_back({job, r.source, r.task, r.metric, r.fraction, r.seed, r.value});
        }
    }
    // In job order, whatever rank ran a job: the report is the same for any rank count.
    json done = gather_json(mine, w);
    std::stable_sort(done.begin(), done.end(), [](const json& a, const json& b) { return a[0].get<size_t>() < b[0].get<size_t>(); });
    for (const auto& x : done)
      scores.push_back({x[1], x[2], x[3], x[4].get<double>(), x[5].get<uint64_t>(), x[6].get<double>()});
    // Covers: every track queries all others by its track embedding; query blocks spread over ranks.
    if (std::find(tasks.begin(), tasks.end(), "covers") != tasks.end()) {
      std::vector<int64_t> groups;
      for (const auto& t : e.tracks) groups.push_back(t.cover_group);
      const Embeddings emb{e.track_level[0].data(), e.tracks.size(), static_cast<size_t>(e.dim)};
      const size_t n = e.tracks.size(), per = (n + static_cast<size_t>(w.size()) - 1) / static_cast<size_t>(w.size());
      const size_t q0 = std::min(n, per * static_cast<size_t>(w.rank())), q1 = std::min(n, q0 + per);
      json part = json::array();
      for (const auto& q : retrieval_block(emb, groups, q0, q1))
        part.push_back({q.query, q.n_relevant, q.average_precision, q.precision_at_k, q.first_rank});
      std::vector<QueryResult> all;
      for (const auto& x : gather_json(part, w)) {
        QueryResult q;
        q.query = x[0], q.n_relevant = x[1], q.average_precision = x[2], q.precision_at_k = x[3], q.first_rank = x[4];
        all.push_back(q);
      }
      if (w.is_root()) {
        const auto sum = summarize_retrieval(all);
        scores.push_back({e.source, "covers", "MAP", 1.0, 0, sum.map});
        scores.push_back({e.source, "covers", "P@10", 1.0, 0, sum.precision_at_k});
        scores.push_back({e.source, "covers", "MR1", 1.0, 0, sum.mr1});
      }
    }
  }
  if (w.is_root()) {
    json results = json::array();
    for (const auto& s : scores)
      results.push_back({{"model", s.source}, {"task", s.task}, {"metric", s.metric}, {"label_fraction", s.fraction},
                         {"seed", s.seed}, {"value", s.value}});
    write_file_atomic(out + "/results.json", results.dump(1));
    const std::string md = markdown_report(scores);
    write_file_atomic(out + "/report.md", "# mart-eval on " + data + "\n\n" + md);
    spdlog::info("report ({} probe, {} seed(s)); written to {}/report.md\n{}", probe, seeds, out, md);
  }
  return app::kExitOk;
}

}  // namespace mart::eval
