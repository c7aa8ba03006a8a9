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
ProbeKind parse_probe_kind(const std::string& name);  // "linear", "mlp"; else a ConfigError (eval.probe)
const char* probe_kind_name(ProbeKind kind);
enum class TaskKind { multilabel, multiclass };

// What the tasks see of a MART model's crop as level 0: s^^0 (after the part-whole transformer),
// s~^0 (the encoder's output) or every level's mean over its clips, concatenated (one level).
enum class EmbeddingVector { hat0, tilde0, levels };
EmbeddingVector parse_embedding_vector(const std::string& name);  // else a ConfigError (eval.embedding)
const char* embedding_vector_name(EmbeddingVector vector);

struct ProbeOptions {
  ProbeKind kind = ProbeKind::linear;
  double lr = 1e-3, weight_decay = 1e-6;
  int max_epochs = 200, patience = 10, batch_size = 256, hidden = 512;
  uint64_t seed = 1;
};

// Rows of features with targets: multilabel targets are [rows, outputs] 0/1; multiclass targets
// are [rows] class indices.
struct ProbeSet {
  std::vector<float> features;  // [rows, dim]
  std::vector<float> targets;
  int64_t rows = 0, dim = 0, outputs = 0;
};

struct ProbeRun {
  std::vector<float> scores;  // [n_test, outputs]: sigmoid (multilabel) or softmax (multiclass)
  int epochs = 0;             // epochs trained before early stopping
  double best_valid_loss = 0;
};

// Trains on `train`, stops early on `valid`, scores `test_x` ([n_test, d]).
ProbeRun train_probe(const ProbeSet& train, const ProbeSet& valid, const std::vector<float>& test_x, int64_t n_test,
                     TaskKind task, const ProbeOptions& options);

// The MART model of a checkpoint directory (or a randomly initialised one when `checkpoint` is
// empty) as a feature source: the per-level means of s^ (after the part-whole transformer), level 0
// the `vector` the downstream tasks see.
std::unique_ptr<FeatureSource> mart_source(const std::string& checkpoint, const model::ModelOptions& model_options,
                                           uint64_t seed, int threads,
                                           EmbeddingVector vector = EmbeddingVector::hat0);

}  // namespace mart::eval
