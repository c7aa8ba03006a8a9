#pragma once
// Wall-clock seconds for progress lines and timings: the one steady-clock helper every stage uses.
#include <chrono>

namespace mart {

inline double seconds_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

}  // namespace mart
