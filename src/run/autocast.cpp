#include "mart/run/autocast.h"

#include <ATen/autocast_mode.h>
#include <torch/version.h>

namespace mart::run {

namespace {
// LibTorch 2.4 replaced the per-device functions (set_enabled for CUDA, set_cpu_enabled, ...)
// with ones that take the device type, and deprecated the old ones.
#if TORCH_VERSION_MAJOR > 2 || (TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR >= 4)
bool is_on(c10::DeviceType d) { return at::autocast::is_autocast_enabled(d); }
void set_on(c10::DeviceType d, bool on) { at::autocast::set_autocast_enabled(d, on); }
c10::ScalarType dtype_of(c10::DeviceType d) { return at::autocast::get_autocast_dtype(d); }
void set_dtype(c10::DeviceType d, c10::ScalarType t) { at::autocast::set_autocast_dtype(d, t); }
#else
bool is_on(c10::DeviceType d) { return d == c10::kCUDA ? at::autocast::is_enabled() : at::autocast::is_cpu_enabled(); }
void set_on(c10::DeviceType d, bool on) {
  if (d == c10::kCUDA)
    at::autocast::set_enabled(on);
  else
    at::autocast::set_cpu_enabled(on);
}
c10::ScalarType dtype_of(c10::DeviceType d) {
  return d == c10::kCUDA ? at::autocast::get_autocast_gpu_dtype() : at::autocast::get_autocast_cpu_dtype();
}
void set_dtype(c10::DeviceType d, c10::ScalarType t) {
  if (d == c10::kCUDA)
    at::autocast::set_autocast_gpu_dtype(t);
  else
    at::autocast::set_autocast_cpu_dtype(t);
}
#endif
}  // namespace

bool autocast_enabled(c10::DeviceType device) { return is_on(device); }

Bf16Autocast::Bf16Autocast(bool enabled, c10::DeviceType device) : enabled_(enabled), device_(device) {
  if (!enabled_) return;
  was_enabled_ = is_on(device_);
  was_dtype_ = dtype_of(device_);
  set_dtype(device_, c10::ScalarType::BFloat16);
  set_on(device_, true);
}

Bf16Autocast::~Bf16Autocast() {
  if (!enabled_) return;
  set_on(device_, was_enabled_);
  set_dtype(device_, was_dtype_);
  if (!was_enabled_) at::autocast::clear_cache();  // the bf16 copies of the weights are stale after the step
}

AutocastOff::AutocastOff() : was_cuda_(is_on(c10::kCUDA)), was_cpu_(is_on(c10::kCPU)) {
  set_on(c10::kCUDA, false);
  set_on(c10::kCPU, false);
}

AutocastOff::~AutocastOff() {
  set_on(c10::kCUDA, was_cuda_);
  set_on(c10::kCPU, was_cpu_);
}

}  // namespace mart::run
