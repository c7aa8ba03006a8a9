#include <gtest/gtest.h>

#include <map>
#include <string>

#include "mart/dist/world.h"

namespace {
auto env_of(std::map<std::string, std::string> m) {
  return [m](const char* k) -> const char* {
    auto it = m.find(k);
    return it == m.end() ? nullptr : it->second.c_str();
  };
}
}  // namespace

TEST(SlurmLaunch, OutsideSlurmAnythingGoes) {
  EXPECT_EQ(mart::dist::check_slurm_launch(1, env_of({})), "");
  EXPECT_EQ(mart::dist::check_slurm_launch(4, env_of({})), "");
}

TEST(SlurmLaunch, SrunWithoutMpiPluginIsCaught) {
  const auto msg = mart::dist::check_slurm_launch(
      1, env_of({{"SLURM_PROCID", "3"}, {"SLURM_STEP_NUM_TASKS", "4"}, {"SLURM_NTASKS", "4"}}));
  EXPECT_NE(msg.find("4 separate single-rank jobs"), std::string::npos) << msg;
  EXPECT_NE(msg.find("srun --mpi=pmix"), std::string::npos) << msg;
}

TEST(SlurmLaunch, ProperLaunchesPass) {
  // srun --mpi=pmix with 4 tasks: MPI sees 4.
  EXPECT_EQ(mart::dist::check_slurm_launch(4, env_of({{"SLURM_PROCID", "0"}, {"SLURM_STEP_NUM_TASKS", "4"}})), "");
  // mpirun inside an allocation: ranks see the daemon step's single task.
  EXPECT_EQ(mart::dist::check_slurm_launch(2, env_of({{"SLURM_PROCID", "0"}, {"SLURM_STEP_NUM_TASKS", "1"}})), "");
  // A single-task step running a single rank.
  EXPECT_EQ(mart::dist::check_slurm_launch(1, env_of({{"SLURM_PROCID", "0"}, {"SLURM_NTASKS", "1"}})), "");
}
