#include "mart/eval/tasks.h"

#include <algorithm>
#include <map>

#include "mart/core/error.h"
#include "mart/core/rng.h"
#include "mart/eval/covers_split.h"
#include "mart/metrics/metrics.h"

namespace mart::eval {

std::vector<std::string> available_tasks(const EmbeddingSet& set) {
  std::vector<std::string> tasks;
  bool tags = false, classes = false, covers = false;
  for (const auto& t : set.tracks) {
    for (auto tag : t.tags) tags = tags || tag;
    classes = classes || t.class_index >= 0;
    covers = covers || t.cover_group >= 0;
  }
  if (tags) tasks.push_back("tagging");
  if (classes) tasks.push_back("classification");
  if (covers) tasks.push_back("covers");
  return tasks;
}

bool has_test_split(const EmbeddingSet& set, const std::string& task) {
  for (const auto& t : set.tracks)
    if (t.split == "test" && !(task == "classification" && t.class_index < 0)) return true;
  return false;
}

void develop_splits(std::vector<TrackInfo>* tracks) {
  for (auto& t : *tracks) t.split = develop_split(t.split);
}

std::vector<int> stratified_folds(const EmbeddingSet& set, const std::vector<size_t>& tracks, bool by_class, int folds) {
  if (folds < 2) MART_CONFIG_ERROR("eval.folds must be at least 2 to make folds, got ", folds);
  if (tracks.size() < static_cast<size_t>(folds))
    MART_CONFIG_ERROR("cannot make ", folds, " folds of ", tracks.size(), " tracks: lower eval.folds or give the data a "
                      "test split");
  std::map<int32_t, std::vector<size_t>> strata;  // class -> positions in `tracks`
  for (size_t j = 0; j < tracks.size(); ++j) strata[by_class ? set.tracks[tracks[j]].class_index : 0].push_back(j);
  std::vector<int> fold(tracks.size());
  size_t next = 0;
  for (auto& [cls, members] : strata) {
    Rng rng(seed_of(0x666f6c6473ull, static_cast<uint64_t>(static_cast<int64_t>(cls) + 1)));  // "folds"
    rng.shuffle(members);
    for (size_t j : members) fold[j] = static_cast<int>(next++ % static_cast<size_t>(folds));
  }
  return fold;
}

TaskTracks task_tracks(const EmbeddingSet& set, const std::string& task, double fraction, uint64_t seed, int fold,
                       int folds) {
  TaskTracks tracks;
  for (size_t track = 0; track < set.tracks.size(); ++track) {
    const auto& info = set.tracks[track];
    if (task == "classification" && info.class_index < 0) continue;
    if (info.split == "train") tracks.train.push_back(track);
    else if (info.split == "valid") tracks.valid.push_back(track);
    else if (info.split == "test") tracks.test.push_back(track);
  }
  if (fold >= 0) {  // no test split: fold `fold` of the training tracks tests
    MART_CHECK(tracks.test.empty(), "task ", task, ": folds asked for although the data has a test split");
    MART_CHECK(fold < folds, "fold ", fold, " of ", folds);
    const auto fold_of = stratified_folds(set, tracks.train, task == "classification", folds);
    std::vector<size_t> keep;
    for (size_t j = 0; j < tracks.train.size(); ++j) (fold_of[j] == fold ? tracks.test : keep).push_back(tracks.train[j]);
    tracks.train = keep;
  }
  if (tracks.valid.empty()) {
    std::vector<size_t> keep;
    for (size_t j = 0; j < tracks.train.size(); ++j) (j % 10 == 9 ? tracks.valid : keep).push_back(tracks.train[j]);
    tracks.train = keep;
  }
  if (tracks.train.empty() || tracks.valid.empty() || tracks.test.empty())
    MART_CONFIG_ERROR("task ", task, " needs tracks in the train, valid and test splits; found ", tracks.train.size(), ", ",
                      tracks.valid.size(), ", ", tracks.test.size(), ": give the dataset a split (labels CSV or split lists)",
                      tracks.test.empty() ? " or let mart-eval make folds (eval.folds at least 2)" : "");
  if (fraction < 1.0) {  // a seeded subset of the training tracks (at least one)
    Rng rng(seed_of(seed, 0x66726163ull, static_cast<uint64_t>(fraction * 1e6)));
    rng.shuffle(tracks.train);
    tracks.train.resize(std::max<size_t>(1, static_cast<size_t>(fraction * static_cast<double>(tracks.train.size()))));
    std::sort(tracks.train.begin(), tracks.train.end());
  }
  return tracks;
}

namespace {

// The probe's rows: every crop of `tracks` with its track's labels.
ProbeSet crop_rows(const EmbeddingSet& set, const std::vector<size_t>& tracks, const std::string& task) {
  ProbeSet examples;
  examples.dim = set.dim;
  examples.outputs = static_cast<int64_t>(task == "tagging" ? set.tag_names.size() : set.class_names.size());
  for (size_t track : tracks) {
    const auto& info = set.tracks[track];
    for (int64_t crop = info.crop_begin; crop < info.crop_end; ++crop) {
      examples.features.insert(examples.features.end(), set.crops.begin() + crop * set.dim,
                               set.crops.begin() + (crop + 1) * set.dim);
      if (task == "tagging") {
        for (auto tag : info.tags) examples.targets.push_back(static_cast<float>(tag));
      } else {
        examples.targets.push_back(static_cast<float>(info.class_index));
      }
      ++examples.rows;
    }
  }
  return examples;
}

}  // namespace

std::vector<TaskScore> score_tracks(const EmbeddingSet& set, const std::string& task, const std::vector<size_t>& test,
                                    const std::vector<float>& crop_scores, const TaskScore& stamp) {
  const size_t outputs = task == "tagging" ? set.tag_names.size() : set.class_names.size();  // per crop
  std::vector<double> scores;
  std::vector<uint8_t> tags;
  std::vector<int64_t> classes;
  size_t row = 0;
  for (size_t track : test) {
    const auto& info = set.tracks[track];
    const size_t crops = static_cast<size_t>(info.crop_end - info.crop_begin);
    MART_CHECK((row + crops) * outputs <= crop_scores.size(), "fewer crop scores than test crops");
    for (size_t output = 0; output < outputs; ++output) {
      double sum = 0;
      for (size_t crop = 0; crop < crops; ++crop) sum += crop_scores[(row + crop) * outputs + output];
      scores.push_back(sum / static_cast<double>(crops));
    }
    row += crops;
    tags.insert(tags.end(), info.tags.begin(), info.tags.end());
    classes.push_back(info.class_index);
  }
  MART_CHECK(row * outputs == crop_scores.size(), "more crop scores than test crops");
  std::vector<TaskScore> out;
  auto add = [&](const std::string& metric, double value) {
    TaskScore score = stamp;
    score.task = task, score.metric = metric, score.value = value;
    out.push_back(score);
  };
  if (task == "tagging") {
    const auto tagging = metrics::tagging_metrics(scores, tags, outputs);
    add("ROC-AUC", tagging.roc_auc.value);
    add("PR-AUC", tagging.pr_auc.value);
  } else {
    const auto classification = metrics::classification_metrics(scores, classes, outputs);
    add("accuracy", classification.accuracy);
    add("ROC-AUC", classification.roc_auc.value);
    add("PR-AUC", classification.pr_auc.value);
  }
  return out;
}

std::vector<TaskScore> run_probe_task(const EmbeddingSet& set, const std::string& task, double fraction,
                                      const ProbeOptions& options, int fold, int folds) {
  const TaskTracks tracks = task_tracks(set, task, fraction, options.seed, fold, folds);
  const TaskKind kind = task == "tagging" ? TaskKind::multilabel : TaskKind::multiclass;
  const ProbeSet train = crop_rows(set, tracks.train, task), valid = crop_rows(set, tracks.valid, task),
                 test = crop_rows(set, tracks.test, task);
  const ProbeRun probe = train_probe(train, valid, test.features, test.rows, kind, options);
  TaskScore stamp;
  stamp.source = set.source, stamp.protocol = probe_kind_name(options.kind);
  stamp.fraction = fraction, stamp.seed = options.seed, stamp.fold = fold;
  return score_tracks(set, task, tracks.test, probe.scores, stamp);
}

}  // namespace mart::eval
