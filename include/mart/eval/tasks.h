#pragma once
// The probe tasks on frozen embeddings (tagging, classification): which tracks train, validate and
// test a job, a probe job, and a track's scores from its crops'. No torch here.
#include <cstdint>
#include <string>
#include <vector>

#include "mart/eval/embed.h"
#include "mart/eval/probe.h"
#include "mart/eval/report.h"

namespace mart::eval {

// The tracks of a task: those with its labels in the train / valid / test splits (without a valid
// split every tenth training track validates); with fraction < 1 a subset of the training tracks
// (at least one) drawn with `seed`. Throws ConfigError when a split is empty.
//
// Data without a test split (GTZAN without split lists: every track is "train") is cut into
// `folds` folds instead: with `fold` >= 0 the training tracks of fold `fold` are the test tracks
// and the others train (and validate, as above). The folds are stratified by class for
// classification (each class dealt round-robin, in a seeded shuffled order, over the folds,
// continuing where the previous class stopped, so fold sizes differ by at most one) and seeded by
// a constant: every job, seed and model sees the same folds. `fold` < 0 on such data throws.
struct TaskTracks {
  std::vector<size_t> train, valid, test;
};
TaskTracks task_tracks(const EmbeddingSet& set, const std::string& task, double fraction, uint64_t seed,
                       int fold = -1, int folds = 10);
// Development scoring (eval.score_split valid) of the probe and fine-tuning tasks, in place: valid
// tracks become "test" and test tracks "held_out" (task_tracks never reads them), so every tenth
// training track validates (task_tracks' rule when a data set has no valid split).
void develop_splits(std::vector<TrackInfo>* tracks);
// Whether the task's tracks include a test split (else mart-eval makes folds).
bool has_test_split(const EmbeddingSet& set, const std::string& task);
// The fold (0 .. folds-1) of each of `tracks` (indices into set.tracks), stratified by class when
// `by_class`. Throws ConfigError when there are fewer tracks than folds or folds < 2.
std::vector<int> stratified_folds(const EmbeddingSet& set, const std::vector<size_t>& tracks, bool by_class, int folds);

// Metrics of `test` tracks from per-crop scores ([crops of the test tracks in order, outputs]): a
// track's score is the mean over its crops. Tagging: ROC-AUC, PR-AUC; classification: accuracy,
// ROC-AUC, PR-AUC (one-vs-rest macro).
std::vector<TaskScore> score_tracks(const EmbeddingSet& set, const std::string& task, const std::vector<size_t>& test,
                                    const std::vector<float>& crop_scores, const TaskScore& stamp);

// Tagging / classification with a probe on `set` (crops of the train split, early stopping on
// valid, scored on test, a track = the mean of its crops). Throws ConfigError when a split or
// the task's labels are missing.
std::vector<TaskScore> run_probe_task(const EmbeddingSet& set, const std::string& task, double fraction,
                                      const ProbeOptions& options, int fold = -1, int folds = 10);
// Tasks the labels of `set` support: tagging (tags), classification (classes), covers (groups).
std::vector<std::string> available_tasks(const EmbeddingSet& set);

}  // namespace mart::eval
