// One home per setting (issue 29): the options a config with no train keys gives are the defaults
// of TrainOptions and of the augmentation and model options it holds, field by field.
#include <gtest/gtest.h>

#include "mart/core/config.h"
#include "mart/train/options.h"

namespace {

TEST(TrainOptions, AnEmptyConfigAndTheStructsAgreeOnEveryDefault) {
  mart::Config c("mart-train", "defaults");
  mart::train::declare_options(c);
  const char* argv[] = {"mart-train", "--data", "d", "--run", "r"};
  ASSERT_TRUE(c.parse(5, argv));
  const mart::train::TrainOptions got = mart::train::options_from(c);
  mart::train::TrainOptions want;
  want.data = "d", want.run = "r";
  EXPECT_EQ(got.splits, want.splits);
  EXPECT_EQ(got.batch_size, want.batch_size);
  EXPECT_EQ(got.epochs, want.epochs);
  EXPECT_EQ(got.max_steps, want.max_steps);
  EXPECT_EQ(got.lr, want.lr);
  EXPECT_EQ(got.weight_decay, want.weight_decay);
  EXPECT_EQ(got.warmup_steps, want.warmup_steps);
  EXPECT_EQ(got.cosine, want.cosine);
  EXPECT_EQ(got.clip_grad_norm, want.clip_grad_norm);
  EXPECT_EQ(got.seed, want.seed);
  EXPECT_EQ(got.crops_per_track, want.crops_per_track);
  EXPECT_EQ(got.crop_offset_s, want.crop_offset_s);
  EXPECT_EQ(got.stored_views, want.stored_views);
  EXPECT_EQ(got.objective, want.objective);
  EXPECT_EQ(got.device, want.device);
  EXPECT_EQ(got.bf16, want.bf16);
  EXPECT_EQ(got.channels_last, want.channels_last);
  EXPECT_EQ(got.threads, want.threads);
  EXPECT_EQ(got.prefetch, want.prefetch);
  EXPECT_EQ(got.repeat_first_batch, want.repeat_first_batch);
  EXPECT_EQ(got.huge_pages, want.huge_pages);
  EXPECT_EQ(got.cpu_cache, want.cpu_cache);
  EXPECT_EQ(got.batch_norm, want.batch_norm);
  EXPECT_EQ(got.overlap, want.overlap);
  EXPECT_EQ(got.bucket_mb, want.bucket_mb);
  EXPECT_EQ(got.checkpoint_every, want.checkpoint_every);
  EXPECT_EQ(got.keep_checkpoints, want.keep_checkpoints);
  EXPECT_EQ(got.resume, want.resume);
  EXPECT_EQ(got.log_every, want.log_every);
  EXPECT_EQ(got.model.canonical(), want.model.canonical());
  // Fresh augmentation.
  const auto& a = got.augment;
  const auto& b = want.augment;
  EXPECT_EQ(a.enabled, b.enabled);
  for (const auto& [name, x, y] : std::vector<std::tuple<const char*, double, double>>{
           {"p_gain", a.p_gain, b.p_gain}, {"gain_min_db", a.gain_min_db, b.gain_min_db},
           {"gain_max_db", a.gain_max_db, b.gain_max_db}, {"p_noise", a.p_noise, b.p_noise},
           {"noise_min", a.noise_min, b.noise_min}, {"noise_max", a.noise_max, b.noise_max},
           {"p_filter", a.p_filter, b.p_filter}, {"highpass_min_hz", a.highpass_min_hz, b.highpass_min_hz},
           {"highpass_max_hz", a.highpass_max_hz, b.highpass_max_hz}, {"lowpass_min_hz", a.lowpass_min_hz, b.lowpass_min_hz},
           {"lowpass_max_hz", a.lowpass_max_hz, b.lowpass_max_hz}, {"p_delay", a.p_delay, b.p_delay},
           {"delay_min_ms", a.delay_min_ms, b.delay_min_ms}, {"delay_max_ms", a.delay_max_ms, b.delay_max_ms},
           {"delay_step_ms", a.delay_step_ms, b.delay_step_ms}, {"delay_volume", a.delay_volume, b.delay_volume},
           {"p_pitch", a.p_pitch, b.p_pitch}, {"pitch_max_cents", a.pitch_max_cents, b.pitch_max_cents},
           {"p_time_mask", a.p_time_mask, b.p_time_mask}, {"time_mask_max", a.time_mask_max, b.time_mask_max},
           {"p_freq_mask", a.p_freq_mask, b.p_freq_mask}, {"freq_mask_max", a.freq_mask_max, b.freq_mask_max}})
    EXPECT_EQ(x, y) << "train.augment." << name;
}

}  // namespace
