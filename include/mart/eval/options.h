#pragma once
// mart-eval's options, declared once for the command line and INI files, parsed and checked in one
// place (as mart-train's). Every default is written once: in EvalOptions, or in the options of the
// protocol that uses it (ProbeOptions, FinetuneOptions, CoversFinetuneOptions), which the
// declarations read. No torch here.
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "mart/core/config.h"
#include "mart/data/manifest.h"
#include "mart/eval/covers_finetune.h"
#include "mart/eval/covers_split.h"
#include "mart/eval/finetune.h"
#include "mart/eval/probe.h"

namespace mart::eval {

struct EvalOptions {
  // Data.
  std::string data, run;
  std::string checkpoint;     // a mart-train run or checkpoint folder; empty: the baselines only
  std::string transfer_data;  // a second covers set every model ranks, never trained on
  bool force = false;         // recompute embeddings even where the run folder holds some
  // Tasks.
  std::vector<std::string> tasks;  // tagging, classification, covers; empty: all the labels allow ("auto")
  ProbeOptions probe;              // kind, max_epochs, patience; each job sets its seed
  int seeds = 3;                   // probe seeds
  int folds = 10;                  // folds of data without a test split; 0: refuse such data
  std::optional<CoversSplitFractions> covers_split;  // a seeded split by work; none: the data's
  uint64_t covers_split_seed = 1;
  std::string score_split = "test";  // test, or valid: a development run (develop())
  std::vector<double> label_fractions{1.0};
  EmbeddingVector embedding = EmbeddingVector::hat0;
  bool baselines = true;  // a random encoder and log-mel statistics besides the checkpoint
  // Fine-tuning of the whole model.
  std::vector<double> finetune_fractions;  // empty: no fine-tuning
  int finetune_seeds = 0;                  // 0: `seeds` (finetune_seed_count())
  FinetuneOptions finetune;                // each job sets its seed
  // The paper's table 3: covers models trained on the training works.
  std::vector<CoversModel> covers_models;  // empty: none
  int covers_seeds = 1;
  CoversFinetuneOptions covers;  // each job sets its seed
  // Execution.
  int group_ranks = 1;  // ranks per fine-tuning job
  int threads = 0;      // intra-op threads per rank; 0: cores / ranks on the node

  bool develop() const { return score_split == "valid"; }
  int finetune_seed_count() const { return finetune_seeds > 0 ? finetune_seeds : seeds; }
  // Whether a covers model reads the constant-Q (cqtnet, mart+cqtnet).
  bool covers_read_cqt() const;
};

void declare_options(Config& config);
// Parses and checks every value (ConfigError naming the key); reads no file.
EvalOptions options_from(const Config& config);
// Against the data before any work: the tasks asked for have their labels, covers models that read
// the constant-Q find it in the shards, and the transfer set has the evaluation data's features.
void check_against_data(const EvalOptions& options, const data::Manifest& manifest);
// mart-eval's check before any work (app::Stage::check): options_from, then check_against_data.
void check_options(const Config& config);

}  // namespace mart::eval
