#include "mart/core/text.h"

#include <stdexcept>

#include "mart/core/error.h"

namespace mart {

std::string trim(const std::string& s) {
  const auto b = s.find_first_not_of(" \t\r\n");
  if (b == std::string::npos) return "";
  const auto e = s.find_last_not_of(" \t\r\n");
  return s.substr(b, e - b + 1);
}

std::vector<std::string> split_list(const std::string& s, char sep) {
  std::vector<std::string> out;
  std::string cur;
  for (char c : s) {
    if (c == sep) {
      if (!cur.empty()) out.push_back(cur);
      cur.clear();
    } else {
      cur += c;
    }
  }
  if (!cur.empty()) out.push_back(cur);
  return out;
}

std::vector<int64_t> parse_int_list(const std::string& s, const std::string& key) {
  std::vector<int64_t> out;
  for (const auto& item : split_list(s, ',')) {
    try {
      size_t used = 0;
      out.push_back(std::stoll(item, &used));
      if (used != item.size()) throw std::invalid_argument(item);
    } catch (const std::exception&) {
      MART_CONFIG_ERROR(key, ": '", item, "' is not an integer (expected a comma-separated list like 128,128,256)");
    }
  }
  return out;
}

std::vector<double> parse_double_list(const std::string& s, const std::string& key) {
  std::vector<double> out;
  for (const auto& item : split_list(s, ',')) {
    try {
      out.push_back(std::stod(item));
    } catch (const std::exception&) {
      MART_CONFIG_ERROR(key, ": '", item, "' is not a number");
    }
  }
  return out;
}

}  // namespace mart
