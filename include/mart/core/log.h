#pragma once
// One spdlog logger per rank: the console shows rank 0 (and errors from any rank); every rank
// also writes <run_dir>/logs/rank-<r>.log. spdlog's default logger is set, so spdlog::info() works.
#include <string>

namespace mart {

// Before the run directory is known: console only, rank-tagged.
void init_console_logging(int rank);
// Adds the per-rank file sink under run_dir/logs and sets the level ("trace".."off").
void init_logging(int rank, const std::string& run_dir, const std::string& level = "info");

// The first failed write to a log (disk full, lost mount), or "": a stage that logged into a
// failing file ends with exit 1 naming it, instead of carrying on silently.
std::string log_write_error();

}  // namespace mart
