#include <gtest/gtest.h>

#include <filesystem>

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include "mart/core/error.h"
#include "mart/core/failpoint.h"
#include "mart/core/fs.h"
#include "mart/core/hash.h"
#include "mart/core/rng.h"
#include "mart/core/text.h"

TEST(Error, CheckNamesConditionFileAndMessage) {
  try {
    MART_CHECK(1 + 1 == 3, "arithmetic is ", "broken");
    FAIL() << "MART_CHECK did not throw";
  } catch (const mart::Error& e) {
    const std::string m = e.what();
    EXPECT_NE(m.find("1 + 1 == 3"), std::string::npos) << m;
    EXPECT_NE(m.find("arithmetic is broken"), std::string::npos) << m;
    EXPECT_NE(m.find("test_core_misc.cpp:"), std::string::npos) << m;
  }
}

TEST(Fs, AtomicWriteLeavesNoTemporaryAndReplacesContent) {
  namespace fs = std::filesystem;
  const auto dir = fs::temp_directory_path() / "mart_fs_test";
  fs::remove_all(dir);
  mart::make_dirs_writable(dir.string());
  const auto p = (dir / "a.txt").string();
  mart::write_file_atomic(p, "one");
  mart::write_file_atomic(p, "two");
  EXPECT_EQ(mart::read_file(p), "two");
  int files = 0;
  for ([[maybe_unused]] auto& e : fs::directory_iterator(dir)) ++files;
  EXPECT_EQ(files, 1);
}

TEST(Fs, UnwritablePathIsAConfigError) {
  EXPECT_THROW(mart::make_dirs_writable("/proc/mart_cannot_exist"), mart::ConfigError);
}

TEST(Hash, Fnv1aKnownVectors) {
  // Published FNV-1a 64 test vectors.
  EXPECT_EQ(mart::fnv1a64(""), 0xcbf29ce484222325ull);
  EXPECT_EQ(mart::fnv1a64("a"), 0xaf63dc4c8601ec8cull);
  EXPECT_EQ(mart::hex64(0xabcull), "0000000000000abc");
}

TEST(Rng, SameSeedSameSequenceAndUniformMoments) {
  mart::Rng a(42), b(42), c(43);
  double sum = 0, sq = 0;
  bool differs = false;
  const int n = 200000;
  for (int i = 0; i < n; ++i) {
    const double x = a.uniform();
    ASSERT_EQ(x, b.uniform());
    differs |= (x != c.uniform());
    ASSERT_GE(x, 0.0);
    ASSERT_LT(x, 1.0);
    sum += x;
    sq += x * x;
  }
  EXPECT_TRUE(differs);
  EXPECT_NEAR(sum / n, 0.5, 0.005);
  EXPECT_NEAR(sq / n - (sum / n) * (sum / n), 1.0 / 12, 0.002);
  mart::Rng g(7);
  double s = 0, s2 = 0;
  for (int i = 0; i < n; ++i) {
    const double z = g.normal();
    s += z;
    s2 += z * z;
  }
  EXPECT_NEAR(s / n, 0.0, 0.01);
  EXPECT_NEAR(s2 / n, 1.0, 0.02);
}

TEST(Text, ListsSplitDropEmptyItemsAndNameTheBadOne) {
  EXPECT_EQ(mart::split_list("a;;b;", ';'), (std::vector<std::string>{"a", "b"}));
  EXPECT_TRUE(mart::split_list(",,", ',').empty());
  EXPECT_EQ(mart::parse_int_list("128,,256", "k"), (std::vector<int64_t>{128, 256}));
  EXPECT_EQ(mart::parse_double_list("0.5,1", "k"), (std::vector<double>{0.5, 1.0}));
  try {
    mart::parse_int_list("128,12x", "model.fcn_channels");
    FAIL() << "12x was taken as an integer";
  } catch (const mart::ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("model.fcn_channels: '12x'"), std::string::npos) << e.what();
  }
  EXPECT_THROW(mart::parse_double_list("0.5,half", "k"), mart::ConfigError);
}

// A failpoint stops the process on its n-th pass and not before; other names pass through.
TEST(Failpoint, StopsTheProcessOnTheNthPassOfItsName) {
  int fds[2];
  ASSERT_EQ(pipe(fds), 0);
  const pid_t pid = fork();
  if (pid == 0) {
    setenv("MART_FAILPOINT", "stage.step@2", 1);
    mart::failpoint("stage.other");
    mart::failpoint("stage.step");
    (void)!write(fds[1], "1", 1);  // passed once without stopping
    mart::failpoint("stage.step");
    (void)!write(fds[1], "2", 1);  // only after SIGCONT
    _exit(0);
  }
  char c = 0;
  ASSERT_EQ(read(fds[0], &c, 1), 1);
  EXPECT_EQ(c, '1');
  int status = 0;
  ASSERT_EQ(waitpid(pid, &status, WUNTRACED), pid);
  EXPECT_TRUE(WIFSTOPPED(status)) << "the second pass did not stop the process";
  kill(pid, SIGCONT);
  ASSERT_EQ(read(fds[0], &c, 1), 1);
  EXPECT_EQ(c, '2');
  ASSERT_EQ(waitpid(pid, &status, 0), pid);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
}
