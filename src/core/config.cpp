#include "mart/core/config.h"

#include <algorithm>
#include <iomanip>
#include <sstream>

#include "mart/core/error.h"
#include "mart/core/fs.h"
#include "mart/core/hash.h"
#include "mart/core/text.h"

namespace po = boost::program_options;

namespace mart {

namespace {

size_t edit_distance(const std::string& a, const std::string& b) {
  std::vector<size_t> prev(b.size() + 1), cur(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) prev[j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    cur[0] = i;
    for (size_t j = 1; j <= b.size(); ++j)
      cur[j] = std::min({prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1)});
    std::swap(prev, cur);
  }
  return prev[b.size()];
}

// "--model.dim" / "model.dim" -> "model.dim"
std::string bare(std::string name) {
  while (!name.empty() && name[0] == '-') name.erase(0, 1);
  return name;
}

}  // namespace

std::string closest_match(const std::string& word, const std::vector<std::string>& candidates) {
  std::string best;
  size_t best_d = std::string::npos;
  for (const auto& c : candidates) {
    // Compare with the whole key and with its last component, so "dimm" finds "model.dim".
    const auto dot = c.rfind('.');
    size_t d = edit_distance(word, c);
    if (dot != std::string::npos) d = std::min(d, edit_distance(word, c.substr(dot + 1)) + 1);
    if (d < best_d) best_d = d, best = c;
  }
  if (best.empty() || best_d > std::max<size_t>(3, word.size() / 2)) return "";
  return best;
}

std::string format_value(const std::string& v) { return v; }
std::string format_value(bool v) { return v ? "true" : "false"; }
std::string format_value(double v) {
  std::ostringstream os;
  os << std::setprecision(17) << v;
  // Shortest text that reads back to the same double.
  for (int p = 1; p <= 17; ++p) {
    std::ostringstream t;
    t << std::setprecision(p) << v;
    if (std::stod(t.str()) == v) return t.str();
  }
  return os.str();
}
std::string format_value(float v) {
  for (int p = 1; p <= 9; ++p) {
    std::ostringstream t;
    t << std::setprecision(p) << v;
    if (std::stof(t.str()) == v) return t.str();
  }
  return std::to_string(v);
}

Config::Config(std::string program, std::string summary)
    : program_(std::move(program)), summary_(std::move(summary)), all_("Options") {
  group_desc("General").add_options()("help,h", "print this help and exit")(
      "config", po::value<std::string>(),
      "INI file of options ([section] then key = value); the command line overrides it");
}

po::options_description& Config::group_desc(const std::string& group) {
  for (auto& [name, desc] : groups_)
    if (name == group) return *desc;
  groups_.emplace_back(group, std::make_unique<po::options_description>(group));
  return *groups_.back().second;
}

void Config::remember(const std::string& key, const std::string& group,
                      std::function<std::string(const boost::any&)> to_text, bool required) {
  for (const auto& e : entries_)
    if (e.key == key) throw std::logic_error("Config: option '" + key + "' declared twice");
  entries_.push_back({key, group, std::move(to_text), required});
}

Config& Config::add_flag(const std::string& key, const std::string& help, const std::string& group) {
  group_desc(group).add_options()(
      key.c_str(), po::value<bool>()->default_value(false, "false")->implicit_value(true, "true"),
      help.c_str());
  remember(key, group, [](const boost::any& a) { return format_value(boost::any_cast<bool>(a)); }, false);
  return *this;
}

std::vector<std::string> Config::keys() const {
  std::vector<std::string> k;
  for (const auto& e : entries_) k.push_back(e.key);
  return k;
}

void Config::unknown_key(const std::string& key, const std::string& where) const {
  const std::string near = closest_match(key, keys());
  std::ostringstream os;
  os << where << ": unknown option '" << key << "' for " << program_;
  if (!near.empty()) os << "; did you mean '" << near << "'?";
  os << " (" << program_ << " --help lists every option)";
  throw ConfigError(os.str());
}

std::string Config::help() const {
  std::ostringstream os;
  os << program_ << " - " << summary_ << "\n\n"
     << "Usage: " << program_ << " [--config FILE.ini] [--section.key VALUE ...]\n"
     << "Every option can be given on the command line or in the INI file under its [section];\n"
     << "the command line wins. Under MPI: mpirun -np P " << program_ << " ...\n\n";
  for (const auto& [name, desc] : groups_) os << *desc << "\n";
  return os.str();
}

void Config::store_ini(const std::string& text, const std::string& origin) {
  std::istringstream in(text);
  std::string line, section;
  int lineno = 0;
  std::map<std::string, int> seen;
  while (std::getline(in, line)) {
    ++lineno;
    const std::string where = origin + ":" + std::to_string(lineno);
    std::string s = trim(line);
    if (s.empty() || s[0] == '#' || s[0] == ';') continue;
    if (s.front() == '[') {
      if (s.back() != ']') MART_CONFIG_ERROR(where, ": section header '", s, "' lacks its closing ']'");
      section = trim(s.substr(1, s.size() - 2));
      continue;
    }
    const auto eq = s.find('=');
    if (eq == std::string::npos)
      MART_CONFIG_ERROR(where, ": expected 'key = value', got '", s, "'");
    const std::string name = trim(s.substr(0, eq));
    std::string value = trim(s.substr(eq + 1));
    // Trailing comments: "key = 3   # why".
    const auto hash_pos = value.find(" #");
    if (hash_pos != std::string::npos) value = trim(value.substr(0, hash_pos));
    const std::string key = section.empty() ? name : section + "." + name;
    if (key == "config" || key == "help")
      MART_CONFIG_ERROR(where, ": '", key, "' is a command-line option, not a config key");
    if (!all_.find_nothrow(key, false)) unknown_key(key, where);
    if (seen.count(key))
      MART_CONFIG_ERROR(where, ": option '", key, "' is also set at line ", seen[key], "; keep one");
    seen[key] = lineno;
    if (vm_.count(key) && !vm_[key].defaulted()) continue;  // the command line wins
    // Store each option alone, so a bad value is reported with its own line.
    po::parsed_options one(&all_);
    one.options.emplace_back(key, std::vector<std::string>{value});
    try {
      po::variables_map scratch;
      po::store(one, scratch);
      po::store(one, vm_);
    } catch (const po::error& e) {
      MART_CONFIG_ERROR(where, ": bad value '", value, "' for option '", key, "': ", e.what());
    }
    origin_[key] = where;
  }
}

void Config::parse_ini_text(const std::string& text, const std::string& origin) {
  assemble();
  store_ini(text, origin);
  finish();
}

void Config::finish() {
  try {
    po::notify(vm_);
  } catch (const po::error& e) {
    MART_CONFIG_ERROR(program_, ": ", e.what());
  }
  std::vector<std::string> missing;
  for (const auto& e : entries_)
    if (e.required && (!vm_.count(e.key) || vm_[e.key].empty())) missing.push_back("--" + e.key);
  if (!missing.empty()) {
    std::ostringstream os;
    os << program_ << ": missing required option";
    if (missing.size() > 1) os << "s";
    for (const auto& m : missing) os << " " << m;
    os << " (give it on the command line or in the --config file; see --help)";
    throw ConfigError(os.str());
  }
}

void Config::assemble() {
  if (assembled_) return;
  for (const auto& [name, desc] : groups_) all_.add(*desc);
  assembled_ = true;
}

bool Config::parse(int argc, const char* const* argv, std::string* help_out) {
  assemble();
  po::parsed_options cli(&all_);
  try {
    cli = po::command_line_parser(argc, argv).options(all_).run();
    po::store(cli, vm_);
  } catch (const po::unknown_option& e) {
    unknown_key(bare(e.get_option_name()), "command line");
  } catch (const po::error& e) {
    MART_CONFIG_ERROR("command line: ", e.what(), " (", program_, " --help lists every option)");
  }
  for (const auto& o : cli.options)
    if (!o.string_key.empty()) origin_[o.string_key] = "command line";
  if (vm_.count("help")) {
    if (help_out) *help_out = help();
    return false;
  }
  if (vm_.count("config")) {
    const std::string path = vm_["config"].as<std::string>();
    store_ini(read_file(path), path);
  }
  finish();
  return true;
}

bool Config::given(const std::string& key) const {
  auto it = vm_.find(key);
  return it != vm_.end() && !it->second.empty() && !it->second.defaulted();
}

std::string Config::resolved_ini() const {
  // Top-level keys first, then one [section] per prefix, in declaration order.
  std::ostringstream os;
  os << "# resolved configuration of " << program_ << "\n";
  std::vector<std::string> sections;
  for (const auto& e : entries_) {
    const auto dot = e.key.find('.');
    const std::string sec = dot == std::string::npos ? "" : e.key.substr(0, dot);
    if (std::find(sections.begin(), sections.end(), sec) == sections.end()) sections.push_back(sec);
  }
  std::stable_sort(sections.begin(), sections.end(),
                   [](const std::string& a, const std::string& b) { return a.empty() && !b.empty(); });
  for (const auto& sec : sections) {
    if (!sec.empty()) os << "\n[" << sec << "]\n";
    for (const auto& e : entries_) {
      const auto dot = e.key.find('.');
      const std::string esec = dot == std::string::npos ? "" : e.key.substr(0, dot);
      if (esec != sec) continue;
      auto it = vm_.find(e.key);
      if (it == vm_.end() || it->second.empty()) continue;
      os << (sec.empty() ? e.key : e.key.substr(dot + 1)) << " = " << e.to_text(it->second.value())
         << "\n";
    }
  }
  return os.str();
}

uint64_t Config::hash() const { return fnv1a64(resolved_ini()); }

}  // namespace mart
