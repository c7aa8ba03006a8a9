#pragma once
#include <cstdint>
#include <string>
#include <string_view>

namespace mart {

// 64-bit FNV-1a: stable across machines and builds, for config hashes and seeds.
constexpr uint64_t fnv1a64(std::string_view s, uint64_t h = 14695981039346656037ull) {
  for (char c : s) {
    h ^= static_cast<unsigned char>(c);
    h *= 1099511628211ull;
  }
  return h;
}

std::string hex64(uint64_t v);

}  // namespace mart
