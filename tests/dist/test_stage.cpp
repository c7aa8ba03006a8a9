// End-to-end checks of run_stage through mpirun: exit codes, messages, and no hangs.
#include <gtest/gtest.h>
#include <filesystem>
#include <string>

#include "../util/proc.h"

namespace {

using mart::test::mpirun;
using mart::test::run;
std::string rundir(const char* name) { return mart::test::fresh_dir(name); }

TEST(Stage, TwoRanksSucceedAndWriteLogsAndResolvedConfig) {
  const auto dir = rundir("mart_probe_ok");
  auto r = run(mpirun(2) + MART_STAGE_PROBE + " --run " + dir);
  EXPECT_EQ(r.code, 0) << r.output;
  EXPECT_TRUE(std::filesystem::exists(dir + "/logs/rank-0.log"));
  EXPECT_TRUE(std::filesystem::exists(dir + "/logs/rank-1.log"));
  EXPECT_TRUE(std::filesystem::exists(dir + "/mart-stage-probe.resolved.ini"));
}

TEST(Stage, ExceptionOnOneRankEndsTheJobNonZeroWithoutHanging) {
  auto r = run(mpirun(2) + MART_STAGE_PROBE + " --run " + rundir("mart_probe_throw") +
               " --probe.throw_on_rank 1");
  EXPECT_NE(r.code, 0) << r.output;
  EXPECT_NE(r.code, 124) << "the job hung until timeout killed it:\n" << r.output;
  EXPECT_LT(r.seconds, 60);
  EXPECT_NE(r.output.find("probe failure as asked"), std::string::npos) << r.output;
}

TEST(Stage, UnknownOptionStopsEveryRankWithCodeTwo) {
  auto r = run(mpirun(2) + MART_STAGE_PROBE + " --run " + rundir("mart_probe_bad") + " --probe.valeu 3");
  EXPECT_EQ(r.code, 2) << r.output;
  EXPECT_NE(r.output.find("did you mean 'probe.value'"), std::string::npos) << r.output;
}

TEST(Stage, RanksWithDifferentConfigsStopWithAClearError) {
  const auto dir = rundir("mart_probe_differ");
  // MPMD launch: the two ranks get different flags, as a stale copy of a config file would do.
  auto r = run(mpirun(1) + MART_STAGE_PROBE + " --run " + dir + " --probe.value 1 : -np 1 " +
               MART_STAGE_PROBE + " --run " + dir + " --probe.value 2");
  EXPECT_EQ(r.code, 2) << r.output;
  EXPECT_NE(r.output.find("different configurations"), std::string::npos) << r.output;
}

TEST(Stage, HelpExitsZeroAndListsOptions) {
  auto r = run(std::string(MART_STAGE_PROBE) + " --help");
  EXPECT_EQ(r.code, 0);
  EXPECT_NE(r.output.find("--probe.throw_on_rank"), std::string::npos) << r.output;
}

}  // namespace
