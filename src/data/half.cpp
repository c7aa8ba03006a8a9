#include "mart/data/half.h"

#include <cstring>
#include <vector>

namespace mart::data {

namespace {
uint32_t bits_of(float f) {
  uint32_t x;
  std::memcpy(&x, &f, sizeof x);
  return x;
}
float float_of(uint32_t x) {
  float f;
  std::memcpy(&f, &x, sizeof f);
  return f;
}
// Rounds `m >> shift` to nearest, ties to even (shift >= 1).
uint32_t shift_round_even(uint32_t m, int shift) {
  const uint32_t kept = m >> shift;
  const uint32_t rem = m & ((1u << shift) - 1);
  const uint32_t halfway = 1u << (shift - 1);
  return kept + ((rem > halfway || (rem == halfway && (kept & 1))) ? 1 : 0);
}
}  // namespace

uint16_t float_to_half(float f) {
  const uint32_t x = bits_of(f);
  const uint16_t sign = static_cast<uint16_t>((x >> 16) & 0x8000u);
  const uint32_t a = x & 0x7fffffffu;
  if (a >= 0x7f800000u) {  // inf, or NaN (keep it a quiet NaN with the top payload bits)
    const uint32_t nan = a > 0x7f800000u ? (0x200u | ((a >> 13) & 0x3ffu)) : 0;
    return static_cast<uint16_t>(sign | 0x7c00u | nan);
  }
  // 65520 is halfway between 65504 (the largest half, odd mantissa) and 2^16: ties to even = inf.
  if (a >= 0x477ff000u) return static_cast<uint16_t>(sign | 0x7c00u);
  if (a >= 0x38800000u) {  // >= 2^-14: a normal half. Rebias the exponent (127 -> 15), round the
    // 23-bit mantissa to 10; a carry out of the mantissa correctly bumps the exponent.
    return static_cast<uint16_t>(sign | shift_round_even(a - 0x38000000u, 13));
  }
  // Below 2^-14: a subnormal half h * 2^-24. With m the 24-bit significand and e the biased
  // exponent, the value is m * 2^(e-150), so h = m * 2^(e-126), a right shift by 126 - e.
  const int e = static_cast<int>(a >> 23);
  if (e < 102) return sign;  // below 2^-25: rounds to zero (2^-25 itself is a tie, handled below)
  const uint32_t m = (a & 0x7fffffu) | 0x800000u;
  return static_cast<uint16_t>(sign | shift_round_even(m, 126 - e));
}

namespace {
float decode_half(uint16_t h) {
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
  const uint32_t exp = (h >> 10) & 0x1fu;
  const uint32_t mant = h & 0x3ffu;
  if (exp == 0) {  // zero or subnormal: mant * 2^-24, exact in float
    const float v = static_cast<float>(mant) * (1.0f / 16777216.0f);
    return sign ? -v : v;
  }
  if (exp == 31) return float_of(sign | 0x7f800000u | (mant << 13));
  return float_of(sign | ((exp + 112u) << 23) | (mant << 13));
}

// Every half decoded once (256 KiB): reading crops converts ~250k values per crop, and a table
// lookup is several times faster than the branches above (it was 65% of a crop's time).
const float* half_table() {
  static const std::vector<float> table = [] {
    std::vector<float> t(65536);
    for (uint32_t h = 0; h < 65536; ++h) t[h] = decode_half(static_cast<uint16_t>(h));
    return t;
  }();
  return table.data();
}
}  // namespace

float half_to_float(uint16_t h) { return half_table()[h]; }

void floats_to_halves(const float* in, uint16_t* out, size_t n) {
  for (size_t i = 0; i < n; ++i) out[i] = float_to_half(in[i]);
}

void halves_to_floats(const uint16_t* in, float* out, size_t n) {
  const float* table = half_table();
  for (size_t i = 0; i < n; ++i) out[i] = table[in[i]];
}

}  // namespace mart::data
