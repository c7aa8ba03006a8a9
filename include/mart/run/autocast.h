#pragma once
// bf16 autocast for a scope, on CUDA or on the CPU, written once for LibTorch 1.13 and 2.x (the
// per-device calls of 1.13 are deprecated from 2.4 on, and a -Werror build would fail on them).
#include <c10/core/DeviceType.h>
#include <c10/core/ScalarType.h>

namespace mart::run {

// While alive, ops on `device` that autocast lowers (convolutions, matmuls) run in bf16; the
// previous state comes back at scope end (and the cast cache is cleared). `enabled` false: no-op.
class Bf16Autocast {
 public:
  Bf16Autocast(bool enabled, c10::DeviceType device);
  ~Bf16Autocast();
  Bf16Autocast(const Bf16Autocast&) = delete;
  Bf16Autocast& operator=(const Bf16Autocast&) = delete;

 private:
  bool enabled_;
  c10::DeviceType device_;
  bool was_enabled_ = false;
  c10::ScalarType was_dtype_ = c10::ScalarType::Undefined;
};

// While alive, autocast is off on CUDA and on the CPU (a float32 region inside an autocast one).
class AutocastOff {
 public:
  AutocastOff();
  ~AutocastOff();
  AutocastOff(const AutocastOff&) = delete;
  AutocastOff& operator=(const AutocastOff&) = delete;

 private:
  bool was_cuda_, was_cpu_;
};

// True when autocast is on for `device` (tests, and the step's float32 region).
bool autocast_enabled(c10::DeviceType device);

}  // namespace mart::run
