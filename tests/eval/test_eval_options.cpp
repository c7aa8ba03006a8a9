// One home per setting (issue 29): the options a config with no eval keys gives are the defaults
// of EvalOptions and of the protocols' option structs it holds, field by field.
#include <gtest/gtest.h>

#include "mart/core/config.h"
#include "mart/core/error.h"
#include "mart/eval/options.h"

namespace {

using mart::eval::EvalOptions;

mart::Config parsed(const std::vector<std::string>& args) {
  mart::Config c("mart-eval", "defaults");
  mart::eval::declare_options(c);
  std::vector<const char*> argv{"mart-eval"};
  for (const auto& a : args) argv.push_back(a.c_str());
  EXPECT_TRUE(c.parse(static_cast<int>(argv.size()), argv.data()));
  return c;
}

TEST(EvalOptions, AnEmptyConfigAndTheStructsAgreeOnEveryDefault) {
  const EvalOptions got = mart::eval::options_from(parsed({"--data", "d", "--run", "r"}));
  EvalOptions want;
  want.data = "d", want.run = "r";
  EXPECT_EQ(got.data, want.data);
  EXPECT_EQ(got.run, want.run);
  EXPECT_EQ(got.checkpoint, want.checkpoint);
  EXPECT_EQ(got.transfer_data, want.transfer_data);
  EXPECT_EQ(got.force, want.force);
  EXPECT_EQ(got.tasks, want.tasks);
  EXPECT_EQ(got.seeds, want.seeds);
  EXPECT_EQ(got.folds, want.folds);
  EXPECT_EQ(got.covers_split.has_value(), want.covers_split.has_value());
  EXPECT_EQ(got.covers_split_seed, want.covers_split_seed);
  EXPECT_EQ(got.score_split, want.score_split);
  EXPECT_EQ(got.label_fractions, want.label_fractions);
  EXPECT_EQ(got.embedding, want.embedding);
  EXPECT_EQ(got.baselines, want.baselines);
  EXPECT_EQ(got.finetune_fractions, want.finetune_fractions);
  EXPECT_EQ(got.finetune_seeds, want.finetune_seeds);
  EXPECT_EQ(got.covers_models, want.covers_models);
  EXPECT_EQ(got.covers_seeds, want.covers_seeds);
  EXPECT_EQ(got.group_ranks, want.group_ranks);
  EXPECT_EQ(got.threads, want.threads);
  // The probes (the seed is each job's).
  EXPECT_EQ(got.probe.kind, want.probe.kind);
  EXPECT_EQ(got.probe.lr, want.probe.lr);
  EXPECT_EQ(got.probe.weight_decay, want.probe.weight_decay);
  EXPECT_EQ(got.probe.max_epochs, want.probe.max_epochs);
  EXPECT_EQ(got.probe.patience, want.probe.patience);
  EXPECT_EQ(got.probe.batch_size, want.probe.batch_size);
  EXPECT_EQ(got.probe.hidden, want.probe.hidden);
  // Fine-tuning.
  EXPECT_EQ(got.finetune.lr, want.finetune.lr);
  EXPECT_EQ(got.finetune.weight_decay, want.finetune.weight_decay);
  EXPECT_EQ(got.finetune.max_epochs, want.finetune.max_epochs);
  EXPECT_EQ(got.finetune.patience, want.finetune.patience);
  EXPECT_EQ(got.finetune.batch_size, want.finetune.batch_size);
  EXPECT_EQ(got.finetune.frozen_batch_norm, want.finetune.frozen_batch_norm);
  EXPECT_EQ(got.finetune.bn_estimate_crops, want.finetune.bn_estimate_crops);
  // The covers models.
  EXPECT_EQ(got.covers.lr, want.covers.lr);
  EXPECT_EQ(got.covers.weight_decay, want.covers.weight_decay);
  EXPECT_EQ(got.covers.pretrained_lr, want.covers.pretrained_lr);
  EXPECT_EQ(got.covers.max_epochs, want.covers.max_epochs);
  EXPECT_EQ(got.covers.patience, want.covers.patience);
  EXPECT_EQ(got.covers.batch_size, want.covers.batch_size);
  EXPECT_EQ(got.covers.bn_batch, want.covers.bn_batch);
  EXPECT_EQ(got.covers.train_crops, want.covers.train_crops);
  EXPECT_EQ(got.covers.segments, want.covers.segments);
  EXPECT_EQ(got.covers.cqtnet_width, want.covers.cqtnet_width);
  EXPECT_EQ(got.covers.embedding, want.covers.embedding);
  EXPECT_EQ(got.covers.bn_items, want.covers.bn_items);
}

// Each value is checked where it is parsed: a bad one names its key.
TEST(EvalOptions, ABadValueNamesItsKey) {
  for (const auto& [key, value] : std::vector<std::pair<std::string, std::string>>{
           {"eval.seeds", "0"}, {"eval.folds", "1"}, {"eval.probe", "svm"}, {"eval.score_split", "dev"},
           {"eval.label_fractions", "0"}, {"eval.finetune_lr", "0"}, {"eval.finetune_batch_norm", "mean"},
           {"eval.covers_train_crops", "0"}, {"eval.covers_segments", "200,-1"}, {"eval.embedding", "hat1"},
           {"eval.group_ranks", "0"}, {"eval.tasks", "lyrics"}, {"eval.covers_models", "cqt"}}) {
    try {
      mart::eval::options_from(parsed({"--data", "d", "--run", "r", "--" + key, value}));
      ADD_FAILURE() << key << " " << value << " was accepted";
    } catch (const mart::ConfigError& e) {
      const std::string what = e.what();
      EXPECT_TRUE(what.find(key) != std::string::npos || what.find(value) != std::string::npos) << what;
    }
  }
  // A covers model that starts from the pretrained MART needs the checkpoint.
  EXPECT_THROW(mart::eval::options_from(parsed({"--data", "d", "--run", "r", "--eval.covers_models", "mart"})),
               mart::ConfigError);
  EXPECT_NO_THROW(mart::eval::options_from(parsed({"--data", "d", "--run", "r", "--eval.covers_models", "cqtnet"})));
}

}  // namespace
