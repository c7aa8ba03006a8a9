#include "mart/eval/tasks.h"

#include <algorithm>
#include <map>

#include "mart/core/error.h"
#include "mart/core/rng.h"
#include "mart/eval/covers_split.h"
#include "mart/metrics/metrics.h"

namespace mart::eval {

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

}  // namespace mart::eval
