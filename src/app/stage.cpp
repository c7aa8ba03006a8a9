#include "mart/app/stage.h"

#include <spdlog/spdlog.h>

#include <cstdlib>
#include <iostream>

#include "mart/core/error.h"
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
  try {
    init_logging(world.rank(), p.run_dir, cfg.get<std::string>("log_level"));
    dist::check_same_config(world, cfg.hash());
  } catch (const ConfigError& e) {
    // Raised identically on every rank (the hash check is collective): a clean, common exit.
    spdlog::error("{}", e.what());
    return kExitConfig;
  } catch (const std::exception& e) {  // e.g. the log file can't be opened
    spdlog::critical("{} failed on rank {}: {}", stage.name, world.rank(), e.what());
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
  // Other ranks may be waiting in a collective for this one: end the whole job now.
  if (world.size() > 1) world.abort(exit_code);
  return exit_code;
}

}  // namespace mart::app
