#pragma once
// One writer per output folder (issue 28): a lock file `<folder>/mart.lock` that names its holder
// (host, pid, Slurm job and step, since when, the command line) and carries a heartbeat (its
// mtime, refreshed every few seconds by a thread while the holder lives).
//
// Taking it is an atomic link(2) of a finished temporary file, which works on NFS and Lustre
// where flock may not, and never shows a half-written lock. A lock that is there already is
//   - taken over when its holder is gone: on this host (same boot) when its pid no longer runs
//     the process that took the lock; on any host when the heartbeat is older than `stale_s`;
//   - taken over when `force` is set (the user knows the holder is gone);
//   - otherwise refused: LockHeld, whose message names the holder and what to do.
// A takeover goes through a second, short-lived lock, so two jobs that find the same dead
// holder do not both take the folder. The lock is released (deleted, if it is still ours) by
// release() or the destructor: a job that ends, fails or exits 75 for a requeue leaves none.
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <string>
#include <thread>

#include "mart/core/error.h"

namespace mart {

// Another live job holds the folder: a configuration-class error (exit 2 in every stage).
class LockHeld : public ConfigError {
 public:
  using ConfigError::ConfigError;
};

struct LockOptions {
  std::string stage;            // who takes it, for the holder's record ("mart-train")
  bool force = false;           // take over whatever holds it
  double stale_s = 300;         // a heartbeat older than this means the holder is gone
  double heartbeat_s = 30;      // how often the holder refreshes its heartbeat
};

// What a lock file says about its holder.
struct LockHolder {
  std::string host, boot_id, stage, command, slurm_job, slurm_step, since;
  int64_t pid = 0;
  uint64_t process_start = 0;  // the holder's start time in clock ticks since boot (/proc/PID/stat)
  double heartbeat_age_s = 0;  // now minus the lock file's mtime
  std::string describe() const;  // "mart-train pid 123 on node7 (Slurm job 45.0), since ..."
};

class FolderLock {
 public:
  // Takes `folder`'s lock (the folder must exist); throws LockHeld when a live holder has it,
  // OutputError when the lock file can't be written. `taken_over` (when non-null) receives the
  // previous holder's description when a dead or forced one was replaced, else "".
  FolderLock(const std::string& folder, const LockOptions& options, std::string* taken_over = nullptr);
  ~FolderLock();
  FolderLock(const FolderLock&) = delete;
  FolderLock& operator=(const FolderLock&) = delete;

  // Deletes the lock if it is still this process's (never another's that took it over).
  void release();
  const std::string& path() const { return path_; }

  // The lock file's record, as it would be judged now (for messages and tests).
  static LockHolder read_holder(const std::string& lock_path);
  // True when `h` can no longer be alive: this host and boot, and its pid is gone or runs another
  // process; or its heartbeat is older than stale_s.
  static bool holder_is_gone(const LockHolder& h, double stale_s);

 private:
  void heartbeat_loop();
  std::string path_, record_;
  double heartbeat_s_;
  std::thread heartbeat_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool stop_ = false, held_ = false;
};

}  // namespace mart
