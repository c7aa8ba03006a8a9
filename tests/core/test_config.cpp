#include "mart/core/config.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "mart/core/error.h"

namespace {

mart::Config make() {
  mart::Config c("mart-test", "a test stage");
  c.add<int>("model.dim", 512, "width", "Model");
  c.add<double>("loss.tau", 0.5, "temperature", "Loss");
  c.add<std::string>("output", "out", "where", "General");
  c.add_flag("train.resume", "resume", "Training");
  return c;
}

std::string write_ini(const std::string& name, const std::string& text) {
  auto p = std::filesystem::temp_directory_path() / name;
  std::ofstream(p) << text;
  return p.string();
}

bool parse(mart::Config& c, std::vector<std::string> args) {
  args.insert(args.begin(), "mart-test");
  std::vector<const char*> argv;
  for (auto& a : args) argv.push_back(a.c_str());
  return c.parse(static_cast<int>(argv.size()), argv.data());
}

std::string error_of(std::function<void()> f) {
  try {
    f();
  } catch (const mart::ConfigError& e) {
    return e.what();
  }
  return "";
}

TEST(Config, DefaultsApplyWhenNothingGiven) {
  auto c = make();
  ASSERT_TRUE(parse(c, {}));
  EXPECT_EQ(c.get<int>("model.dim"), 512);
  EXPECT_DOUBLE_EQ(c.get<double>("loss.tau"), 0.5);
  EXPECT_FALSE(c.get<bool>("train.resume"));
  EXPECT_FALSE(c.given("model.dim"));
}

TEST(Config, IniOverridesDefaultsAndCommandLineOverridesIni) {
  const auto ini = write_ini("mart_cfg_prec.ini", "[model]\ndim = 64\n[loss]\ntau = 0.1  # why\n");
  auto c = make();
  ASSERT_TRUE(parse(c, {"--config", ini, "--model.dim", "32"}));
  EXPECT_EQ(c.get<int>("model.dim"), 32);           // command line wins
  EXPECT_DOUBLE_EQ(c.get<double>("loss.tau"), 0.1);  // from the file
  EXPECT_TRUE(c.given("loss.tau"));
}

TEST(Config, FlagAloneMeansTrue) {
  auto c = make();
  ASSERT_TRUE(parse(c, {"--train.resume"}));
  EXPECT_TRUE(c.get<bool>("train.resume"));
}

TEST(Config, UnknownIniKeyNamesFileLineAndClosestKey) {
  const auto ini = write_ini("mart_cfg_unknown.ini", "# comment\n[model]\ndimm = 64\n");
  auto c = make();
  const auto msg = error_of([&] { parse(c, {"--config", ini}); });
  EXPECT_NE(msg.find("mart_cfg_unknown.ini:3"), std::string::npos) << msg;
  EXPECT_NE(msg.find("model.dimm"), std::string::npos) << msg;
  EXPECT_NE(msg.find("did you mean 'model.dim'"), std::string::npos) << msg;
}

TEST(Config, UnknownCommandLineKeySuggestsClosest) {
  auto c = make();
  const auto msg = error_of([&] { parse(c, {"--loss.taux", "3"}); });
  EXPECT_NE(msg.find("command line"), std::string::npos) << msg;
  EXPECT_NE(msg.find("did you mean 'loss.tau'"), std::string::npos) << msg;
}

TEST(Config, BadValueNamesKeyFileAndLine) {
  const auto ini = write_ini("mart_cfg_bad.ini", "[model]\n\ndim = sixty\n");
  auto c = make();
  const auto msg = error_of([&] { parse(c, {"--config", ini}); });
  EXPECT_NE(msg.find("mart_cfg_bad.ini:3"), std::string::npos) << msg;
  EXPECT_NE(msg.find("'sixty'"), std::string::npos) << msg;
  EXPECT_NE(msg.find("model.dim"), std::string::npos) << msg;
}

TEST(Config, BadCommandLineValueIsAConfigError) {
  auto c = make();
  EXPECT_THROW(parse(c, {"--model.dim", "wide"}), mart::ConfigError);
}

TEST(Config, KeyGivenTwiceInOneFileIsAnError) {
  const auto ini = write_ini("mart_cfg_twice.ini", "[model]\ndim = 1\ndim = 2\n");
  auto c = make();
  const auto msg = error_of([&] { parse(c, {"--config", ini}); });
  EXPECT_NE(msg.find("line 2"), std::string::npos) << msg;
}

TEST(Config, MissingConfigFileIsNamed) {
  auto c = make();
  const auto msg = error_of([&] { parse(c, {"--config", "/nonexistent/x.ini"}); });
  EXPECT_NE(msg.find("/nonexistent/x.ini"), std::string::npos) << msg;
}

TEST(Config, RequiredOptionMissingIsNamed) {
  mart::Config c("mart-test", "t");
  c.add_required<std::string>("input", "where the audio is");
  const auto msg = error_of([&] { parse(c, {}); });
  EXPECT_NE(msg.find("--input"), std::string::npos) << msg;
}

TEST(Config, HelpListsGroupsAndDefaults) {
  auto c = make();
  std::string help;
  std::vector<const char*> argv{"mart-test", "--help"};
  ASSERT_FALSE(c.parse(2, argv.data(), &help));
  EXPECT_NE(help.find("Model:"), std::string::npos) << help;
  EXPECT_NE(help.find("--model.dim"), std::string::npos);
  EXPECT_NE(help.find("(=512)"), std::string::npos);
  EXPECT_NE(help.find("(=0.5)"), std::string::npos);
}

TEST(Config, ResolvedIniReadsBackToTheSameConfig) {
  auto a = make();
  ASSERT_TRUE(parse(a, {"--model.dim", "7", "--loss.tau", "0.05", "--train.resume"}));
  const auto text = a.resolved_ini();
  EXPECT_NE(text.find("[model]\ndim = 7\n"), std::string::npos) << text;
  auto b = make();
  ASSERT_TRUE(parse(b, {"--config", write_ini("mart_cfg_resolved.ini", text)}));
  EXPECT_EQ(b.resolved_ini(), text);
  EXPECT_EQ(a.hash(), b.hash());
  auto d = make();
  ASSERT_TRUE(parse(d, {"--model.dim", "8"}));
  EXPECT_NE(d.hash(), a.hash());
}

TEST(Config, ClosestMatch) {
  EXPECT_EQ(mart::closest_match("tua", {"loss.tau", "model.dim"}), "loss.tau");
  EXPECT_EQ(mart::closest_match("completely_different_thing", {"a.b"}), "");
}

}  // namespace
