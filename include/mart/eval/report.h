#pragma once
// mart-eval's scores and what it writes of them: the rows of results.json (the one form a score
// takes between ranks too) and the tables of report.md. No torch here.
#include <cstdint>
#include <nlohmann/json_fwd.hpp>
#include <string>
#include <vector>

#include "mart/metrics/retrieval.h"

namespace mart::eval {

// One score of one job.
struct TaskScore {
  std::string source, protocol, task, metric;  // protocol: linear, mlp, finetune, or "" (covers: no training)
  double fraction = 1;
  uint64_t seed = 0;
  double value = 0;
  int fold = -1;  // the test fold when mart-eval made folds (no test split in the data), else -1
};

// A covers ranking's scores: MAP, P@10 and MR1 of `task` (covers or covers_transfer).
std::vector<TaskScore> covers_scores(const std::string& source, const std::string& protocol, const std::string& task,
                                     uint64_t seed, const metrics::RetrievalSummary& summary);

// A score as a row of results.json: model, protocol, task, metric, label_fraction, seed, value,
// and fold where mart-eval made folds; score_from_row reads one back.
nlohmann::json score_row(const TaskScore& score);
TaskScore score_from_row(const nlohmann::json& row);
// results.json: every score's row with the split it was scored on.
std::string results_json(const std::vector<TaskScore>& scores, const std::string& split);

// Markdown table: one row per source, one column per task metric, "mean ± std" over seeds.
// `scored`: the split the covers rows rank (test, or valid with eval.score_split valid).
std::string markdown_report(const std::vector<TaskScore>& scores, const std::string& scored = "test");

}  // namespace mart::eval
