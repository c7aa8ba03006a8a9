// One writer per folder (issue 28): the lock names its holder, refuses a second taker while the
// holder lives, and is taken over when the holder is gone (dead pid on this host, stale heartbeat
// anywhere, or --lock.force).
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

#include "mart/core/folder_lock.h"

namespace fs = std::filesystem;
using mart::FolderLock;
using mart::LockHeld;
using mart::LockOptions;

namespace {

std::string fresh(const std::string& name) {
  const auto d = fs::temp_directory_path() / name;
  fs::remove_all(d);
  fs::create_directories(d);
  return d.string();
}

std::string slurp(const std::string& path) {
  std::ifstream in(path);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

// A lock file as another job would leave it; `age_s` back-dates its heartbeat.
void write_lock(const std::string& dir, const std::string& record, double age_s = 0) {
  std::ofstream(dir + "/mart.lock") << record;
  if (age_s > 0) {
    const timespec ts{std::time(nullptr) - static_cast<time_t>(age_s), 0};
    const timespec times[2] = {ts, ts};
    ASSERT_EQ(utimensat(AT_FDCWD, (dir + "/mart.lock").c_str(), times, 0), 0);
  }
}

std::string own_field(const std::string& key) {  // this process's record, as a lock of ours says it
  const std::string dir = fresh("mart_lock_probe");
  FolderLock l(dir, LockOptions{"probe"});
  std::istringstream in(slurp(l.path()));
  for (std::string line; std::getline(in, line);)
    if (line.rfind(key + "=", 0) == 0) return line.substr(key.size() + 1);
  return "";
}

int64_t dead_pid() {  // a pid that ran and is gone
  const pid_t p = fork();
  if (p == 0) _exit(0);
  waitpid(p, nullptr, 0);
  return p;
}

TEST(FolderLock, NamesItsHolderRefusesASecondTakerAndIsGoneAfterRelease) {
  const std::string dir = fresh("mart_lock_basic");
  {
    FolderLock first(dir, LockOptions{"mart-train"});
    const std::string record = slurp(dir + "/mart.lock");
    EXPECT_NE(record.find("stage=mart-train"), std::string::npos) << record;
    EXPECT_NE(record.find("pid=" + std::to_string(getpid())), std::string::npos) << record;
    EXPECT_NE(record.find("command="), std::string::npos) << record;
    try {
      FolderLock second(dir, LockOptions{"mart-train"});
      FAIL() << "a second taker got a folder whose holder lives";
    } catch (const LockHeld& e) {
      const std::string m = e.what();
      EXPECT_NE(m.find("pid " + std::to_string(getpid())), std::string::npos) << m;
      EXPECT_NE(m.find("--lock.force"), std::string::npos) << m;
      EXPECT_NE(m.find(dir), std::string::npos) << m;
    }
    EXPECT_EQ(slurp(dir + "/mart.lock"), record) << "the refused taker touched the holder's lock";
  }
  EXPECT_FALSE(fs::exists(dir + "/mart.lock"));
  for (const auto& e : fs::directory_iterator(dir)) ADD_FAILURE() << "left behind: " << e.path();
  FolderLock again(dir, LockOptions{"mart-train"});  // free again
}

TEST(FolderLock, SlurmJobAndStepAreRecordedAndNamed) {
  const std::string dir = fresh("mart_lock_slurm");
  write_lock(dir, "stage=mart-train\nhost=some-other-node\npid=4242\nslurm_job=77_3\nslurm_step=0\nsince=x\n");
  try {
    FolderLock l(dir, LockOptions{"mart-train"});
    FAIL() << "a fresh foreign lock was taken";
  } catch (const LockHeld& e) {
    const std::string m = e.what();
    EXPECT_NE(m.find("Slurm job 77_3.0"), std::string::npos) << m;
    EXPECT_NE(m.find("scancel 77_3"), std::string::npos) << m;
    EXPECT_NE(m.find("some-other-node"), std::string::npos) << m;
  }
}

TEST(FolderLock, ADeadHolderOnThisHostIsTakenOverAtOnce) {
  const std::string dir = fresh("mart_lock_dead");
  const std::string host = own_field("host"), boot = own_field("boot_id");
  ASSERT_FALSE(host.empty());
  const int64_t pid = dead_pid();
  write_lock(dir, "stage=mart-train\nhost=" + host + "\nboot_id=" + boot + "\npid=" + std::to_string(pid) +
                      "\nprocess_start=1\nsince=earlier\n");
  std::string taken;
  FolderLock l(dir, LockOptions{"mart-train"}, &taken);
  EXPECT_NE(taken.find("pid " + std::to_string(pid)), std::string::npos) << taken;
  EXPECT_NE(slurp(dir + "/mart.lock").find("pid=" + std::to_string(getpid())), std::string::npos);
}

TEST(FolderLock, AReusedPidIsNotItsOldHolder) {
  // Our own pid, but a start time that is not ours: the holder that wrote it is gone.
  const std::string dir = fresh("mart_lock_reused");
  const std::string host = own_field("host"), boot = own_field("boot_id");
  write_lock(dir, "stage=mart-eval\nhost=" + host + "\nboot_id=" + boot + "\npid=" + std::to_string(getpid()) +
                      "\nprocess_start=12345\nsince=earlier\n");
  std::string taken;
  FolderLock l(dir, LockOptions{"mart-eval"}, &taken);
  EXPECT_FALSE(taken.empty());
}

TEST(FolderLock, AForeignHostIsJudgedByItsHeartbeatOrForced) {
  const std::string record = "stage=mart-preprocess\nhost=node-far-away\nboot_id=b\npid=1\nsince=then\n";
  const std::string fresh_dir = fresh("mart_lock_foreign_fresh");
  write_lock(fresh_dir, record, 10);
  LockOptions o{"mart-preprocess"};
  o.stale_s = 300;
  EXPECT_THROW(FolderLock(fresh_dir, o), LockHeld);
  // The same lock with a heartbeat older than the limit: its job is taken for dead.
  const std::string stale_dir = fresh("mart_lock_foreign_stale");
  write_lock(stale_dir, record, 3600);
  std::string taken;
  {
    FolderLock l(stale_dir, o, &taken);
    EXPECT_NE(taken.find("node-far-away"), std::string::npos) << taken;
    EXPECT_NE(taken.find("last heartbeat 3600 s ago"), std::string::npos) << taken;
  }
  // A fresh foreign lock with --lock.force.
  o.force = true;
  FolderLock forced(fresh_dir, o, &taken);
  EXPECT_NE(taken.find("node-far-away"), std::string::npos);
}

TEST(FolderLock, TheHeartbeatKeepsTheLockFreshAndReleaseLeavesATakenOverLockAlone) {
  const std::string dir = fresh("mart_lock_heartbeat");
  LockOptions o{"mart-train"};
  o.heartbeat_s = 0.05;
  FolderLock l(dir, o);
  const std::string record = slurp(l.path());
  write_lock(dir, record, 3600);  // as if the holder had hung an hour
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  EXPECT_LT(FolderLock::read_holder(l.path()).heartbeat_age_s, 5);
  // Another job took it over (our heartbeat was judged dead): our release must not delete theirs.
  write_lock(dir, "stage=mart-train\nhost=elsewhere\npid=9\n");
  l.release();
  EXPECT_TRUE(fs::exists(dir + "/mart.lock"));
  EXPECT_NE(slurp(dir + "/mart.lock").find("host=elsewhere"), std::string::npos);
}

}  // namespace
