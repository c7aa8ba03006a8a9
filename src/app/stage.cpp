#include "mart/app/stage.h"

#include <spdlog/spdlog.h>

#include <cstdlib>
#include <iostream>
#include <memory>

#include "mart/core/error.h"
#include "mart/core/folder_lock.h"
#include "mart/core/fs.h"
#include "mart/core/hash.h"
#include "mart/core/log.h"

namespace mart::app {

namespace {

// Phase one: everything that can be wrong with the invocation. Deterministic on every rank, but
// ranks still agree on the outcome with a collective, so none waits for another that gave up.
struct Prepared {
  bool ok = false, help = false;
  std::string error, run_dir;
};

Prepared prepare(int argc, char** argv, const Stage& stage, Config& cfg, const dist::World& world) {
  Prepared p;
  try {
    const std::string slurm = dist::check_slurm_launch(
        world.size(), [](const char* k) { return static_cast<const char*>(std::getenv(k)); });
    if (!slurm.empty()) throw ConfigError(slurm);
    stage.declare(cfg);
    cfg.add<std::string>("log_level", "info", "trace, debug, info, warn, error or off", "General");
    cfg.add_flag("lock.force",
                 "take the output folder although its lock (mart.lock) names a job that may still run: only when you "
                 "know that job is gone",
                 "General");
    cfg.add<double>("lock.stale_s", 300,
                    "a folder lock whose heartbeat (refreshed every 30 s by its job) is older than this many seconds "
                    "is taken over: its job is taken for dead",
                    "General");
    std::string help;
    if (!cfg.parse(argc, argv, &help)) {
      if (world.is_root()) std::cout << help;
      p.help = true;
      return p;
    }
    if (stage.check) stage.check(cfg);
    p.run_dir = cfg.get<std::string>(stage.run_dir_key);
    if (world.is_root()) make_dirs_writable(p.run_dir);
    p.ok = true;
  } catch (const std::exception& e) {
    p.error = e.what();
  }
  return p;
}

}  // namespace

int run_stage(int argc, char** argv, const Stage& stage) {
  dist::World world(&argc, &argv);
  init_console_logging(world.rank());
  Config cfg(stage.name, stage.summary);
  Prepared p = prepare(argc, argv, stage, cfg, world);
  if (p.help) return kExitOk;
  const auto ok = world.all_gather(p.ok ? 1 : 0);
  bool all_ok = true;
  for (auto v : ok) all_ok = all_ok && v;
  if (!all_ok) {
    // Rank 0 speaks for everyone; another rank speaks only where its failure was its own.
    if (!p.ok && (world.is_root() || ok[0])) spdlog::error("{}", p.error);
    return kExitConfig;
  }
  // One writer per folder: rank 0 takes the folder's lock before anything is written there (logs
  // included); every rank learns the outcome.
  std::unique_ptr<FolderLock> lock;
  std::string lock_error, taken_over;
  bool lock_held_elsewhere = false;
  if (world.is_root()) {
    try {
      LockOptions lo;
      lo.stage = stage.name;
      lo.force = cfg.get<bool>("lock.force");
      lo.stale_s = cfg.get<double>("lock.stale_s");
      lock = std::make_unique<FolderLock>(p.run_dir, lo, &taken_over);
    } catch (const LockHeld& e) {
      lock_error = e.what();
      lock_held_elsewhere = true;
    } catch (const std::exception& e) {
      lock_error = e.what();
    }
  }
  const auto locked = world.all_gather(lock_error.empty() ? 1 : lock_held_elsewhere ? 0 : 2);  // rank 0's counts
  if (locked[0] != 1) {
    if (world.is_root()) spdlog::error("{}", lock_error);
    return locked[0] == 0 ? kExitConfig : kExitFailure;
  }
  try {
    init_logging(world.rank(), p.run_dir, cfg.get<std::string>("log_level"));
    if (!taken_over.empty()) spdlog::warn("took over the lock of '{}' from {}", p.run_dir, taken_over);
    dist::check_same_config(world, cfg.hash());
  } catch (const ConfigError& e) {
    // Raised identically on every rank (the hash check is collective): a clean, common exit.
    spdlog::error("{}", e.what());
    return kExitConfig;
  } catch (const std::exception& e) {  // e.g. the log file can't be opened
    spdlog::critical("{} failed on rank {}: {}", stage.name, world.rank(), e.what());
    lock.reset();  // world.abort ends this process without running destructors
    if (world.size() > 1) world.abort(kExitFailure);
    return kExitFailure;
  }
  int code = kExitFailure;
  std::string error;
  bool config = false;
  try {
    if (world.is_root()) {
      write_file_atomic(p.run_dir + "/" + stage.name + ".resolved.ini", cfg.resolved_ini());
      spdlog::info("{} on {} rank(s); config hash {}; run directory {}", stage.name, world.size(),
                   hex64(cfg.hash()), p.run_dir);
    }
    StageContext ctx{world, cfg, p.run_dir};
    code = stage.run(ctx);
    spdlog::default_logger()->flush();
  } catch (const std::exception& e) {  // mart::Error, c10::Error, std::bad_alloc...: never an abort
    config = dynamic_cast<const ConfigError*>(&e) != nullptr;
    error = e.what();
  } catch (...) {
    error = "an exception that is not a std::exception";
  }
  if (error.empty()) {
    const std::string log_error = log_write_error();
    if (log_error.empty() || code != kExitOk) return code;
    error = "cannot write the log under '" + p.run_dir + "/logs': " + log_error + kOutputFix;
  }
  spdlog::critical("{} failed on rank {}: {}", stage.name, world.rank(), error);
  spdlog::default_logger()->flush();
  const int exit_code = config ? kExitConfig : kExitFailure;
  // Other ranks may be waiting in a collective for this one: end the whole job now. A failing rank
  // other than 0 aborts rank 0 too, whose lock then stays: the next job on this host takes it over
  // at once (its pid is gone), elsewhere after lock.stale_s.
  lock.reset();
  if (world.size() > 1) world.abort(exit_code);
  return exit_code;
}

}  // namespace mart::app
