#include "mart/app/plot.h"

#include <spdlog/spdlog.h>
#include <sys/wait.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>

namespace mart::app {

namespace {

std::string quoted(const std::string& s) {
  std::string q = "'";
  for (char c : s) q += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return q + "'";
}

}  // namespace

std::string plot(const std::string& kind, const std::string& dir) {
  const char* off = std::getenv("MART_PLOT");
  if (off && std::string(off) == "0") return "";
  const char* py_env = std::getenv("MART_PYTHON");
  const std::string python = py_env && *py_env ? py_env : "/usr/bin/python3";
  const std::string script = MART_PLOT_SCRIPT;
  namespace fs = std::filesystem;
  if (!fs::exists(python) || !fs::exists(script)) {
    spdlog::info("no {} plot: {} not found", kind, fs::exists(python) ? script : python);
    return "";
  }
  const std::string cmd = quoted(python) + " " + quoted(script) + " " + kind + " " + quoted(dir) + " 2>&1";
  FILE* p = popen(cmd.c_str(), "r");
  if (!p) {
    spdlog::warn("no {} plot: could not start {}", kind, python);
    return "";
  }
  std::string out;
  char buf[512];
  while (fgets(buf, sizeof buf, p)) out += buf;
  const int status = pclose(p);
  while (!out.empty() && (out.back() == '\n' || out.back() == '\r')) out.pop_back();
  const int code = status != -1 && WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  if (code == 0) return out;
  if (code == 3)
    spdlog::info("no {} plot: python3-matplotlib is not installed (scripts/setup.sh installs it)", kind);
  else
    spdlog::warn("no {} plot (plot.py exited with {}): {}", kind, code, out);
  return "";
}

}  // namespace mart::app
