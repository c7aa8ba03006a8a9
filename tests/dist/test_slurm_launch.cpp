#include <gtest/gtest.h>

#include <map>
#include <string>

#include "mart/core/error.h"
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

// One rank per GPU: the local rank picks the GPU; more ranks than GPUs is a clear error, not
// NCCL's "Duplicate GPU detected" at the first collective.
TEST(GpuForLocalRank, EachRankTakesItsOwnGpu) {
  for (int r = 0; r < 4; ++r) EXPECT_EQ(mart::dist::gpu_for_local_rank(r, 4, 4), r);
  EXPECT_EQ(mart::dist::gpu_for_local_rank(1, 2, 8), 1);  // fewer ranks than GPUs: the first ones
}

TEST(GpuForLocalRank, MoreRanksThanGpusNamesTheFix) {
  try {
    mart::dist::gpu_for_local_rank(0, 8, 4);
    FAIL() << "8 ranks on 4 GPUs must not pass";
  } catch (const mart::ConfigError& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("8 ranks run on this node but it shows only 4 GPU(s)"), std::string::npos) << msg;
    EXPECT_NE(msg.find("--ntasks-per-node=4"), std::string::npos) << msg;
  }
  // Every rank of the node fails, not only those past the last GPU.
  EXPECT_THROW(mart::dist::gpu_for_local_rank(5, 8, 4), mart::ConfigError);
  EXPECT_THROW(mart::dist::gpu_for_local_rank(0, 2, 1), mart::ConfigError);
}

TEST(GpuForLocalRank, NoGpuIsAConfigError) {
  EXPECT_THROW(mart::dist::gpu_for_local_rank(0, 1, 0), mart::ConfigError);
}

// The start-up check of the NCCL communicator: the NCCL built against must be the one loaded.
TEST(NcclVersion, CodesReadAsNcclWritesThem) {
  EXPECT_EQ(mart::dist::nccl_version_string(22105), "2.21.5");
  EXPECT_EQ(mart::dist::nccl_version_string(2708), "2.7.8");  // before 2.9: major*1000 + minor*100 + patch
  EXPECT_EQ(mart::dist::nccl_version_string(22803), "2.28.3");
}

TEST(NcclVersion, AMismatchNamesBothVersions) {
  EXPECT_EQ(mart::dist::nccl_version_mismatch(22105, 22105), "");
  const std::string msg = mart::dist::nccl_version_mismatch(22105, 21804);
  EXPECT_NE(msg.find("built against NCCL 2.21.5 but NCCL 2.18.4 is loaded"), std::string::npos) << msg;
  EXPECT_NE(msg.find("LD_LIBRARY_PATH"), std::string::npos) << msg;
}
