#include "mart/eval/evaluate.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <optional>

#include "mart/app/plot.h"
#include "mart/core/clock.h"
#include "mart/core/error.h"
#include "mart/core/fs.h"
#include "mart/core/hash.h"
#include "mart/data/manifest.h"
#include "mart/dist/block.h"
#include "mart/dist/rank_groups.h"
#include "mart/eval/covers_finetune.h"
#include "mart/eval/covers_split.h"
#include "mart/eval/options.h"
#include "mart/eval/report.h"
#include "mart/metrics/retrieval.h"
#include "mart/eval/tasks.h"
#include "mart/model/config.h"
#include "mart/run/checkpoint.h"
#include "mart/run/checkpoint_info.h"
#include "mart/run/cpu_allocator.h"

namespace fs = std::filesystem;
using json = nlohmann::json;

namespace mart::eval {

namespace {

// What turns the data into embeddings: the trained model, a random one, log-mel statistics.
struct Source {
  std::unique_ptr<FeatureSource> features;
  bool trainable = false;  // a MART model (trained or random) that fine-tuning can start from
  std::string checkpoint;  // its weights ("" = random initialisation)
  std::string identity;    // what made the embeddings: written to and checked in the embeddings file
  bool reuse = false;      // the run folder holds its embeddings already
};

// One source's embeddings of the data: `tracks` carry the data's own splits (covers splits by
// work from these), `set`'s are developed (eval.score_split valid) for the probe tasks.
struct SourceEmbeddings {
  EmbeddingSet set;
  std::vector<TrackInfo> tracks;
  std::vector<std::string> tasks;  // those asked for, or all the labels allow
};

// ---- Distribution ------------------------------------------------------------------------------

// A job's score, as it travels between ranks: the job's index and the score's named row.
struct JobScore {
  size_t job;
  TaskScore score;
};

// Every rank's finished jobs, in job order: the report is the same whatever rank ran a job.
void collect(const std::vector<JobScore>& mine, const dist::World& world, std::vector<TaskScore>* scores) {
  json rows = json::array();
  for (const auto& done : mine) rows.push_back({{"job", done.job}, {"score", score_row(done.score)}});
  std::vector<JobScore> all;
  for (const auto& part : world.all_gather_bytes(rows.dump()))
    for (const auto& row : json::parse(part)) all.push_back({row.at("job").get<size_t>(), score_from_row(row.at("score"))});
  std::stable_sort(all.begin(), all.end(), [](const JobScore& a, const JobScore& b) { return a.job < b.job; });
  for (const auto& done : all) scores->push_back(done.score);
}

// Covers ranking of n embeddings [n, dim] by their works, query blocks spread over the ranks; the
// summary is valid on rank 0.
metrics::RetrievalSummary rank_covers(const float* embeddings, size_t n, size_t dim,
                                      const std::vector<int64_t>& works, const dist::World& world) {
  const auto [first, last] = dist::contiguous_block(n, world.rank(), world.size());
  const auto mine = metrics::retrieval_block(metrics::Embeddings{embeddings, n, dim}, works, first, last);
  const auto all = dist::all_gather_values(world, mine);
  return world.is_root() ? metrics::summarize_retrieval(all) : metrics::RetrievalSummary{};
}

std::vector<int64_t> works_of(const std::vector<TrackInfo>& tracks) {
  std::vector<int64_t> works;
  for (const auto& t : tracks) works.push_back(t.cover_group);
  return works;
}

// The split by work of a covers set's tracks (the same for every model: the frozen ranking and
// the trained jobs read it from here). `tracks` carry the data's own splits.
CoversSplit covers_split_of(const EvalOptions& options, const std::vector<TrackInfo>& tracks) {
  std::vector<std::string> splits;
  for (const auto& t : tracks) splits.push_back(t.split);
  const CoversSplit split = covers_split(works_of(tracks), splits, options.covers_split, options.covers_split_seed);
  return options.develop() ? develop_covers_split(split, works_of(tracks), options.covers_split_seed) : split;
}

// One probe or fine-tuning job: a task x label fraction x seed x fold.
struct TaskJob {
  std::string task;
  double fraction;
  uint64_t seed;
  int fold;
};

// The covers set's tracks on each side of the split by work.
struct CoversSides {
  CoversSplit split;
  std::vector<size_t> train, valid, test;
};

// One covers job: a model and a seed, run by a group.
struct CoversJob {
  CoversModel model;
  uint64_t seed;
  size_t index;  // in model x seed order: the scores' order
  int group;
};

// Jobs go to the least-loaded group, the costliest first (mart+cqtnet costs about the other two
// together: 91 s against 30 s and 37 s on the demo): the same plan on every rank.
std::vector<CoversJob> plan_covers_jobs(const EvalOptions& options, int groups) {
  std::vector<CoversJob> jobs;
  for (const auto model : options.covers_models)
    for (int seed = 1; seed <= options.covers_seeds; ++seed)
      jobs.push_back({model, static_cast<uint64_t>(seed), jobs.size(), 0});
  auto cost = [](CoversModel model) { return model == CoversModel::mart_cqtnet ? 2 : 1; };
  std::stable_sort(jobs.begin(), jobs.end(),
                   [&](const CoversJob& a, const CoversJob& b) { return cost(a.model) > cost(b.model); });
  std::vector<int> load(static_cast<size_t>(groups), 0);
  for (auto& job : jobs) {
    job.group = static_cast<int>(std::min_element(load.begin(), load.end()) - load.begin());
    load[static_cast<size_t>(job.group)] += cost(job.model);
  }
  return jobs;
}

// Identities use canonical paths: "run/", "./run" and a symlink to it are the same model.
std::string canonical_path(const std::string& path) {
  std::string canonical = fs::weakly_canonical(fs::absolute(path)).string();
  while (canonical.size() > 1 && canonical.back() == '/') canonical.pop_back();
  return canonical;
}

// mart-eval's phases and what they share: the stage's world and options, the data, the rank groups
// of the fine-tuning jobs, and the scores so far (complete on rank 0).
class Evaluation {
 public:
  Evaluation(app::StageContext& ctx, const EvalOptions& options)
      : world_(ctx.world), options_(options), out_(ctx.run_dir),
        manifest_(data::load_manifest(options.data + "/manifest.json")),
        transfer_data_(options.develop() ? "" : options.transfer_data),
        threads_(dist::threads_per_rank(ctx.world, options.threads)), groups_(ctx.world, options.group_ranks) {
    log_start();
  }

  // ---- Sources: the trained model first, then the baselines, each with the identity of what
  // makes its embeddings. Embeddings already in the run folder are reused when the same model made
  // them from the same data (a rerun after a kill skips the embedding); another model's are
  // refused, not overwritten. Rank 0 decides (a rank on another node might not see the file yet)
  // and every rank follows.
  std::vector<Source> sources() {
    std::vector<Source> sources = feature_sources();
    for (auto& source : sources) {
      const std::string path = embeddings_path(source);
      const bool exists = world_.is_root() && !options_.force && fs::exists(path);
      const std::string had = exists ? embeddings_identity(path) : "";
      if (world_.any(exists && had != source.identity)) {
        if (!world_.is_root()) MART_CONFIG_ERROR("run folder '", out_, "' holds embeddings of another model (see rank 0)");
        MART_CONFIG_ERROR("run folder '", out_, "' holds embeddings of another model or data in '", path,
                          "':\n  file:  ", had.empty() ? std::string("(no identity: written by an older mart-eval)") : had,
                          "\n  asked: ", source.identity,
                          "\nuse another --run folder, or --eval.force true to recompute and overwrite them");
      }
      source.reuse = world_.any(exists);
    }
    return sources;
  }

  // A source's embeddings of the data: read back when reused, else extracted (and written).
  SourceEmbeddings embeddings(const Source& source) {
    const std::string path = embeddings_path(source);
    SourceEmbeddings embedded;
    EmbeddingSet& set = embedded.set;
    if (source.reuse) {
      set = read_embeddings(path);
      if (world_.is_root()) spdlog::info("{}: reusing {} (same model and data)", set.source, path);
    } else {
      set = extract(options_.data, *source.features, world_);
      set.identity = source.identity;
      if (world_.is_root()) write_embeddings(path, set);
    }
    if (world_.is_root())
      spdlog::info("{}: {} tracks, {} crops, {}-d embeddings", set.source, set.tracks.size(), set.num_crops(), set.dim);
    embedded.tracks = set.tracks;
    if (options_.develop()) develop_splits(&set.tracks);
    embedded.tasks = tasks_for(set);
    if (!covers_tracks_) {  // the tracks only, with the data's splits: all the trained covers models need
      covers_tracks_.emplace();
      covers_tracks_->source = set.source, covers_tracks_->tracks = embedded.tracks;
    }
    return embedded;
  }

  // ---- Frozen probes: the jobs round-robin over the ranks.
  void frozen_probes(const SourceEmbeddings& embedded) {
    const auto jobs = task_jobs(embedded, options_.label_fractions, options_.seeds);
    std::vector<JobScore> mine;
    const auto ranks = static_cast<size_t>(world_.size());
    for (size_t index = static_cast<size_t>(world_.rank()); index < jobs.size(); index += ranks) {
      const TaskJob& job = jobs[index];
      ProbeOptions probe = options_.probe;
      probe.seed = job.seed;
      for (const auto& score : run_probe_task(embedded.set, job.task, job.fraction, probe, job.fold, options_.folds))
        mine.push_back({index, score});
    }
    collect(mine, world_, &scores_);
  }

  // ---- Fine-tuning of the whole model: the jobs round-robin over the rank groups, the ranks of a
  // group sharing each batch.
  void fine_tuning(const Source& source, const SourceEmbeddings& embedded) {
    if (!source.trainable || options_.finetune_fractions.empty()) return;
    const auto jobs = task_jobs(embedded, options_.finetune_fractions, options_.finetune_seed_count());
    const EmbeddingSet& set = embedded.set;
    std::vector<JobScore> mine;
    const auto groups = static_cast<size_t>(groups_.count());
    for (size_t index = static_cast<size_t>(groups_.index()); index < jobs.size(); index += groups) {
      const TaskJob& job = jobs[index];
      FinetuneOptions tuning = options_.finetune;
      tuning.seed = job.seed;
      const TaskTracks tracks = task_tracks(set, job.task, job.fraction, tuning.seed, job.fold, options_.folds);
      const auto started = std::chrono::steady_clock::now();
      if (groups_.leader())
        spdlog::info("{} fine-tuning on {}: {} training tracks ({}%), seed {}, group {} of {}", set.source, job.task,
                     tracks.train.size(), job.fraction * 100, tuning.seed, groups_.index() + 1, groups_.count());
      const TaskKind kind = job.task == "tagging" ? TaskKind::multilabel : TaskKind::multiclass;
      const ProbeRun result = finetune(options_.data, set, source.checkpoint, model_, tracks.train, tracks.valid,
                                       tracks.test, kind, tuning, groups_.comm());
      if (!groups_.leader()) continue;
      spdlog::info("{} fine-tuned on {} ({} training tracks, seed {}): {} epochs, best valid loss {:.4f}, {:.1f} s",
                   set.source, job.task, tracks.train.size(), tuning.seed, result.epochs, result.best_valid_loss,
                   seconds_since(started));
      TaskScore stamp;
      stamp.source = set.source, stamp.protocol = "finetune", stamp.fraction = job.fraction, stamp.seed = tuning.seed;
      stamp.fold = job.fold;
      for (const auto& score : score_tracks(set, job.task, tracks.test, result.scores, stamp))
        mine.push_back({index, score});
    }
    collect(mine, world_, &scores_);
  }

  // ---- Frozen covers: every track with a work queries all others by its track embedding (tracks
  // without one are only distractors); query blocks spread over the ranks. With a split by work
  // (the data's, or eval.covers_split's draw), only the test side is ranked. The transfer set, all
  // its works, is ranked by the same frozen model.
  void frozen_covers(const Source& source, const SourceEmbeddings& embedded) {
    if (std::find(embedded.tasks.begin(), embedded.tasks.end(), "covers") == embedded.tasks.end()) return;
    const EmbeddingSet& set = embedded.set;
    const CoversSplit split = covers_split_of(options_, embedded.tracks);
    const size_t dim = static_cast<size_t>(set.dim);
    std::vector<int64_t> works;
    std::vector<float> ranked;
    for (size_t track = 0; track < set.tracks.size(); ++track) {
      if (split.source != CoversSplitSource::none && split.split[track] != "test") continue;
      works.push_back(set.tracks[track].cover_group);
      ranked.insert(ranked.end(), set.track_level[0].begin() + static_cast<std::ptrdiff_t>(track * dim),
                    set.track_level[0].begin() + static_cast<std::ptrdiff_t>((track + 1) * dim));
    }
    if (world_.is_root()) log_covers_split(set.source, split, works);
    const auto summary = rank_covers(ranked.data(), works.size(), dim, works, world_);
    if (world_.is_root()) add_scores(covers_scores(set.source, "", "covers", 0, summary));
    if (!chance_works_) chance_works_ = works;
    if (transfer_data_.empty()) return;
    EmbeddingSet transfer = extract(transfer_data_, *source.features, world_);
    const auto transfer_summary = rank_covers(transfer.track_level[0].data(), transfer.tracks.size(),
                                              static_cast<size_t>(transfer.dim), works_of(transfer.tracks), world_);
    if (world_.is_root()) {
      spdlog::info("{}: covers on the transfer set {}: {} tracks, MAP {:.4f}", set.source, transfer_data_,
                   transfer.tracks.size(), transfer_summary.map);
      add_scores(covers_scores(set.source, "", "covers_transfer", 0, transfer_summary));
    }
    if (!transfer_tracks_) keep_transfer_tracks(std::move(transfer));
  }

  // ---- Trained covers (the paper's table 3): the covers models trained on the training works,
  // jobs of model x seed on the rank groups.
  void trained_covers() {
    if (options_.covers_models.empty()) return;
    if (!transfer_data_.empty() && !transfer_tracks_)  // the covers task was not asked for: no frozen pass read it
      // Only the tracks are needed: the cheapest source reads them (log-mel statistics, no model).
      keep_transfer_tracks(extract(transfer_data_, *logmel_stats_source(manifest_.features), world_));
    const CoversSides sides = covers_sides();
    if (!chance_works_) {  // the frozen covers task did not run: the chance row of the tracks ranked here
      chance_works_.emplace();
      for (size_t i : sides.test) chance_works_->push_back(covers_tracks_->tracks[i].cover_group);
    }
    std::vector<JobScore> mine;
    for (const auto& job : plan_covers_jobs(options_, groups_.count())) {
      if (job.group != groups_.index()) continue;
      for (const auto& score : covers_job(job, sides)) mine.push_back({job.index, score});
    }
    collect(mine, world_, &scores_);
  }

  // ---- Report: results.json and report.md (rank 0), with the chance rows: what a random ranking
  // scores (exact expectation), the level at which a model finds no covers.
  void report() {
    if (!world_.is_root()) return;
    if (chance_works_) {
      add_scores(covers_scores("chance", "chance", "covers", 0, metrics::chance_retrieval(*chance_works_)));
      if (transfer_tracks_)  // read by the frozen ranking or the trained jobs
        add_scores(covers_scores("chance", "chance", "covers_transfer", 0,
                                 metrics::chance_retrieval(works_of(transfer_tracks_->tracks))));
    }
    write_file_atomic(out_ + "/results.json", results_json(scores_, options_.score_split));
    const std::string markdown =
        (options_.develop() ? std::string("Scored on the **valid** split (eval.score_split valid: "
                                          "a development run for choosing settings; no test label "
                                          "or score was used).\n\n")
                            : std::string()) +
        markdown_report(scores_, options_.score_split);
    write_file_atomic(out_ + "/report.md", "# mart-eval on " + options_.data + "\n\n" + markdown);
    spdlog::info("report ({} probe{}, {} seed(s)); written to {}/report.md\n{}", probe_kind_name(options_.probe.kind),
                 options_.finetune_fractions.empty() ? "" : " and fine-tuning", options_.seeds, out_, markdown);
    const std::string bars = app::plot("results", out_);
    if (!bars.empty()) spdlog::info("the report's bars per task: {}", bars);
  }

 private:
  void log_start() const {
    if (!world_.is_root()) return;
    if (options_.develop()) {
      if (!options_.transfer_data.empty())
        spdlog::info("eval.score_split valid: the transfer set {} is a test set and is not read", options_.transfer_data);
      spdlog::info("eval.score_split valid: scoring the valid split; a tenth of the training tracks (works) "
                   "validates; the test split is held out");
    }
    if (!options_.finetune_fractions.empty())
      spdlog::info("fine-tuning jobs run on {} group(s) of up to {} rank(s)", groups_.count(), groups_.ranks_per_group());
  }

  // The feature sources; sets model_ (the checkpoint's, or the random baseline's shape) and
  // trained_checkpoint_.
  std::vector<Source> feature_sources() {
    const auto& features = manifest_.features;
    const std::string vector_identity =  // hat0: as before the option
        options_.embedding == EmbeddingVector::hat0 ? ""
                                                    : std::string(";vector=") + embedding_vector_name(options_.embedding);
    std::vector<Source> sources;
    if (!options_.checkpoint.empty()) {
      const run::CheckpointInfo ckpt = run::open_checkpoint(options_.checkpoint);
      model_ = run::model_for_features(ckpt, features);
      trained_checkpoint_ = ckpt.dir;
      const auto state = run::read_train_state(ckpt.dir);
      sources.push_back({mart_source(ckpt.dir, model_, 1, threads_, options_.embedding), true, ckpt.dir,
                         "checkpoint=" + canonical_path(ckpt.dir) + ";step=" + std::to_string(state.step) +
                             ";run=" + state.config_hash + ";model=" + model_.canonical() + vector_identity});
      if (world_.is_root()) spdlog::info("evaluating checkpoint {}", ckpt.dir);
    }
    if (options_.baselines) {
      if (options_.checkpoint.empty())  // a random encoder needs a model shape: the small default at these features
        model_ = model::with_input_of(model::ModelOptions::small(), features);
      sources.push_back({mart_source("", model_, 1, threads_, options_.embedding), true, "",
                         "random_init;seed=1;model=" + model_.canonical() + vector_identity});
      sources.push_back({logmel_stats_source(features), false, "", "logmel_stats;features=" + features.canonical()});
    }
    const std::string data_identity =
        "data=" + canonical_path(options_.data) + ";preprocess=" + hex64(manifest_.preprocess_hash);
    for (auto& source : sources) source.identity += ";" + data_identity;
    return sources;
  }

  std::string embeddings_path(const Source& source) const {
    return out_ + "/embeddings-" + source.features->name() + ".h5";
  }

  // The tasks asked for (each must be one the labels allow), or all the labels allow.
  std::vector<std::string> tasks_for(const EmbeddingSet& set) const {
    const std::vector<std::string> possible = available_tasks(set);
    if (options_.tasks.empty()) return possible;
    for (const auto& task : options_.tasks)
      if (std::find(possible.begin(), possible.end(), task) == possible.end()) {
        std::string supported;
        for (const auto& name : possible) supported += name + " ";
        MART_CONFIG_ERROR("task '", task, "' needs labels the shards in '", options_.data,
                          "' do not have (they support: ", supported, ")");
      }
    return options_.tasks;
  }

  // The folds of a task: [-1] with a test split in the data, else 0 .. folds-1 (and [-1] when
  // folds are off: task_tracks then refuses the data).
  std::vector<int> task_folds(const EmbeddingSet& set, const std::string& task) const {
    if (options_.develop() && !has_test_split(set, task))  // (after develop_splits, "test" holds the valid tracks)
      MART_CONFIG_ERROR("eval.score_split valid scores the valid split, but the ", task, " tracks of '", options_.data,
                        "' have no valid split: give the data one (labels CSV or split lists), or score the test "
                        "split");
    if (has_test_split(set, task) || options_.folds == 0) return {-1};
    std::vector<int> folds(static_cast<size_t>(options_.folds));
    for (int fold = 0; fold < options_.folds; ++fold) folds[static_cast<size_t>(fold)] = fold;
    if (world_.is_root())
      spdlog::info("{}: {} has no test split: {} stratified folds, every job on each", set.source, task, options_.folds);
    return folds;
  }

  // Every job of the probe tasks (covers has none) in a fixed order, the same on every rank.
  std::vector<TaskJob> task_jobs(const SourceEmbeddings& embedded, const std::vector<double>& fractions, int seeds) const {
    std::vector<TaskJob> jobs;
    for (const auto& task : embedded.tasks) {
      if (task == "covers") continue;
      const auto folds = task_folds(embedded.set, task);
      for (double fraction : fractions)
        for (int seed = 1; seed <= seeds; ++seed)
          for (int fold : folds) jobs.push_back({task, fraction, static_cast<uint64_t>(seed), fold});
    }
    return jobs;
  }

  void log_covers_split(const std::string& source, const CoversSplit& split, const std::vector<int64_t>& works) const {
    if (split.source == CoversSplitSource::none) {
      spdlog::info("{}: covers: no split by work: all {} works ranked", source, split.works[2]);
    } else {
      spdlog::info("{}: covers: split by work from {}: {} train / {} valid / {} test works; the {} test-side tracks "
                   "are ranked", source, split.source == CoversSplitSource::data ? "the data" : "eval.covers_split (seeded)",
                   split.works[0], split.works[1], split.works[2], works.size());
      if (split.source == CoversSplitSource::data && options_.covers_split)
        spdlog::warn("{}: covers: the data has its own split by work; eval.covers_split is not used", source);
    }
    const auto ungrouped = std::count_if(works.begin(), works.end(), [](int64_t work) { return work < 0; });
    if (ungrouped > 0)
      spdlog::info("{}: covers: {} of {} tracks have no cover group: neither queries nor answers, ranked as "
                   "distractors", source, ungrouped, works.size());
  }

  // The transfer set's tracks, for the trained models and the chance row (its embeddings are not needed).
  void keep_transfer_tracks(EmbeddingSet transfer) {
    transfer.crops.clear(), transfer.track_level.clear();
    transfer_tracks_ = std::move(transfer);
  }

  CoversSides covers_sides() const {
    const auto& tracks = covers_tracks_->tracks;
    CoversSides sides{covers_split_of(options_, tracks), {}, {}, {}};
    if (sides.split.source == CoversSplitSource::none)
      MART_CONFIG_ERROR("eval.covers_models needs a split by work: a covers list with a split column, or "
                        "eval.covers_split (e.g. 0.8/0.1/0.1)");
    for (size_t track = 0; track < tracks.size(); ++track) {
      const std::string& side = sides.split.split[track];
      if (side == "test") sides.test.push_back(track);  // with the distractors (no work) of the test side
      else if (tracks[track].cover_group < 0) continue;
      else if (side == "train") sides.train.push_back(track);
      else if (side == "valid") sides.valid.push_back(track);  // "held_out" (eval.score_split valid): never read
    }
    return sides;
  }

  // Trains one covers model on this rank's group and writes which tracks trained it (an audit: the
  // transfer set and the valid and test works never do). Its scores, on the group's leader.
  std::vector<TaskScore> covers_job(const CoversJob& job, const CoversSides& sides) {
    CoversFinetuneOptions covers = options_.covers;
    covers.seed = job.seed;
    const std::string name = covers_model_name(job.model), scored = options_.score_split;
    const auto started = std::chrono::steady_clock::now();
    if (groups_.leader())
      spdlog::info("covers: training {} on {} tracks of {} works (early stopping on {} tracks, {} {}), seed {}, group "
                   "{} of {}", name, sides.train.size(), sides.split.works[0], sides.valid.size(), scored,
                   sides.test.size(), covers.seed, groups_.index() + 1, groups_.count());
    const CoversSet main_set{options_.data, &*covers_tracks_};
    const CoversSet transfer_set{transfer_data_, transfer_tracks_ ? &*transfer_tracks_ : nullptr};
    const auto result = covers_finetune(job.model, main_set, sides.train, sides.valid, sides.test, transfer_set,
                                        trained_checkpoint_, model_, covers, groups_.comm());
    if (!groups_.leader()) return {};
    spdlog::info("covers: {} (seed {}): {} epochs, best early-stopping MAP {:.4f} at epoch {}; {} MAP {:.4f}{}; {:.1f} s",
                 name, covers.seed, result.epochs, result.best_valid_map, result.best_epoch, scored, result.test.map,
                 result.has_transfer ? ", transfer MAP " + std::to_string(result.transfer.map) : std::string(),
                 seconds_since(started));
    std::string trained = "data\ttrack\tsplit\twork\n";
    for (size_t track : result.trained) {
      const auto& info = covers_tracks_->tracks[track];
      trained += options_.data + "\t" + info.id + "\t" + sides.split.split[track] + "\t" +
                 std::to_string(info.cover_group) + "\n";
    }
    write_file_atomic(out_ + "/covers-" + name + "-seed" + std::to_string(covers.seed) + "-trained.tsv", trained);
    auto scores = covers_scores(name, "covers_finetune", "covers", covers.seed, result.test);
    if (result.has_transfer)
      for (const auto& score : covers_scores(name, "covers_finetune", "covers_transfer", covers.seed, result.transfer))
        scores.push_back(score);
    return scores;
  }

  void add_scores(const std::vector<TaskScore>& scores) { scores_.insert(scores_.end(), scores.begin(), scores.end()); }

  const dist::World& world_;
  const EvalOptions& options_;
  const std::string out_;  // the run folder
  const data::Manifest manifest_;
  const std::string transfer_data_;  // none in a development run: a test set
  const int threads_;
  const dist::RankGroups groups_;
  model::ModelOptions model_;  // of the checkpoint, or the random baseline's shape
  std::string trained_checkpoint_;
  std::vector<TaskScore> scores_;
  // The covers set's tracks (from the first source) and the transfer set's, for the trained covers
  // models and the chance rows; the works of the tracks ranked, for the chance row.
  std::optional<EmbeddingSet> covers_tracks_, transfer_tracks_;
  std::optional<std::vector<int64_t>> chance_works_;
};

}  // namespace

int run(app::StageContext& ctx) {
  // mart-train's default: embedding and fine-tuning allocate the same large activations
  // (mart/run/cpu_allocator.h; the same values, the same peak memory, fewer page faults).
  run::use_huge_page_cpu_allocator();
  const EvalOptions options = options_from(ctx.cfg);  // checked against the data before (check_options)
  Evaluation evaluation(ctx, options);
  for (const auto& source : evaluation.sources()) {
    const SourceEmbeddings embedded = evaluation.embeddings(source);
    evaluation.frozen_probes(embedded);
    evaluation.fine_tuning(source, embedded);
    evaluation.frozen_covers(source, embedded);
  }
  evaluation.trained_covers();
  evaluation.report();
  return app::kExitOk;
}

}  // namespace mart::eval
