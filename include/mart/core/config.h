#pragma once
// One option schema per stage, shared by the command line and INI files (Boost.Program_options).
//
//   Config cfg("mart-train", "Pretrain MART on shards.");
//   cfg.add<int>("train.batch_size", 48, "global batch per step", "Training");
//   if (!cfg.parse(argc, argv)) return 0;   // --help was printed
//   int b = cfg.get<int>("train.batch_size");
//
// Keys are "section.name"; in an INI file they are written under [section] as "name = value".
// The command line wins over --config FILE. An unknown key, a bad value or a key given twice
// throws ConfigError naming the key, the file and line, and the closest valid key.
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include <boost/program_options.hpp>

namespace mart {

class Config {
 public:
  Config(std::string program, std::string summary);

  // Declares an option with a default value. `group` is the heading in --help.
  template <typename T>
  Config& add(const std::string& key, const T& def, const std::string& help,
              const std::string& group = "General");
  // A flag: false unless given; "--key" alone means true.
  Config& add_flag(const std::string& key, const std::string& help,
                   const std::string& group = "General");
  // An option with no default that must be given.
  template <typename T>
  Config& add_required(const std::string& key, const std::string& help,
                       const std::string& group = "General");

  // Parses argv (and --config FILE if given). Returns false when --help was asked for (the
  // text has been written to `help_out` when non-null). Throws ConfigError on any mistake.
  bool parse(int argc, const char* const* argv, std::string* help_out = nullptr);
  // Parses INI text directly (for tests); `origin` names it in errors.
  void parse_ini_text(const std::string& text, const std::string& origin);

  template <typename T>
  T get(const std::string& key) const;
  bool given(const std::string& key) const;  // set by the user rather than defaulted

  std::string help() const;
  // The resolved configuration as an INI file that --config accepts: every key, grouped by section.
  std::string resolved_ini() const;
  uint64_t hash() const;  // of resolved_ini()
  const std::string& program() const { return program_; }
  // Keys of every declared option, in declaration order.
  std::vector<std::string> keys() const;

 private:
  struct Entry {
    std::string key, group;
    std::function<std::string(const boost::any&)> to_text;
    bool required = false;
  };
  boost::program_options::options_description& group_desc(const std::string& group);
  void remember(const std::string& key, const std::string& group,
                std::function<std::string(const boost::any&)> to_text, bool required);
  void store_ini(const std::string& text, const std::string& origin);
  void finish();
  void assemble();  // gathers the groups into all_ once, before the first parse
  bool assembled_ = false;
  [[noreturn]] void unknown_key(const std::string& key, const std::string& where) const;

  std::string program_, summary_;
  boost::program_options::options_description all_;
  std::vector<std::pair<std::string, std::unique_ptr<boost::program_options::options_description>>> groups_;
  std::vector<Entry> entries_;
  boost::program_options::variables_map vm_;
  std::map<std::string, std::string> origin_;  // key -> "file:line" or "command line"
};

// The closest of `candidates` to `word` by edit distance (empty when none is close).
std::string closest_match(const std::string& word, const std::vector<std::string>& candidates);

std::string format_value(const std::string& v);
std::string format_value(bool v);
std::string format_value(double v);
std::string format_value(float v);
template <typename T>
std::string format_value(const T& v) {
  return std::to_string(v);
}

template <typename T>
Config& Config::add(const std::string& key, const T& def, const std::string& help,
                    const std::string& group) {
  group_desc(group).add_options()(key.c_str(),
                                  boost::program_options::value<T>()->default_value(def, format_value(def)),
                                  help.c_str());
  remember(key, group, [](const boost::any& a) { return format_value(boost::any_cast<T>(a)); }, false);
  return *this;
}

template <typename T>
Config& Config::add_required(const std::string& key, const std::string& help, const std::string& group) {
  group_desc(group).add_options()(key.c_str(), boost::program_options::value<T>(),
                                  (help + " (required)").c_str());
  remember(key, group, [](const boost::any& a) { return format_value(boost::any_cast<T>(a)); }, true);
  return *this;
}

template <typename T>
T Config::get(const std::string& key) const {
  auto it = vm_.find(key);
  if (it == vm_.end() || it->second.empty())
    throw std::logic_error("Config::get: option '" + key + "' was never declared or has no value");
  return it->second.as<T>();
}

}  // namespace mart
