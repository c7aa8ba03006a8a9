// mart-bench-synth: how much faster than real time one core renders the demo corpus.
#include <chrono>
#include <cstdio>
#include <cstdlib>

#include "mart/synth/synth.h"

int main(int argc, char** argv) {
  mart::synth::SynthOptions opt;
  opt.tracks = argc > 1 ? std::atoi(argv[1]) : 24;
  opt.versions = 3;
  opt.seconds = 12.0;
  const auto plan = mart::synth::plan_corpus(opt);
  std::printf("%-12s %8s %10s %12s\n", "style", "tracks", "audio s", "x real time");
  double total_audio = 0, total_s = 0;
  for (size_t style = 0; style < mart::synth::styles().size(); ++style) {
    double audio = 0, secs = 0;
    int n = 0;
    for (const auto& t : plan) {
      if (static_cast<size_t>(t.style) != style) continue;
      const auto t0 = std::chrono::steady_clock::now();
      const auto x = mart::synth::render_track(t, opt.sample_rate);
      secs += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      audio += static_cast<double>(x.size()) / opt.sample_rate;
      ++n;
    }
    if (n == 0) continue;
    std::printf("%-12s %8d %10.1f %12.1f\n", mart::synth::styles()[style].name, n, audio, audio / secs);
    total_audio += audio;
    total_s += secs;
  }
  std::printf("%-12s %8zu %10.1f %12.1f\n", "all", plan.size(), total_audio, total_audio / total_s);
  return 0;
}
