#include "mart/eval/report.h"

#include <algorithm>
#include <cstdio>
#include <map>
#include <nlohmann/json.hpp>
#include <sstream>

#include "mart/metrics/metrics.h"

namespace mart::eval {

std::vector<TaskScore> covers_scores(const std::string& source, const std::string& protocol, const std::string& task,
                                     uint64_t seed, const metrics::RetrievalSummary& summary) {
  std::vector<TaskScore> scores;
  for (const auto& [metric, value] : {std::pair{"MAP", summary.map}, std::pair{"P@10", summary.precision_at_k},
                                      std::pair{"MR1", summary.mr1}}) {
    TaskScore score;
    score.source = source, score.protocol = protocol, score.task = task, score.metric = metric;
    score.seed = seed, score.value = value;
    scores.push_back(score);
  }
  return scores;
}

nlohmann::json score_row(const TaskScore& score) {
  nlohmann::json row = {{"model", score.source}, {"protocol", score.protocol}, {"task", score.task},
                        {"metric", score.metric}, {"label_fraction", score.fraction}, {"seed", score.seed},
                        {"value", score.value}};
  if (score.fold >= 0) row["fold"] = score.fold;  // mart-eval's own folds (the data had no test split)
  return row;
}

TaskScore score_from_row(const nlohmann::json& row) {
  TaskScore score;
  score.source = row.at("model"), score.protocol = row.at("protocol"), score.task = row.at("task");
  score.metric = row.at("metric");
  score.fraction = row.at("label_fraction").get<double>();
  score.seed = row.at("seed").get<uint64_t>();
  score.value = row.at("value").get<double>();
  score.fold = row.value("fold", -1);
  return score;
}

std::string results_json(const std::vector<TaskScore>& scores, const std::string& split) {
  nlohmann::json results = nlohmann::json::array();
  for (const auto& score : scores) {
    auto row = score_row(score);
    row["split"] = split;
    results.push_back(row);
  }
  return results.dump(1);
}

namespace {

// One table: columns are task metrics (with the label fraction when not 1), rows the models in
// first-seen order, cells "mean ± std" over seeds.
std::string table(const std::vector<TaskScore>& scores) {
  std::vector<std::string> sources, columns;
  std::map<std::pair<std::string, std::string>, std::vector<double>> cells;
  for (const auto& score : scores) {
    std::ostringstream col;
    col << score.task << " " << score.metric;
    if (score.fraction < 1.0) col << " @" << score.fraction * 100 << "%";
    if (std::find(sources.begin(), sources.end(), score.source) == sources.end()) sources.push_back(score.source);
    if (std::find(columns.begin(), columns.end(), col.str()) == columns.end()) columns.push_back(col.str());
    cells[{score.source, col.str()}].push_back(score.value);
  }
  std::ostringstream markdown;
  markdown << "| model |";
  for (const auto& column : columns) markdown << " " << column << " |";
  markdown << "\n|---|";
  for (size_t i = 0; i < columns.size(); ++i) markdown << "---|";
  markdown << "\n";
  for (const auto& src : sources) {
    markdown << "| " << src << " |";
    for (const auto& column : columns) {
      auto cell = cells.find({src, column});
      if (cell == cells.end()) {
        markdown << " - |";
        continue;
      }
      const auto spread = metrics::mean_std(cell->second);
      char buf[64];
      if (spread.n > 1) std::snprintf(buf, sizeof buf, " %.4f ± %.4f |", spread.mean, spread.std);
      else std::snprintf(buf, sizeof buf, " %.4f |", spread.mean);
      markdown << buf;
    }
    markdown << "\n";
  }
  return markdown.str();
}

}  // namespace

std::string markdown_report(const std::vector<TaskScore>& scores, const std::string& scored) {
  // As the paper: one table for frozen embeddings (probes, covers), one for fine-tuning, and
  // with eval.covers_models a third shaped like its table 3 (covers rows only).
  std::vector<TaskScore> frozen, tuned, covers;
  for (const auto& score : scores) {
    if (score.protocol == "covers_finetune") {
      TaskScore row = score;
      row.source = score.source == "cqtnet" ? "cqtnet (from scratch)" : score.source + " (fine-tuned)";
      covers.push_back(row);
      continue;
    }
    if (score.protocol == "chance") {  // the expectation of a random ranking, in both covers tables
      TaskScore row = score;
      row.source = "chance (random ranking)";
      frozen.push_back(row);
      covers.push_back(row);
      continue;
    }
    (score.protocol == "finetune" ? tuned : frozen).push_back(score);
    if (score.protocol.empty() && (score.task == "covers" || score.task == "covers_transfer")) {
      TaskScore row = score;
      row.source = score.source + " (frozen)";
      covers.push_back(row);
    }
  }
  if (tuned.empty() && covers.empty()) return table(frozen);
  std::string markdown;
  if (!frozen.empty())
    markdown += "Frozen embeddings (probes; covers by cosine similarity):\n\n" + table(frozen) + "\n";
  if (!tuned.empty())
    markdown += "Fine-tuned whole model (encoder and part-whole transformer):\n\n" + table(tuned) + "\n";
  if (!covers.empty()) {
    // Fine-tuned rows first, as the paper lists them.
    std::stable_partition(covers.begin(), covers.end(),
                          [](const TaskScore& score) { return score.protocol == "covers_finetune"; });
    const bool transfer = std::any_of(covers.begin(), covers.end(),
                                      [](const TaskScore& score) { return score.task == "covers_transfer"; });
    markdown += "Cover songs as the paper's table 3 (" + scored + " works" +
          (transfer ? "; covers_transfer: the transfer set, never trained on" : "") + "):\n\n" + table(covers) + "\n";
  }
  return markdown;
}

}  // namespace mart::eval
