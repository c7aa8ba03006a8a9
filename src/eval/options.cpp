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

int at_least(const Config& c, const std::string& key, int min) {
  const int v = c.get<int>(key);
  if (v < min) MART_CONFIG_ERROR(key, " must be at least ", min, ", got ", v);
  return v;
}

double positive(const Config& c, const std::string& key) {
  const double v = c.get<double>(key);
  if (!(v > 0)) MART_CONFIG_ERROR(key, " must be positive, got ", v);
  return v;
}

// One of two words.
std::string either(const Config& c, const std::string& key, const std::string& first, const std::string& second) {
  const std::string v = c.get<std::string>(key);
  if (v != first && v != second) MART_CONFIG_ERROR(key, " must be ", first, " or ", second, ", got '", v, "'");
  return v;
}

// Label fractions: each in (0, 1]; empty only where `allow_empty`.
std::vector<double> fractions(const Config& c, const std::string& key, bool allow_empty) {
  const std::string text = c.get<std::string>(key);
  if (allow_empty && text.empty()) return {};
  const auto values = parse_double_list(text, key);
  for (double fraction : values)
    if (!(fraction > 0 && fraction <= 1)) MART_CONFIG_ERROR(key, " must lie in (0, 1], got ", fraction);
  return values;
}

std::vector<std::string> tasks_from(const Config& c) {
  const std::string asked = c.get<std::string>("eval.tasks");
  if (asked == "auto") return {};
  const auto tasks = split_list(asked, ',');
  for (const auto& task : tasks)
    if (std::find(std::begin(kTasks), std::end(kTasks), task) == std::end(kTasks))
      MART_CONFIG_ERROR("eval.tasks: unknown task '", task, "' (tasks: tagging, classification, covers, or auto)");
  return tasks;
}

ProbeOptions probe_options_from(const Config& c) {
  ProbeOptions probe;
  probe.kind = parse_probe_kind(c.get<std::string>("eval.probe"));
  probe.max_epochs = at_least(c, "eval.max_epochs", 1);
  probe.patience = at_least(c, "eval.patience", 1);
  return probe;
}

FinetuneOptions finetune_options_from(const Config& c) {
  FinetuneOptions finetune;
  finetune.lr = positive(c, "eval.finetune_lr");
  finetune.max_epochs = at_least(c, "eval.finetune_epochs", 1);
  finetune.patience = at_least(c, "eval.finetune_patience", 1);
  finetune.batch_size = at_least(c, "eval.finetune_batch", 1);
  finetune.bn_estimate_crops = at_least(c, "eval.finetune_bn_crops", 0);
  finetune.frozen_batch_norm = either(c, "eval.finetune_batch_norm", "frozen", "batch") == "frozen";
  return finetune;
}

CoversFinetuneOptions covers_options_from(const Config& c) {
  CoversFinetuneOptions covers;
  covers.max_epochs = at_least(c, "eval.covers_epochs", 1);
  covers.patience = at_least(c, "eval.covers_patience", 1);
  covers.lr = positive(c, "eval.covers_lr");
  covers.pretrained_lr = positive(c, "eval.covers_pretrained_lr");
  covers.batch_size = at_least(c, "eval.covers_batch", 1);
  covers.bn_batch = at_least(c, "eval.covers_bn_batch", 1);
  covers.train_crops = at_least(c, "eval.covers_train_crops", 1);
  covers.segments = parse_int_list(c.get<std::string>("eval.covers_segments"), "eval.covers_segments");
  if (covers.segments.empty()) MART_CONFIG_ERROR("eval.covers_segments names no segment length");
  for (int64_t frames : covers.segments)
    if (frames < 1) MART_CONFIG_ERROR("eval.covers_segments: lengths must be positive, got ", frames);
  covers.cqtnet_width = positive(c, "eval.covers_cqtnet_width");
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
  return std::any_of(covers_models.begin(), covers_models.end(), [](CoversModel k) { return k != CoversModel::mart; });
}

void declare_options(Config& c) {
  const EvalOptions d;
  c.add_required<std::string>("data", "folder of mart-preprocess output for the evaluation dataset", "Data");
  c.add_required<std::string>("run", "output folder: embeddings, report.md, results.json, logs", "Data");
  c.add<std::string>("checkpoint", d.checkpoint, "a mart-train run folder (its newest checkpoint) or a checkpoint "
                     "folder; empty: baselines only", "Data");
  c.add<bool>("eval.force", d.force, "recompute embeddings even when the run folder holds some (of another model: "
              "without this the run stops)", "Data");
  c.add<std::string>("eval.tasks", d.tasks.empty() ? "auto" : joined(d.tasks),
                     "tagging, classification, covers (comma-separated) or auto: all the labels allow", "Tasks");
  c.add<std::string>("eval.probe", probe_kind_name(d.probe.kind), "linear or mlp (one hidden layer of 512)", "Tasks");
  c.add<int>("eval.seeds", d.seeds, "probe seeds; the report gives mean and standard deviation", "Tasks");
  c.add<int>("eval.folds", d.folds, "data without a test split (GTZAN without split lists): every probe and "
             "fine-tuning job runs on each of this many folds, stratified by class and seeded (the report pools "
             "folds and seeds); 0: refuse such data", "Tasks");
  c.add<std::string>("eval.covers_split", "",
                     "covers: fractions of the works for train/valid/test, e.g. 0.8/0.1/0.1, drawn by work (a work's "
                     "versions stay on one side) when the data has no split of its own (a covers list without a "
                     "split column); with a split, the frozen ranking uses the test works only; empty: all works",
                     "Tasks");
  c.add<int>("eval.covers_split_seed", static_cast<int>(d.covers_split_seed), "seed of eval.covers_split's draw", "Tasks");
  c.add<std::string>("eval.score_split", d.score_split, "the split that is scored. test: the report. valid: a "
                     "development run for choosing settings: the valid tracks (covers: valid works) are scored, a "
                     "tenth of the training tracks (works) stands in for valid, and no test label or score and "
                     "nothing of eval.transfer_data is used", "Tasks");
  c.add<std::string>("eval.label_fractions", joined(d.label_fractions),
                     "fractions of the training labels, e.g. 0.01,0.1,1.0", "Tasks");
  c.add<int>("eval.max_epochs", d.probe.max_epochs, "probe epochs at most", "Tasks");
  c.add<int>("eval.patience", d.probe.patience, "early-stopping patience (epochs without a better validation loss)",
             "Tasks");
  c.add<std::string>("eval.embedding", embedding_vector_name(d.embedding), "the vector tasks see: hat0 (s^^0, after "
                     "the part-whole transformer), tilde0 (s~^0, the encoder's output) or levels (every level's mean, "
                     "concatenated)", "Tasks");
  c.add<bool>("eval.baselines", d.baselines, "also evaluate a randomly initialised encoder and log-mel statistics",
              "Tasks");
  c.add<std::string>("eval.finetune_fractions", joined(d.finetune_fractions), "fine-tune the whole model (trained "
                     "and random) with these fractions of the training labels, e.g. 0.01,0.1; empty: no fine-tuning",
                     "Fine-tuning");
  c.add<int>("eval.finetune_seeds", d.finetune_seeds, "fine-tuning seeds (0: eval.seeds); fine-tuning costs far more "
             "than a probe", "Fine-tuning");
  c.add<int>("eval.finetune_epochs", d.finetune.max_epochs, "fine-tuning epochs at most", "Fine-tuning");
  c.add<int>("eval.finetune_patience", d.finetune.patience, "fine-tuning early-stopping patience (epochs)",
             "Fine-tuning");
  c.add<double>("eval.finetune_lr", d.finetune.lr, "fine-tuning Adam learning rate (weight decay 1e-6)",
                "Fine-tuning");
  c.add<std::string>("eval.finetune_batch_norm", d.finetune.frozen_batch_norm ? "frozen" : "batch",
                     "frozen: BatchNorm on running statistics (the same result for any group size; a random model's "
                     "are first measured on training crops, eval.finetune_bn_crops); batch: per-rank batch "
                     "statistics", "Fine-tuning");
  c.add<int>("eval.finetune_bn_crops", d.finetune.bn_estimate_crops, "from-scratch fine-tuning with frozen "
             "BatchNorm: measure the random model's BatchNorm statistics on up to this many training crops first "
             "(0: keep its initial 0/1, no normalisation)", "Fine-tuning");
  c.add<int>("eval.finetune_batch", d.finetune.batch_size, "fine-tuning global batch (crops), split over the group's "
             "ranks", "Fine-tuning");
  c.add<std::string>("eval.covers_models", "", "the paper's table-3 protocol: train these on the covers split's "
                     "training works (cqtnet: CQTNet from scratch on the constant-Q, mart-preprocess --features.cqt; "
                     "mart: the checkpoint fine-tuned; mart+cqtnet: both, fused before the embedding layer), stop "
                     "early on the valid works' MAP, rank the test works (comma-separated; empty: none). Needs a "
                     "split by work", "Covers fine-tuning");
  c.add<std::string>("eval.transfer_data", d.transfer_data, "a second covers dataset (mart-preprocess output, "
                     "Covers80-style): every model, frozen or fine-tuned on eval.covers_models, also ranks all its "
                     "works; never trained on", "Covers fine-tuning");
  c.add<int>("eval.covers_seeds", d.covers_seeds, "seeds of each eval.covers_models job", "Covers fine-tuning");
  c.add<int>("eval.covers_epochs", d.covers.max_epochs, "epochs at most", "Covers fine-tuning");
  c.add<int>("eval.covers_patience", d.covers.patience, "early-stopping patience (epochs without a better valid MAP)",
             "Covers fine-tuning");
  c.add<double>("eval.covers_lr", d.covers.lr, "Adam learning rate of what starts untrained: CQTNet, the embedding "
                "layer, the classifier (weight decay 1e-5, as CQTNet)", "Covers fine-tuning");
  c.add<double>("eval.covers_pretrained_lr", d.covers.pretrained_lr, "Adam learning rate of the pretrained MART "
                "encoder and part-whole transformer (models mart, mart+cqtnet; 1e-4 hardly moved it on the demo: "
                "docs/metrics.md)", "Covers fine-tuning");
  c.add<int>("eval.covers_batch", d.covers.batch_size, "global batch (tracks), split over the group's ranks",
             "Covers fine-tuning");
  c.add<int>("eval.covers_train_crops", d.covers.train_crops, "MART crop hierarchies per training track, their s^0 "
             "averaged (ranking averages all of a track's crops; models mart, mart+cqtnet)", "Covers fine-tuning");
  c.add<int>("eval.covers_bn_batch", d.covers.bn_batch, "tracks per BatchNorm micro-batch (fixed, so results do not "
             "depend on the group size)", "Covers fine-tuning");
  c.add<std::string>("eval.covers_segments", joined(d.covers.segments), "constant-Q frames of a training segment, "
                     "one length per batch in turn (CQTNet's)", "Covers fine-tuning");
  c.add<double>("eval.covers_cqtnet_width", d.covers.cqtnet_width, "CQTNet's channels x this (1: the authors' "
                "32..512)", "Covers fine-tuning");
  c.add<int>("eval.group_ranks", d.group_ranks, "ranks per fine-tuning job: jobs run side by side on groups of this "
             "many ranks (MPI communicator split), each group sharing its job's batches", "Execution");
  c.add<int>("eval.threads", d.threads, "intra-op threads per rank (0: cores / ranks on the node)", "Execution");
}

EvalOptions options_from(const Config& c) {
  EvalOptions o;
  o.data = c.get<std::string>("data");
  o.run = c.get<std::string>("run");
  o.checkpoint = c.get<std::string>("checkpoint");
  o.transfer_data = c.get<std::string>("eval.transfer_data");
  o.force = c.get<bool>("eval.force");
  o.tasks = tasks_from(c);
  o.probe = probe_options_from(c);
  o.seeds = at_least(c, "eval.seeds", 1);
  o.folds = c.get<int>("eval.folds");
  if (o.folds < 0 || o.folds == 1) MART_CONFIG_ERROR("eval.folds must be 0 (no folds) or at least 2, got ", o.folds);
  o.covers_split = parse_covers_split(c.get<std::string>("eval.covers_split"));
  o.covers_split_seed = static_cast<uint64_t>(c.get<int>("eval.covers_split_seed"));
  o.score_split = either(c, "eval.score_split", "test", "valid");
  o.label_fractions = fractions(c, "eval.label_fractions", false);
  o.embedding = parse_embedding_vector(c.get<std::string>("eval.embedding"));
  o.baselines = c.get<bool>("eval.baselines");
  o.finetune_fractions = fractions(c, "eval.finetune_fractions", true);
  o.finetune_seeds = at_least(c, "eval.finetune_seeds", 0);
  o.finetune = finetune_options_from(c);
  for (const auto& name : split_list(c.get<std::string>("eval.covers_models"), ','))
    o.covers_models.push_back(parse_covers_model(name));
  for (const auto model : o.covers_models)
    if (model != CoversModel::cqtnet && o.checkpoint.empty())
      MART_CONFIG_ERROR("eval.covers_models: ", covers_model_name(model), " starts from the pretrained model: give "
                        "--checkpoint");
  o.covers_seeds = at_least(c, "eval.covers_seeds", 1);
  o.covers = covers_options_from(c);
  o.group_ranks = at_least(c, "eval.group_ranks", 1);
  o.threads = c.get<int>("eval.threads");
  if (!o.baselines && o.checkpoint.empty())
    MART_CONFIG_ERROR("nothing to evaluate: give --checkpoint or keep eval.baselines on");
  return o;
}

void check_against_data(const EvalOptions& o, const data::Manifest& manifest) {
  for (const auto& task : o.tasks)
    if ((task == "tagging" && manifest.labels.tag_names.empty()) ||
        (task == "classification" && manifest.labels.class_names.empty()))
      MART_CONFIG_ERROR("task '", task, "' needs labels the shards in '", o.data, "' do not have (no ",
                        task == "tagging" ? "tag" : "class", " names in the manifest): preprocess with a dataset "
                        "kind or labels CSV that gives them");
  const std::string transfer = o.develop() ? "" : o.transfer_data;  // a development run never reads it
  for (const auto& dir : {o.data, transfer})
    if (!dir.empty() && o.covers_read_cqt() && !has_cqt(dir))
      MART_CONFIG_ERROR("eval.covers_models cqtnet and mart+cqtnet read the constant-Q, which the shards in '", dir,
                        "' do not have: run mart-preprocess on it again with --features.cqt true");
  if (!transfer.empty()) {
    const auto features = data::load_manifest(transfer + "/manifest.json").features;
    if (features.canonical() != manifest.features.canonical())
      MART_CONFIG_ERROR("eval.transfer_data '", transfer, "' was preprocessed with other features than '", o.data,
                        "':\n  ", features.canonical(), "\n  ", manifest.features.canonical(),
                        "\nrun mart-preprocess on it with the same config");
  }
}

void check_options(const Config& c) {
  const EvalOptions o = options_from(c);
  check_against_data(o, data::load_manifest(o.data + "/manifest.json"));
}

}  // namespace mart::eval
