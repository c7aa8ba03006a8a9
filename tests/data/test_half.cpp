// float <-> half: bit-exact against HDF5's own conversion for every half, and round-to-nearest-
// even against a brute-force nearest-half search for floats.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <random>
#include <vector>

#include "mart/data/h5.h"
#include "mart/data/half.h"

using namespace mart::data;

namespace {

uint32_t bits(float f) {
  uint32_t x;
  std::memcpy(&x, &f, 4);
  return x;
}

// HDF5's conversion path from our (h5py-layout) half type to native float, in place.
std::vector<float> hdf5_halves_to_floats(const std::vector<uint16_t>& in) {
  h5::Lock lock;
  std::vector<float> buf(in.size());
  std::memcpy(buf.data(), in.data(), in.size() * 2);  // conversion grows in place
  h5::Datatype half = h5::half_type();
  EXPECT_GE(H5Tconvert(half.get(), H5T_NATIVE_FLOAT, in.size(), buf.data(), nullptr, H5P_DEFAULT), 0);
  return buf;
}

// Nearest finite half by exhaustive search in double; ties to the even mantissa; beyond the
// largest half by half an ulp (65520) it is inf, as IEEE says.
uint16_t reference_half(float f) {
  static std::vector<std::pair<double, uint16_t>> finite = [] {
    std::vector<std::pair<double, uint16_t>> v;
    for (uint32_t h = 0; h < 0x7c00; ++h) v.emplace_back(half_to_float(uint16_t(h)), uint16_t(h));
    return v;  // increasing in value
  }();
  const double a = std::fabs(double(f));
  const uint16_t sign = std::signbit(f) ? 0x8000 : 0;
  if (a >= 65520.0) return sign | 0x7c00;
  auto hi = std::lower_bound(finite.begin(), finite.end(), std::make_pair(a, uint16_t(0)));
  if (hi == finite.end()) return sign | 0x7bff;  // in (65504, 65520): the largest half
  if (hi->first == a) return sign | hi->second;
  auto lo = hi - 1;
  const double dl = a - lo->first, dh = hi->first - a;
  if (dl < dh) return sign | lo->second;
  if (dh < dl) return sign | hi->second;
  return sign | ((lo->second & 1) ? hi->second : lo->second);
}

}  // namespace

TEST(Half, EveryHalfDecodesAsHdf5DoesAndRoundTrips) {
  std::vector<uint16_t> all(65536);
  for (uint32_t h = 0; h < 65536; ++h) all[h] = uint16_t(h);
  const std::vector<float> hdf5 = hdf5_halves_to_floats(all);
  for (uint32_t h = 0; h < 65536; ++h) {
    const float ours = half_to_float(uint16_t(h));
    if (std::isnan(hdf5[h])) {
      ASSERT_TRUE(std::isnan(ours)) << std::hex << h;
      ASSERT_TRUE(std::isnan(half_to_float(float_to_half(ours)))) << std::hex << h;
      continue;
    }
    ASSERT_EQ(bits(ours), bits(hdf5[h])) << "half 0x" << std::hex << h;
    ASSERT_EQ(float_to_half(ours), h) << "round trip of half 0x" << std::hex << h;
  }
}

TEST(Half, KnownValuesTiesSubnormalsAndInfinities) {
  EXPECT_EQ(float_to_half(0.0f), 0x0000);
  EXPECT_EQ(float_to_half(-0.0f), 0x8000);
  EXPECT_EQ(float_to_half(1.0f), 0x3c00);
  EXPECT_EQ(float_to_half(-2.0f), 0xc000);
  EXPECT_EQ(float_to_half(65504.0f), 0x7bff);                 // largest half
  EXPECT_EQ(float_to_half(65519.99f), 0x7bff);                // below the halfway point
  EXPECT_EQ(float_to_half(65520.0f), 0x7c00);                 // tie with 2^16: even = inf
  EXPECT_EQ(float_to_half(1e10f), 0x7c00);
  EXPECT_EQ(float_to_half(INFINITY), 0x7c00);
  EXPECT_EQ(float_to_half(-INFINITY), 0xfc00);
  EXPECT_TRUE(std::isnan(half_to_float(float_to_half(NAN))));
  EXPECT_EQ(float_to_half(std::ldexp(1.0f, -14)), 0x0400);    // smallest normal
  EXPECT_EQ(float_to_half(std::ldexp(1.0f, -24)), 0x0001);    // smallest subnormal
  EXPECT_EQ(float_to_half(std::ldexp(1.0f, -25)), 0x0000);    // tie between 0 and 2^-24: even
  EXPECT_EQ(float_to_half(std::ldexp(1.5f, -25)), 0x0001);
  EXPECT_EQ(float_to_half(std::ldexp(3.0f, -25)), 0x0002);    // tie between 1 and 2: even
  EXPECT_EQ(float_to_half(std::ldexp(5.0f, -25)), 0x0002);    // tie between 2 and 3: even
  EXPECT_EQ(float_to_half(std::ldexp(1023.5f, -24)), 0x0400); // subnormal rounds up to normal
  EXPECT_EQ(float_to_half(1.0f + std::ldexp(1.0f, -11)), 0x3c00);      // tie: stays even
  EXPECT_EQ(float_to_half(1.0f + 3 * std::ldexp(1.0f, -11)), 0x3c02);  // tie: up to even
  EXPECT_EQ(half_to_float(0x0001), std::ldexp(1.0f, -24));
  EXPECT_EQ(half_to_float(0x03ff), std::ldexp(1023.0f, -24));
  EXPECT_EQ(half_to_float(0x7c00), INFINITY);
  EXPECT_EQ(half_to_float(0xfc00), -INFINITY);
}

TEST(Half, RandomFloatsRoundToNearestEven) {
  std::mt19937 rng(7);
  std::uniform_int_distribution<int> expo(-28, 17);
  std::uniform_real_distribution<float> mant(1.0f, 2.0f);
  for (int i = 0; i < 200000; ++i) {
    float f = std::ldexp(mant(rng), expo(rng)) * (i % 2 ? -1.0f : 1.0f);
    if (i % 10 == 0) {  // exact midpoints between neighbouring halves: the tie cases
      const uint16_t h = float_to_half(f) & 0x7bfe;
      f = 0.5f * (half_to_float(h) + half_to_float(uint16_t(h + 1)));
    }
    ASSERT_EQ(float_to_half(f), reference_half(f)) << f;
  }
}

TEST(Half, BufferConversionsMatchScalar) {
  std::vector<float> in = {-7.25f, 0.1f, 3e-6f, 1e5f};
  std::vector<uint16_t> h(in.size());
  std::vector<float> out(in.size());
  floats_to_halves(in.data(), h.data(), in.size());
  halves_to_floats(h.data(), out.data(), in.size());
  for (size_t i = 0; i < in.size(); ++i) {
    EXPECT_EQ(h[i], float_to_half(in[i]));
    EXPECT_EQ(out[i], half_to_float(h[i]));
  }
  EXPECT_EQ(out[0], -7.25f);  // exactly representable
  EXPECT_EQ(out[3], INFINITY);
}
