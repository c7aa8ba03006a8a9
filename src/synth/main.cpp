// mart-synth: writes the built-in demo corpus (audio files and manifest.csv), MPI-parallel.
#include <spdlog/spdlog.h>

#include <chrono>
#include <filesystem>

#include "mart/app/stage.h"
#include "mart/core/clock.h"
#include "mart/core/error.h"
#include "mart/core/fs.h"
#include "mart/synth/synth.h"
#include "mart/synth/write.h"

namespace {

void declare(mart::Config& c) {
  c.add<std::string>("output", "demo/corpus", "directory for audio/ and manifest.csv", "General");
  c.add<int>("synth.tracks", 300, "number of tracks", "Corpus");
  c.add<int>("synth.versions", 3, "cover versions per composition (cover group size)", "Corpus");
  c.add<double>("synth.seconds", 12.0, "length of every track in seconds", "Corpus");
  c.add<int>("synth.sample_rate", 22050, "sample rate of the files", "Corpus");
  c.add<int>("synth.seed", 1, "seed: the same seed writes the same bytes", "Corpus");
  c.add<std::string>("synth.format", "wav", "wav or flac", "Corpus");
}

void check(const mart::Config& c) {
  if (c.get<int>("synth.tracks") < 1) MART_CONFIG_ERROR("synth.tracks must be at least 1");
  if (c.get<int>("synth.versions") < 1) MART_CONFIG_ERROR("synth.versions must be at least 1");
  if (c.get<double>("synth.seconds") <= 1.0) MART_CONFIG_ERROR("synth.seconds must exceed 1");
  const auto fmt = c.get<std::string>("synth.format");
  if (fmt != "wav" && fmt != "flac") MART_CONFIG_ERROR("synth.format must be wav or flac, got '", fmt, "'");
}

int run(mart::app::StageContext& ctx) {
  const auto& c = ctx.cfg;
  mart::synth::SynthOptions opt;
  opt.tracks = c.get<int>("synth.tracks");
  opt.versions = c.get<int>("synth.versions");
  opt.seconds = c.get<double>("synth.seconds");
  opt.sample_rate = c.get<int>("synth.sample_rate");
  opt.seed = static_cast<uint64_t>(c.get<int>("synth.seed"));
  const auto fmt = c.get<std::string>("synth.format");
  const auto plan = mart::synth::plan_corpus(opt);  // identical on every rank
  const std::string out = ctx.run_dir;
  if (ctx.world.is_root()) mart::make_dirs_writable(out + "/audio");
  ctx.world.barrier();

  // Tracks are all the same length, so a round-robin split keeps ranks equally busy.
  const auto t0 = std::chrono::steady_clock::now();
  size_t mine = 0, done = 0;
  for (size_t i = static_cast<size_t>(ctx.world.rank()); i < plan.size(); i += static_cast<size_t>(ctx.world.size())) ++mine;
  for (size_t i = static_cast<size_t>(ctx.world.rank()); i < plan.size(); i += static_cast<size_t>(ctx.world.size())) {
    const auto& t = plan[i];
    const auto audio = mart::synth::render_track(t, opt.sample_rate);
    mart::synth::write_audio_atomic(out + "/audio/" + t.track_id + "." + fmt, audio, opt.sample_rate, fmt);
    ++done;
    if (ctx.world.is_root() && (done % 25 == 0 || done == mine)) {
      const double s = mart::seconds_since(t0);
      spdlog::info("rank 0 rendered {}/{} of its tracks ({:.0f}x real time per rank, ETA {:.0f} s)", done, mine,
                   done * opt.seconds / s, s / done * (mine - done));
    }
  }
  ctx.world.barrier();
  if (ctx.world.is_root()) {
    mart::write_file_atomic(out + "/manifest.csv", mart::synth::manifest_csv(plan, fmt));
    const double s = mart::seconds_since(t0);
    spdlog::info("wrote {} and {} audio files in {:.1f} s on {} rank(s)", out + "/manifest.csv", plan.size(), s,
                 ctx.world.size());
    spdlog::info("corpus: {}", mart::synth::corpus_summary(plan));
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  mart::app::Stage stage;
  stage.name = "mart-synth";
  stage.summary =
      "write the built-in demo corpus: compositions rendered as cover versions in 8 styles, "
      "with tags, classes, cover groups and splits in manifest.csv";
  stage.declare = declare;
  stage.check = check;
  stage.run_dir_key = "output";
  stage.run = run;
  return mart::app::run_stage(argc, argv, stage);
}
