#include "mart/core/log.h"

#include <spdlog/sinks/basic_file_sink.h>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include <cstdio>
#include <mutex>

#include "mart/core/error.h"
#include "mart/core/fs.h"

namespace mart {

namespace {
std::mutex g_log_error_mutex;
std::string g_log_error;  // the first failed write to a log, e.g. "Failed flush to file ...: No space left on device"

void on_log_error(const std::string& msg) {
  std::lock_guard<std::mutex> lk(g_log_error_mutex);
  if (!g_log_error.empty()) return;
  g_log_error = msg;
  std::fprintf(stderr, "mart: cannot write the log: %s\n", msg.c_str());  // the log itself may be what failed
}

std::shared_ptr<spdlog::logger> make_logger(int rank, std::vector<spdlog::sink_ptr> sinks) {
  auto logger = std::make_shared<spdlog::logger>("mart", sinks.begin(), sinks.end());
  // spdlog reports a failed write to a sink here (and would otherwise print it and carry on):
  // the stage ends with an error naming the log once its work is done (see log_write_error).
  logger->set_error_handler(on_log_error);
  logger->set_pattern("[%Y-%m-%d %H:%M:%S.%e] [r" + std::to_string(rank) + "] [%^%l%$] %v");
  logger->flush_on(spdlog::level::warn);
  return logger;
}

spdlog::sink_ptr console_sink(int rank) {
  auto sink = std::make_shared<spdlog::sinks::stderr_color_sink_mt>();
  // Other ranks speak on the console only when something is wrong.
  sink->set_level(rank == 0 ? spdlog::level::trace : spdlog::level::err);
  return sink;
}
}  // namespace

std::string log_write_error() {
  std::lock_guard<std::mutex> lk(g_log_error_mutex);
  return g_log_error;
}

void init_console_logging(int rank) {
  spdlog::drop("mart");
  auto logger = make_logger(rank, {console_sink(rank)});
  spdlog::set_default_logger(logger);
}

void init_logging(int rank, const std::string& run_dir, const std::string& level) {
  const auto lvl = spdlog::level::from_str(level);
  if (lvl == spdlog::level::off && level != "off")
    MART_CONFIG_ERROR("log level '", level, "' is not one of trace, debug, info, warn, error, off");
  make_dirs_writable(run_dir + "/logs");
  auto file = std::make_shared<spdlog::sinks::basic_file_sink_mt>(
      run_dir + "/logs/rank-" + std::to_string(rank) + ".log", /*truncate=*/false);
  spdlog::drop("mart");
  auto logger = make_logger(rank, {console_sink(rank), file});
  logger->set_level(lvl);
  spdlog::set_default_logger(logger);
  spdlog::flush_every(std::chrono::seconds(2));
}

}  // namespace mart
