#include "mart/eval/options.h"

#include <algorithm>

#include "mart/core/error.h"
#include "mart/core/text.h"
#include "mart/data/shard.h"

namespace mart::eval {

namespace {

const char* const kTasks[] = {"tagging", "classification", "covers"};

template <typename T>
std::string joined(const std::vector<T>& values) {
  std::string text;
  for (const auto& v : values) text += (text.empty() ? "" : ",") + format_value(v);
  return text;
}

int at_least(const Config& config, const std::string& key, int min) {
  const int value = config.get<int>(key);
  if (value < min) MART_CONFIG_ERROR(key, " must be at least ", min, ", got ", value);
  return value;
}

double positive(const Config& config, const std::string& key) {
  const double value = config.get<double>(key);
  if (!(value > 0)) MART_CONFIG_ERROR(key, " must be positive, got ", value);
  return value;
}

// One of two words.
std::string either(const Config& config, const std::string& key, const std::string& first, const std::string& second) {
  const std::string value = config.get<std::string>(key);
  if (value != first && value != second)
    MART_CONFIG_ERROR(key, " must be ", first, " or ", second, ", got '", value, "'");
  return value;
}

// Label fractions: each in (0, 1]; empty only where `allow_empty`.
std::vector<double> fractions(const Config& config, const std::string& key, bool allow_empty) {
  const std::string text = config.get<std::string>(key);
  if (allow_empty && text.empty()) return {};
  const auto values = parse_double_list(text, key);
  for (double fraction : values)
    if (!(fraction > 0 && fraction <= 1)) MART_CONFIG_ERROR(key, " must lie in (0, 1], got ", fraction);
  return values;
}

std::vector<std::string> tasks_from(const Config& config) {
  const std::string asked = config.get<std::string>("eval.tasks");
  if (asked == "auto") return {};
  const auto tasks = split_list(asked, ',');
  for (const auto& task : tasks)
    if (std::find(std::begin(kTasks), std::end(kTasks), task) == std::end(kTasks))
      MART_CONFIG_ERROR("eval.tasks: unknown task '", task, "' (tasks: tagging, classification, covers, or auto)");
  return tasks;
}

ProbeOptions probe_options_from(const Config& config) {
  ProbeOptions probe;
  probe.kind = parse_probe_kind(config.get<std::string>("eval.probe"));
  probe.max_epochs = at_least(config, "eval.max_epochs", 1);
  probe.patience = at_least(config, "eval.patience", 1);
  return probe;
}

FinetuneOptions finetune_options_from(const Config& config) {
  FinetuneOptions finetune;
  finetune.lr = positive(config, "eval.finetune_lr");
  finetune.max_epochs = at_least(config, "eval.finetune_epochs", 1);
  finetune.patience = at_least(config, "eval.finetune_patience", 1);
  finetune.batch_size = at_least(config, "eval.finetune_batch", 1);
  finetune.bn_estimate_crops = at_least(config, "eval.finetune_bn_crops", 0);
  finetune.frozen_batch_norm = either(config, "eval.finetune_batch_norm", "frozen", "batch") == "frozen";
  return finetune;
}

CoversFinetuneOptions covers_options_from(const Config& config) {
  CoversFinetuneOptions covers;
  covers.max_epochs = at_least(config, "eval.covers_epochs", 1);
  covers.patience = at_least(config, "eval.covers_patience", 1);
  covers.lr = positive(config, "eval.covers_lr");
  covers.pretrained_lr = positive(config, "eval.covers_pretrained_lr");
  covers.batch_size = at_least(config, "eval.covers_batch", 1);
  covers.bn_batch = at_least(config, "eval.covers_bn_batch", 1);
  covers.train_crops = at_least(config, "eval.covers_train_crops", 1);
  covers.segments = parse_int_list(config.get<std::string>("eval.covers_segments"), "eval.covers_segments");
  if (covers.segments.empty()) MART_CONFIG_ERROR("eval.covers_segments names no segment length");
  for (int64_t frames : covers.segments)
    if (frames < 1) MART_CONFIG_ERROR("eval.covers_segments: lengths must be positive, got ", frames);
  covers.cqtnet_width = positive(config, "eval.covers_cqtnet_width");
  return covers;
}

// Whether the shards of the preprocess run in `dir` hold the constant-Q.
bool has_cqt(const std::string& dir) {
  const auto manifest = data::load_manifest(dir + "/manifest.json");
  return manifest.shards.empty() ||
         data::ShardReader(dir + "/" + manifest.shards[0].file, manifest.features).cqt_bins() > 0;
}

}  // namespace

bool EvalOptions::covers_read_cqt() const {
  return std::any_of(covers_models.begin(), covers_models.end(),
                     [](CoversModel model) { return model != CoversModel::mart; });
}

namespace {

// The declarations in the order of `--help` and of the resolved INI, one group of keys each.
void declare_data_options(Config& config, const EvalOptions& defaults) {
  config.add_required<std::string>("data", "folder of mart-preprocess output for the evaluation dataset", "Data");
  config.add_required<std::string>("run", "output folder: embeddings, report.md, results.json, logs", "Data");
  config.add<std::string>("checkpoint", defaults.checkpoint,
                          "a mart-train run folder (its newest checkpoint) or a checkpoint folder; empty: baselines "
                          "only", "Data");
  config.add<bool>("eval.force", defaults.force,
                   "recompute embeddings even when the run folder holds some (of another model: without this the run "
                   "stops)", "Data");
}

void declare_task_options(Config& config, const EvalOptions& defaults) {
  config.add<std::string>("eval.tasks", defaults.tasks.empty() ? "auto" : joined(defaults.tasks),
                          "tagging, classification, covers (comma-separated) or auto: all the labels allow", "Tasks");
  config.add<std::string>("eval.probe", probe_kind_name(defaults.probe.kind),
                          "linear or mlp (one hidden layer of 512)", "Tasks");
  config.add<int>("eval.seeds", defaults.seeds, "probe seeds; the report gives mean and standard deviation", "Tasks");
  config.add<int>("eval.folds", defaults.folds,
                  "data without a test split (GTZAN without split lists): every probe and fine-tuning job runs on "
                  "each of this many folds, stratified by class and seeded (the report pools folds and seeds); 0: "
                  "refuse such data", "Tasks");
  config.add<std::string>("eval.covers_split", "",
                          "covers: fractions of the works for train/valid/test, e.g. 0.8/0.1/0.1, drawn by work (a "
                          "work's versions stay on one side) when the data has no split of its own (a covers list "
                          "without a split column); with a split, the frozen ranking uses the test works only; empty: "
                          "all works", "Tasks");
  config.add<int>("eval.covers_split_seed", static_cast<int>(defaults.covers_split_seed),
                  "seed of eval.covers_split's draw", "Tasks");
  config.add<std::string>("eval.score_split", defaults.score_split,
                          "the split that is scored. test: the report. valid: a development run for choosing "
                          "settings: the valid tracks (covers: valid works) are scored, a tenth of the training "
                          "tracks (works) stands in for valid, and no test label or score and nothing of "
                          "eval.transfer_data is used", "Tasks");
  config.add<std::string>("eval.label_fractions", joined(defaults.label_fractions),
                          "fractions of the training labels, e.g. 0.01,0.1,1.0", "Tasks");
  config.add<int>("eval.max_epochs", defaults.probe.max_epochs, "probe epochs at most", "Tasks");
  config.add<int>("eval.patience", defaults.probe.patience,
                  "early-stopping patience (epochs without a better validation loss)", "Tasks");
  config.add<std::string>("eval.embedding", embedding_vector_name(defaults.embedding),
                          "the vector tasks see: hat0 (s^^0, after the part-whole transformer), tilde0 (s~^0, the "
                          "encoder's output) or levels (every level's mean, concatenated)", "Tasks");
  config.add<bool>("eval.baselines", defaults.baselines,
                   "also evaluate a randomly initialised encoder and log-mel statistics", "Tasks");
}

void declare_finetune_options(Config& config, const EvalOptions& defaults) {
  const FinetuneOptions& finetune = defaults.finetune;
  config.add<std::string>("eval.finetune_fractions", joined(defaults.finetune_fractions),
                          "fine-tune the whole model (trained and random) with these fractions of the training "
                          "labels, e.g. 0.01,0.1; empty: no fine-tuning", "Fine-tuning");
  config.add<int>("eval.finetune_seeds", defaults.finetune_seeds,
                  "fine-tuning seeds (0: eval.seeds); fine-tuning costs far more than a probe", "Fine-tuning");
  config.add<int>("eval.finetune_epochs", finetune.max_epochs, "fine-tuning epochs at most", "Fine-tuning");
  config.add<int>("eval.finetune_patience", finetune.patience, "fine-tuning early-stopping patience (epochs)",
                  "Fine-tuning");
  config.add<double>("eval.finetune_lr", finetune.lr, "fine-tuning Adam learning rate (weight decay 1e-6)",
                     "Fine-tuning");
  config.add<std::string>("eval.finetune_batch_norm", finetune.frozen_batch_norm ? "frozen" : "batch",
                          "frozen: BatchNorm on running statistics (the same result for any group size; a random "
                          "model's are first measured on training crops, eval.finetune_bn_crops); batch: per-rank "
                          "batch statistics", "Fine-tuning");
  config.add<int>("eval.finetune_bn_crops", finetune.bn_estimate_crops,
                  "from-scratch fine-tuning with frozen BatchNorm: measure the random model's BatchNorm statistics "
                  "on up to this many training crops first (0: keep its initial 0/1, no normalisation)",
                  "Fine-tuning");
  config.add<int>("eval.finetune_batch", finetune.batch_size,
                  "fine-tuning global batch (crops), split over the group's ranks", "Fine-tuning");
}

void declare_covers_options(Config& config, const EvalOptions& defaults) {
  const CoversFinetuneOptions& covers = defaults.covers;
  const char* const group = "Covers fine-tuning";
  config.add<std::string>("eval.covers_models", "",
                          "the paper's table-3 protocol: train these on the covers split's training works (cqtnet: "
                          "CQTNet from scratch on the constant-Q, mart-preprocess --features.cqt; mart: the "
                          "checkpoint fine-tuned; mart+cqtnet: both, fused before the embedding layer), stop early "
                          "on the valid works' MAP, rank the test works (comma-separated; empty: none). Needs a "
                          "split by work", group);
  config.add<std::string>("eval.transfer_data", defaults.transfer_data,
                          "a second covers dataset (mart-preprocess output, Covers80-style): every model, frozen or "
                          "fine-tuned on eval.covers_models, also ranks all its works; never trained on", group);
  config.add<int>("eval.covers_seeds", defaults.covers_seeds, "seeds of each eval.covers_models job", group);
  config.add<int>("eval.covers_epochs", covers.max_epochs, "epochs at most", group);
  config.add<int>("eval.covers_patience", covers.patience,
                  "early-stopping patience (epochs without a better valid MAP)", group);
  config.add<double>("eval.covers_lr", covers.lr,
                     "Adam learning rate of what starts untrained: CQTNet, the embedding layer, the classifier "
                     "(weight decay 1e-5, as CQTNet)", group);
  config.add<double>("eval.covers_pretrained_lr", covers.pretrained_lr,
                     "Adam learning rate of the pretrained MART encoder and part-whole transformer (models mart, "
                     "mart+cqtnet; 1e-4 hardly moved it on the demo: docs/metrics.md)", group);
  config.add<int>("eval.covers_batch", covers.batch_size, "global batch (tracks), split over the group's ranks",
                  group);
  config.add<int>("eval.covers_train_crops", covers.train_crops,
                  "MART crop hierarchies per training track, their s^0 averaged (ranking averages all of a "
                  "track's crops; models mart, mart+cqtnet)", group);
  config.add<int>("eval.covers_bn_batch", covers.bn_batch,
                  "tracks per BatchNorm micro-batch (fixed, so results do not depend on the group size)", group);
  config.add<std::string>("eval.covers_segments", joined(covers.segments),
                          "constant-Q frames of a training segment, one length per batch in turn (CQTNet's)", group);
  config.add<double>("eval.covers_cqtnet_width", covers.cqtnet_width,
                     "CQTNet's channels x this (1: the authors' 32..512)", group);
}

void declare_execution_options(Config& config, const EvalOptions& defaults) {
  config.add<int>("eval.group_ranks", defaults.group_ranks,
                  "ranks per fine-tuning job: jobs run side by side on groups of this many ranks (MPI communicator "
                  "split), each group sharing its job's batches", "Execution");
  config.add<int>("eval.threads", defaults.threads, "intra-op threads per rank (0: cores / ranks on the node)",
                  "Execution");
}

}  // namespace

void declare_options(Config& config) {
  const EvalOptions defaults;
  declare_data_options(config, defaults);
  declare_task_options(config, defaults);
  declare_finetune_options(config, defaults);
  declare_covers_options(config, defaults);
  declare_execution_options(config, defaults);
}

EvalOptions options_from(const Config& config) {
  EvalOptions options;
  options.data = config.get<std::string>("data");
  options.run = config.get<std::string>("run");
  options.checkpoint = config.get<std::string>("checkpoint");
  options.transfer_data = config.get<std::string>("eval.transfer_data");
  options.force = config.get<bool>("eval.force");
  options.tasks = tasks_from(config);
  options.probe = probe_options_from(config);
  options.seeds = at_least(config, "eval.seeds", 1);
  options.folds = config.get<int>("eval.folds");
  if (options.folds < 0 || options.folds == 1)
    MART_CONFIG_ERROR("eval.folds must be 0 (no folds) or at least 2, got ", options.folds);
  options.covers_split = parse_covers_split(config.get<std::string>("eval.covers_split"));
  options.covers_split_seed = static_cast<uint64_t>(config.get<int>("eval.covers_split_seed"));
  options.score_split = either(config, "eval.score_split", "test", "valid");
  options.label_fractions = fractions(config, "eval.label_fractions", false);
  options.embedding = parse_embedding_vector(config.get<std::string>("eval.embedding"));
  options.baselines = config.get<bool>("eval.baselines");
  options.finetune_fractions = fractions(config, "eval.finetune_fractions", true);
  options.finetune_seeds = at_least(config, "eval.finetune_seeds", 0);
  options.finetune = finetune_options_from(config);
  for (const auto& name : split_list(config.get<std::string>("eval.covers_models"), ','))
    options.covers_models.push_back(parse_covers_model(name));
  for (const auto model : options.covers_models)
    if (model != CoversModel::cqtnet && options.checkpoint.empty())
      MART_CONFIG_ERROR("eval.covers_models: ", covers_model_name(model), " starts from the pretrained model: give "
                        "--checkpoint");
  options.covers_seeds = at_least(config, "eval.covers_seeds", 1);
  options.covers = covers_options_from(config);
  options.group_ranks = at_least(config, "eval.group_ranks", 1);
  options.threads = config.get<int>("eval.threads");
  if (!options.baselines && options.checkpoint.empty())
    MART_CONFIG_ERROR("nothing to evaluate: give --checkpoint or keep eval.baselines on");
  return options;
}

void check_against_data(const EvalOptions& options, const data::Manifest& manifest) {
  for (const auto& task : options.tasks)
    if ((task == "tagging" && manifest.labels.tag_names.empty()) ||
        (task == "classification" && manifest.labels.class_names.empty()))
      MART_CONFIG_ERROR("task '", task, "' needs labels the shards in '", options.data, "' do not have (no ",
                        task == "tagging" ? "tag" : "class", " names in the manifest): preprocess with a dataset "
                        "kind or labels CSV that gives them");
  const std::string transfer = options.develop() ? "" : options.transfer_data;  // a development run never reads it
  for (const auto& dir : {options.data, transfer})
    if (!dir.empty() && options.covers_read_cqt() && !has_cqt(dir))
      MART_CONFIG_ERROR("eval.covers_models cqtnet and mart+cqtnet read the constant-Q, which the shards in '", dir,
                        "' do not have: run mart-preprocess on it again with --features.cqt true");
  if (!transfer.empty()) {
    const auto features = data::load_manifest(transfer + "/manifest.json").features;
    if (features.canonical() != manifest.features.canonical())
      MART_CONFIG_ERROR("eval.transfer_data '", transfer, "' was preprocessed with other features than '", options.data,
                        "':\n  ", features.canonical(), "\n  ", manifest.features.canonical(),
                        "\nrun mart-preprocess on it with the same config");
  }
}

void check_options(const Config& config) {
  const EvalOptions options = options_from(config);
  check_against_data(options, data::load_manifest(options.data + "/manifest.json"));
}

}  // namespace mart::eval
