#pragma once
// Probes on frozen embeddings (CLMR's protocol): a linear layer or a one-hidden-layer MLP, Adam
// 1e-3, weight decay 1e-6, early stopping on the validation loss (patience 10, at most 200
// epochs), trained on crops; scores of a track are the mean of its crops' outputs. No torch here.
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "mart/eval/embed.h"
#include "mart/model/options.h"

namespace mart::eval {

enum class ProbeKind { linear, mlp };
enum class TaskKind { multilabel, multiclass };

struct ProbeOptions {
  ProbeKind kind = ProbeKind::linear;
  double lr = 1e-3, weight_decay = 1e-6;
  int max_epochs = 200, patience = 10, batch_size = 256, hidden = 512;
  uint64_t seed = 1;
};

// Rows of features with targets: multilabel y is [n, k] 0/1; multiclass y is [n] class indices.
struct ProbeSet {
  std::vector<float> x;
  std::vector<float> y;
  int64_t n = 0, d = 0, k = 0;
};

struct ProbeRun {
  std::vector<float> scores;  // [n_test, k]: sigmoid (multilabel) or softmax (multiclass)
  int epochs = 0;             // epochs trained before early stopping
  double best_valid_loss = 0;
};

// Trains on `train`, stops early on `valid`, scores `test_x` ([n_test, d]).
ProbeRun train_probe(const ProbeSet& train, const ProbeSet& valid, const std::vector<float>& test_x, int64_t n_test,
                     TaskKind task, const ProbeOptions& o);

// The MART model of a checkpoint directory (or a randomly initialised one when `checkpoint` is
// empty) as a feature source: the per-level means of s^ (after the part-whole transformer).
// `vector` chooses what the downstream tasks see as level 0: "hat0" (s^^0, the default),
// "tilde0" (s~^0, the encoder's output) or "levels" (one level: the concatenated level means).
std::unique_ptr<FeatureSource> mart_source(const std::string& checkpoint, const model::ModelOptions& m,
                                           uint64_t seed, int threads, const std::string& vector = "hat0");

}  // namespace mart::eval
