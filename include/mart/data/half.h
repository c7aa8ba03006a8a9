#pragma once
// IEEE 754 binary16 ("half") <-> float32, as numpy's float16 converts: round to nearest, ties to
// even; overflow to +-inf; subnormals kept; NaN stays NaN. Shards store log-mels as half to halve
// the disk and I/O; these two functions are the only place that knows the bit layout.
#include <cstddef>
#include <cstdint>

namespace mart::data {

uint16_t float_to_half(float f);
float half_to_float(uint16_t h);

// Whole buffers (n values each).
void floats_to_halves(const float* in, uint16_t* out, size_t n);
void halves_to_floats(const uint16_t* in, float* out, size_t n);

}  // namespace mart::data
