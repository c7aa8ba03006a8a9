#include "mart/core/folder_lock.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <fstream>
#include <map>
#include <sstream>

#include "mart/core/fs.h"

namespace mart {

namespace {

std::string trim(std::string s) {
  while (!s.empty() && (s.back() == '\n' || s.back() == ' ' || s.back() == '\r')) s.pop_back();
  return s;
}

std::string host_name() {
  char buf[256] = {};
  if (gethostname(buf, sizeof buf - 1) != 0) return "unknown-host";
  return buf;
}

std::string boot_id() {
  std::ifstream in("/proc/sys/kernel/random/boot_id");
  std::string s;
  std::getline(in, s);
  return trim(s);
}

// Field 22 of /proc/PID/stat: the process's start time in clock ticks after boot; 0 when the
// process does not exist or is dead and not yet reaped (state Z or X: a killed job's rank that
// its parent has not waited for). With the pid and the boot, it names one process (pids are reused).
uint64_t process_start(int64_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  std::string line;
  if (!std::getline(in, line)) return 0;
  const auto close = line.rfind(')');
  if (close == std::string::npos) return 0;
  std::istringstream rest(line.substr(close + 2));  // from field 3, the state
  std::string field;
  rest >> field;
  if (field == "Z" || field == "X") return 0;
  for (int f = 4; f < 22 && rest >> field; ++f) {
  }
  uint64_t start = 0;
  rest >> start;
  return start;
}

std::string command_line() {
  std::ifstream in("/proc/self/cmdline", std::ios::binary);
  std::string all((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  for (auto& c : all)
    if (c == '\0') c = ' ';
  return trim(all);
}

std::string env(const char* key) {
  const char* v = std::getenv(key);
  return v ? v : "";
}

std::string now_utc() {
  const std::time_t t = std::time(nullptr);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

std::string slurm_job() {  // an array task as JOB_TASK, as squeue shows it
  const std::string array = env("SLURM_ARRAY_JOB_ID"), task = env("SLURM_ARRAY_TASK_ID");
  return !array.empty() && !task.empty() ? array + "_" + task : env("SLURM_JOB_ID");
}

std::string my_record(const std::string& stage) {
  std::ostringstream os;
  os << "stage=" << stage << "\nhost=" << host_name() << "\nboot_id=" << boot_id() << "\npid=" << getpid()
     << "\nprocess_start=" << process_start(getpid()) << "\nslurm_job=" << slurm_job()
     << "\nslurm_step=" << (env("SLURM_STEP_ID").empty() ? env("SLURM_STEPID") : env("SLURM_STEP_ID"))
     << "\nsince=" << now_utc() << "\ncommand=" << command_line() << "\n";
  return os.str();
}

// The file's text, or "" when it is not there (or vanished while read).
std::string read_if_there(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return "";
  return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

double age_s(const std::string& path) {
  struct stat st {};
  if (stat(path.c_str(), &st) != 0) return 0;
  return std::difftime(std::time(nullptr), st.st_mtim.tv_sec);
}

// link(2) that also believes an NFS reply lost after the link was made: the source then has two
// names (the classic NFS-safe lock).
bool link_exclusive(const std::string& from, const std::string& to) {
  if (link(from.c_str(), to.c_str()) == 0) return true;
  const int err = errno;
  struct stat st {};
  if (stat(from.c_str(), &st) == 0 && st.st_nlink == 2) return true;
  errno = err;
  return false;
}

}  // namespace

std::string LockHolder::describe() const {
  std::ostringstream os;
  os << (stage.empty() ? "a job" : stage) << " (pid " << pid << " on " << host;
  if (!slurm_job.empty()) os << ", Slurm job " << slurm_job << (slurm_step.empty() ? "" : "." + slurm_step);
  os << "), running since " << since << ", last heartbeat " << static_cast<int64_t>(heartbeat_age_s) << " s ago";
  if (!command.empty()) os << "; command: " << command;
  return os.str();
}

LockHolder FolderLock::read_holder(const std::string& lock_path) {
  LockHolder h;
  std::istringstream in(read_if_there(lock_path));
  std::map<std::string, std::string> kv;
  for (std::string line; std::getline(in, line);) {
    const auto eq = line.find('=');
    if (eq != std::string::npos) kv[line.substr(0, eq)] = line.substr(eq + 1);
  }
  h.stage = kv["stage"], h.host = kv["host"], h.boot_id = kv["boot_id"], h.command = kv["command"];
  h.slurm_job = kv["slurm_job"], h.slurm_step = kv["slurm_step"], h.since = kv["since"];
  try {
    h.pid = kv["pid"].empty() ? 0 : std::stoll(kv["pid"]);
    h.process_start = kv["process_start"].empty() ? 0 : std::stoull(kv["process_start"]);
  } catch (const std::exception&) {
    h.pid = 0;  // an unreadable record: judged by its heartbeat alone
  }
  h.heartbeat_age_s = age_s(lock_path);
  return h;
}

bool FolderLock::holder_is_gone(const LockHolder& h, double stale_s) {
  if (h.heartbeat_age_s > stale_s) return true;
  if (h.host != host_name() || h.boot_id.empty() || h.boot_id != boot_id() || h.pid <= 0) return false;
  const uint64_t start = process_start(h.pid);
  return start == 0 || (h.process_start != 0 && start != h.process_start);
}

FolderLock::FolderLock(const std::string& folder, const LockOptions& options, std::string* taken_over)
    : path_(folder + "/mart.lock"), record_(my_record(options.stage)), heartbeat_s_(options.heartbeat_s) {
  if (taken_over) taken_over->clear();
  const std::string tmp = path_ + ".tmp." + host_name() + "." + std::to_string(getpid());
  write_file_atomic(tmp, record_);
  const std::string takeover = path_ + ".takeover";
  for (int attempt = 0; !held_; ++attempt) {
    if (link_exclusive(tmp, path_)) {
      held_ = true;
      break;
    }
    if (errno != EEXIST) {
      const std::string why = std::strerror(errno);
      unlink(tmp.c_str());
      MART_OUTPUT_ERROR("cannot create the folder lock '", path_, "': ", why, kOutputFix);
    }
    const std::string judged = read_if_there(path_);
    if (judged.empty()) continue;  // released between link and read: try again
    const LockHolder h = read_holder(path_);
    if (!options.force && !holder_is_gone(h, options.stale_s)) {
      unlink(tmp.c_str());
      std::ostringstream fix;
      fix << "'" << folder << "' is in use by " << h.describe() << ". Two jobs writing one folder mix their outputs. "
          << "Wait for that job to end or stop it (";
      if (!h.slurm_job.empty()) fix << "scancel " << h.slurm_job << ", or ";
      fix << "kill " << h.pid << " on " << h.host << "); if you know it is gone, rerun with --lock.force (a lock "
          << "whose heartbeat is older than --lock.stale_s " << options.stale_s << " s is taken over by itself; "
          << "lock file: " << path_ << ")";
      throw LockHeld(fix.str());
    }
    // The holder is gone (or forced out): replace its lock under the short takeover lock, so that
    // of two jobs that judged the same dead holder only one replaces it.
    if (!link_exclusive(tmp, takeover)) {
      if (errno != EEXIST) {
        const std::string why = std::strerror(errno);
        unlink(tmp.c_str());
        MART_OUTPUT_ERROR("cannot create '", takeover, "': ", why, kOutputFix);
      }
      if (age_s(takeover) > 60) unlink(takeover.c_str());  // left by a job that died taking over
      else std::this_thread::sleep_for(std::chrono::milliseconds(200));
      if (attempt > 600) {
        unlink(tmp.c_str());
        MART_FAIL("could not take over the folder lock '", path_, "' in two minutes: another job keeps taking it");
      }
      continue;
    }
    if (read_if_there(path_) == judged) {  // still the holder judged above
      unlink(path_.c_str());
      if (link_exclusive(tmp, path_)) {
        held_ = true;
        if (taken_over) *taken_over = h.describe();
      }
    }
    unlink(takeover.c_str());
  }
  unlink(tmp.c_str());  // the lock keeps its own name
  heartbeat_ = std::thread([this] { heartbeat_loop(); });
}

void FolderLock::heartbeat_loop() {
  std::unique_lock<std::mutex> lk(mu_);
  while (!cv_.wait_for(lk, std::chrono::duration<double>(heartbeat_s_), [&] { return stop_; }))
    utimensat(AT_FDCWD, path_.c_str(), nullptr, 0);  // mtime = now: the holder lives
}

void FolderLock::release() {
  {
    std::lock_guard<std::mutex> lk(mu_);
    if (!held_) return;
    held_ = false;
    stop_ = true;
  }
  cv_.notify_all();
  if (heartbeat_.joinable()) heartbeat_.join();
  if (read_if_there(path_) == record_) unlink(path_.c_str());  // never a lock another job took over
}

FolderLock::~FolderLock() { release(); }

}  // namespace mart
