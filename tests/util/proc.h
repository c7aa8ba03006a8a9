#pragma once
// Running the mart executables from tests: exit code, output, time; a timeout guards hangs.
#include <sys/wait.h>

#include <array>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

namespace mart::test {

struct Result {
  int code;  // exit code; 124 when timeout killed it
  std::string output;
  double seconds;
};

inline Result run(const std::string& args, int timeout_s = 120) {
  const auto t0 = std::chrono::steady_clock::now();
  const std::string cmd = "timeout " + std::to_string(timeout_s) + " " + args + " 2>&1";
  FILE* p = popen(cmd.c_str(), "r");
  std::string out;
  std::array<char, 4096> buf{};
  while (fgets(buf.data(), buf.size(), p)) out += buf.data();
  const int status = pclose(p);
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return {WIFEXITED(status) ? WEXITSTATUS(status) : 128, out, s};
}

// "mpirun <flags> -np N " for tests that launch ranks.
inline std::string mpirun(int np) {
  return std::string(MART_MPIEXEC) + " " + MART_MPIEXEC_FLAGS_STR + " -np " + std::to_string(np) + " ";
}

inline std::string fresh_dir(const std::string& name) {
  auto d = std::filesystem::temp_directory_path() / name;
  std::filesystem::remove_all(d);
  return d.string();
}

// The rank processes of a job: children of mpirun whose command line names `exe`.
inline std::vector<pid_t> ranks_of(pid_t mpirun_pid, const std::string& exe) {
  std::vector<pid_t> out;
  for (const auto& e : std::filesystem::directory_iterator("/proc")) {
    const std::string name = e.path().filename().string();
    if (name.find_first_not_of("0123456789") != std::string::npos) continue;
    std::ifstream stat(e.path() / "stat");
    std::string line;
    std::getline(stat, line);
    const auto close = line.rfind(')');
    if (close == std::string::npos) continue;
    std::istringstream rest(line.substr(close + 2));
    char state;
    pid_t ppid;
    rest >> state >> ppid;
    if (ppid == mpirun_pid && line.find(exe.substr(0, 15)) != std::string::npos) out.push_back(std::stoi(name));
  }
  return out;
}

}  // namespace mart::test
