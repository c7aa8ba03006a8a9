// One home per setting (issue 29): the options a config with no keys gives are the defaults of
// PreprocessOptions and of the feature, augmentation and dataset options it holds.
#include <gtest/gtest.h>

#include "mart/core/config.h"
#include "mart/preprocess/pipeline.h"

namespace {

TEST(PreprocessOptions, AnEmptyConfigAndTheStructsAgreeOnEveryDefault) {
  mart::Config c("mart-preprocess", "defaults");
  mart::preprocess::declare_options(c);
  const char* argv[] = {"mart-preprocess", "--input", "in", "--output", "out"};
  ASSERT_TRUE(c.parse(5, argv));
  const auto got = mart::preprocess::options_from(c);
  mart::preprocess::PreprocessOptions want;
  want.dataset.input = "in", want.output = "out";
  EXPECT_EQ(got.dataset.kind, want.dataset.kind);
  EXPECT_EQ(got.dataset.labels_csv, want.dataset.labels_csv);
  EXPECT_EQ(got.dataset.split_dir, want.dataset.split_dir);
  EXPECT_EQ(got.dataset.mtat_top_tags, want.dataset.mtat_top_tags);
  EXPECT_EQ(got.dataset.mtat_drop_untagged, want.dataset.mtat_drop_untagged);
  EXPECT_EQ(got.features.canonical(), want.features.canonical());
  EXPECT_EQ(got.augment_seed, want.augment_seed);
  EXPECT_EQ(got.augment.p_polarity, want.augment.p_polarity);
  EXPECT_EQ(got.augment.p_noise, want.augment.p_noise);
  EXPECT_EQ(got.augment.p_gain, want.augment.p_gain);
  EXPECT_EQ(got.augment.p_filter, want.augment.p_filter);
  EXPECT_EQ(got.augment.p_delay, want.augment.p_delay);
  EXPECT_EQ(got.augment.p_pitch, want.augment.p_pitch);
  EXPECT_EQ(got.unit_tracks, want.unit_tracks);
  EXPECT_EQ(got.max_failures, want.max_failures);
  EXPECT_EQ(got.resume, want.resume);
  EXPECT_EQ(got.force, want.force);
  EXPECT_EQ(got.verify, want.verify);
  EXPECT_EQ(got.cqt, want.cqt);
  EXPECT_EQ(mart::preprocess::content_hash(got), mart::preprocess::content_hash(want));
}

}  // namespace
