#pragma once
// The frame every mart executable runs in: MPI world, options, run directory, logging, the
// cross-rank config check, and error handling that never leaves a job hanging.
#include <functional>
#include <string>

#include "mart/core/config.h"
#include "mart/dist/world.h"

namespace mart::app {

// Exit codes shared by every stage and the Slurm scripts.
constexpr int kExitOk = 0;
constexpr int kExitFailure = 1;
constexpr int kExitConfig = 2;
constexpr int kExitPreempted = 75;  // EX_TEMPFAIL: checkpointed after SIGUSR1/SIGTERM; requeue

struct StageContext {
  dist::World& world;
  const Config& cfg;
  std::string run_dir;
};

struct Stage {
  std::string name, summary;
  std::function<void(Config&)> declare;     // the stage's options, declared once
  std::string run_dir_key;                  // option naming the directory for logs and resolved config
  std::function<void(const Config&)> check;  // optional: validation that must pass before any work
  std::function<int(StageContext&)> run;
};

// Runs `stage`; returns the process exit code. Config mistakes are found on every rank before
// any work and end all ranks with kExitConfig; an exception on one rank later aborts the job.
int run_stage(int argc, char** argv, const Stage& stage);

}  // namespace mart::app
