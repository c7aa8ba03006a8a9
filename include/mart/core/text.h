#pragma once
// Comma-separated values in options and list files: the one way every stage trims and splits them.
#include <cstdint>
#include <string>
#include <vector>

namespace mart {

// Without leading and trailing blanks (space, tab, CR, LF).
std::string trim(const std::string& s);

// Splits "a;b;c" (or with another separator), dropping empty items.
std::vector<std::string> split_list(const std::string& s, char sep);

// "128,128,256" as numbers; throws ConfigError naming `key` and the item that is not one.
std::vector<int64_t> parse_int_list(const std::string& s, const std::string& key);
std::vector<double> parse_double_list(const std::string& s, const std::string& key);

}  // namespace mart
