// Decoding: round trips through files libsndfile writes, downmix, resampling, and the failure
// kinds that preprocess records in its manifest.
#include <gtest/gtest.h>
#include <sndfile.h>
#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <fstream>
#include <string>
#include <vector>

#include "mart/audio/decode.h"

using namespace mart::audio;

namespace {

class TempDir {
 public:
  TempDir() {
    char tmpl[] = "/tmp/mart-decode-XXXXXX";
    dir_ = mkdtemp(tmpl);
  }
  ~TempDir() { std::system(("rm -rf '" + dir_ + "'").c_str()); }
  std::string file(const std::string& name) const { return dir_ + "/" + name; }

 private:
  std::string dir_;
};

// Writes interleaved frames with libsndfile; false when this build cannot write the format.
bool write_audio(const std::string& path, int format, int rate, int channels,
                 const std::vector<float>& interleaved) {
  SF_INFO info{};
  info.samplerate = rate;
  info.channels = channels;
  info.format = format;
  SNDFILE* f = sf_open(path.c_str(), SFM_WRITE, &info);
  if (!f) return false;
  const sf_count_t frames = static_cast<sf_count_t>(interleaved.size() / channels);
  EXPECT_EQ(sf_writef_float(f, interleaved.data(), frames), frames);
  sf_close(f);
  return true;
}

std::vector<float> sine(int n, double freq, int rate, double amp = 0.5) {
  std::vector<float> x(n);
  for (int i = 0; i < n; ++i) x[i] = static_cast<float>(amp * std::sin(2 * M_PI * freq * i / rate));
  return x;
}

// Frequency from upward zero crossings over the middle half (clear of resampler edges).
double crossing_frequency(const std::vector<float>& x, int rate) {
  const size_t a = x.size() / 4, b = 3 * x.size() / 4;
  size_t first = 0, last = 0, count = 0;
  for (size_t i = a + 1; i < b; ++i)
    if (x[i - 1] < 0 && x[i] >= 0) {
      if (!count) first = i;
      last = i;
      ++count;
    }
  return count < 2 ? 0 : (count - 1) * double(rate) / double(last - first);
}

void write_bytes(const std::string& path, const std::string& bytes) {
  std::ofstream(path, std::ios::binary) << bytes;
}

DecodeFailure failure_of(const std::string& path, DecodeOptions o = {}) {
  try {
    decode_mono(path, o);
  } catch (const DecodeError& e) {
    EXPECT_NE(std::string(e.what()).find(path), std::string::npos) << "message names the file";
    EXPECT_EQ(e.path(), path);
    return e.kind();
  }
  ADD_FAILURE() << path << " decoded without error";
  return DecodeFailure::missing;
}

}  // namespace

TEST(Decode, WavFloatRoundTripIsExact) {
  TempDir d;
  const std::vector<float> x = sine(22050, 440, 22050);
  ASSERT_TRUE(write_audio(d.file("a.wav"), SF_FORMAT_WAV | SF_FORMAT_FLOAT, 22050, 1, x));
  DecodedInfo info;
  DecodeOptions o;
  EXPECT_EQ(decode_mono(d.file("a.wav"), o, &info), x);
  EXPECT_EQ(info.source_rate, 22050);
  EXPECT_EQ(info.source_frames, 22050);
}

TEST(Decode, FlacRoundTripWithin16BitQuantisation) {
  TempDir d;
  const std::vector<float> x = sine(30000, 1000, 22050);
  ASSERT_TRUE(write_audio(d.file("a.flac"), SF_FORMAT_FLAC | SF_FORMAT_PCM_16, 22050, 1, x));
  const std::vector<float> y = decode_mono(d.file("a.flac"), 22050);
  ASSERT_EQ(y.size(), x.size());
  for (size_t i = 0; i < x.size(); ++i) ASSERT_NEAR(y[i], x[i], 1.0 / 32768 + 1e-6);
}

TEST(Decode, OggVorbisRoundTripKeepsTheSignal) {
  TempDir d;
  const std::vector<float> x = sine(44100, 660, 22050);
  ASSERT_TRUE(write_audio(d.file("a.ogg"), SF_FORMAT_OGG | SF_FORMAT_VORBIS, 22050, 1, x));
  const std::vector<float> y = decode_mono(d.file("a.ogg"), 22050);
  ASSERT_EQ(y.size(), x.size());
  double err = 0, sig = 0;
  for (size_t i = 0; i < x.size(); ++i) err += (y[i] - x[i]) * (y[i] - x[i]), sig += x[i] * x[i];
  EXPECT_LT(err / sig, 1e-2) << "lossy, but within 20 dB SNR";
  EXPECT_NEAR(crossing_frequency(y, 22050), 660, 1);
}

// libsndfile's frame count for mp3 is an estimate: decoding reads to the end of the stream.
TEST(Decode, Mp3RoundTripReadsTheWholeStream) {
  TempDir d;
  const std::vector<float> x = sine(3 * 22050, 440, 22050);
  if (!write_audio(d.file("a.mp3"), SF_FORMAT_MPEG | SF_FORMAT_MPEG_LAYER_III, 22050, 1, x))
    GTEST_SKIP() << "this libsndfile cannot write mp3 (built without LAME)";
  const std::vector<float> y = decode_mono(d.file("a.mp3"), 22050);
  EXPECT_GE(y.size(), x.size() - 2000);  // encoder delay and padding move the ends a little
  EXPECT_LE(y.size(), x.size() + 4000);
  EXPECT_NEAR(crossing_frequency(y, 22050), 440, 2);
}

TEST(Decode, StereoIsAveragedToMono) {
  TempDir d;
  std::vector<float> lr;
  for (int i = 0; i < 1000; ++i) lr.push_back(0.25f), lr.push_back(i % 2 ? 0.5f : -0.5f);
  ASSERT_TRUE(write_audio(d.file("s.wav"), SF_FORMAT_WAV | SF_FORMAT_FLOAT, 22050, 2, lr));
  DecodedInfo info;
  const std::vector<float> y = decode_mono(d.file("s.wav"), DecodeOptions{}, &info);
  EXPECT_EQ(info.source_channels, 2);
  ASSERT_EQ(y.size(), 1000u);
  for (int i = 0; i < 1000; ++i) ASSERT_FLOAT_EQ(y[i], i % 2 ? 0.375f : -0.125f);
}

TEST(Decode, Resampling44100To22050KeepsFrequencyAndDuration) {
  TempDir d;
  const std::vector<float> x = sine(2 * 44100, 1000, 44100);
  ASSERT_TRUE(write_audio(d.file("r.flac"), SF_FORMAT_FLAC | SF_FORMAT_PCM_24, 44100, 1, x));
  const std::vector<float> y = decode_mono(d.file("r.flac"), 22050);
  EXPECT_NEAR(static_cast<double>(y.size()), 44100.0, 2.0);
  EXPECT_NEAR(crossing_frequency(y, 22050), 1000, 0.5);
  // HQ resampling keeps the amplitude of an in-band sine.
  float peak = 0;
  for (size_t i = y.size() / 4; i < 3 * y.size() / 4; ++i) peak = std::max(peak, std::fabs(y[i]));
  EXPECT_NEAR(peak, 0.5, 0.005);
}

TEST(Decode, StreamingResampleEqualsOneShot) {
  TempDir d;
  const std::vector<float> x = sine(100000, 1234, 48000);
  ASSERT_TRUE(write_audio(d.file("b.wav"), SF_FORMAT_WAV | SF_FORMAT_FLOAT, 48000, 1, x));
  DecodeOptions o;
  o.block_frames = 4096;  // many blocks through the stream resampler
  const std::vector<float> y = decode_mono(d.file("b.wav"), o);
  const std::vector<float> z = resample(x, 48000, 22050);
  ASSERT_EQ(y.size(), z.size());
  for (size_t i = 0; i < y.size(); ++i) ASSERT_NEAR(y[i], z[i], 1e-6);
}

TEST(Decode, MissingFile) { EXPECT_EQ(failure_of("/nonexistent/x.wav"), DecodeFailure::missing); }

TEST(Decode, EmptyFiles) {
  TempDir d;
  write_bytes(d.file("zero.wav"), "");
  EXPECT_EQ(failure_of(d.file("zero.wav")), DecodeFailure::empty);
  ASSERT_TRUE(write_audio(d.file("noframes.wav"), SF_FORMAT_WAV | SF_FORMAT_PCM_16, 22050, 1, {}));
  EXPECT_EQ(failure_of(d.file("noframes.wav")), DecodeFailure::empty);
}

TEST(Decode, TruncatedWav) {
  TempDir d;
  ASSERT_TRUE(write_audio(d.file("t.wav"), SF_FORMAT_WAV | SF_FORMAT_PCM_16, 22050, 1,
                          sine(20000, 440, 22050)));
  ASSERT_EQ(truncate(d.file("t.wav").c_str(), 44 + 2 * 8000), 0);  // header + 8000 of 20000
  EXPECT_EQ(failure_of(d.file("t.wav")), DecodeFailure::truncated);
}

TEST(Decode, TruncatedFlac) {
  TempDir d;
  ASSERT_TRUE(write_audio(d.file("t.flac"), SF_FORMAT_FLAC | SF_FORMAT_PCM_16, 22050, 1,
                          sine(3 * 22050, 440, 22050)));
  std::ifstream in(d.file("t.flac"), std::ios::binary | std::ios::ate);
  const long size = static_cast<long>(in.tellg());
  ASSERT_EQ(truncate(d.file("t.flac").c_str(), size / 2), 0);
  EXPECT_EQ(failure_of(d.file("t.flac")), DecodeFailure::truncated);
}

// A complete Ogg file ends with a whole page flagged end-of-stream. libsndfile does not notice a cut
// one (it decodes the pages that are left), so decode_mono checks the end itself. The header's
// frame count is not used for Ogg: on complete real files it differs from what decodes.
TEST(Decode, OggCutShortIsTruncated) {
  TempDir d;
  ASSERT_TRUE(write_audio(d.file("t.ogg"), SF_FORMAT_OGG | SF_FORMAT_VORBIS, 22050, 1, sine(5 * 22050, 440, 22050)));
  std::ifstream in(d.file("t.ogg"), std::ios::binary);
  const std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  const size_t last = bytes.rfind("OggS");
  ASSERT_NE(last, std::string::npos);
  ASSERT_TRUE(static_cast<unsigned char>(bytes[last + 5]) & 0x04) << "libsndfile flags its last page end-of-stream";
  EXPECT_NO_THROW(decode_mono(d.file("t.ogg"), 22050));
  // Cut inside the last page, and cut at the end of the page before it (no end-of-stream flag).
  write_bytes(d.file("inside.ogg"), bytes.substr(0, bytes.size() - 10));
  EXPECT_EQ(failure_of(d.file("inside.ogg")), DecodeFailure::truncated);
  write_bytes(d.file("between.ogg"), bytes.substr(0, last));
  EXPECT_EQ(failure_of(d.file("between.ogg")), DecodeFailure::truncated);
  try {
    decode_mono(d.file("between.ogg"), 22050);
  } catch (const DecodeError& e) {
    EXPECT_NE(std::string(e.what()).find("end-of-stream"), std::string::npos) << e.what();
  }
}

TEST(Decode, GarbageInASupportedExtensionIsCorrupt) {
  TempDir d;
  std::string junk;
  for (int i = 0; i < 4096; ++i) junk += static_cast<char>((i * 7919) % 251);
  write_bytes(d.file("g.wav"), junk);
  EXPECT_EQ(failure_of(d.file("g.wav")), DecodeFailure::corrupt);
}

TEST(Decode, UnknownFormatIsUnsupported) {
  TempDir d;
  write_bytes(d.file("x.m4a"), std::string("\0\0\0\x20" "ftypM4A ", 12) + std::string(500, 'x'));
  EXPECT_EQ(failure_of(d.file("x.m4a")), DecodeFailure::unsupported);
  EXPECT_TRUE(extension_supported("song.FLAC"));
  EXPECT_TRUE(extension_supported("ogg"));
  EXPECT_FALSE(extension_supported("x.m4a"));
}

TEST(Decode, SilenceIsItsOwnFailure) {
  TempDir d;
  ASSERT_TRUE(write_audio(d.file("q.wav"), SF_FORMAT_WAV | SF_FORMAT_PCM_16, 22050, 1,
                          std::vector<float>(5000, 0.0f)));
  EXPECT_EQ(failure_of(d.file("q.wav")), DecodeFailure::silent);
  DecodeOptions keep;
  keep.reject_silent = false;
  EXPECT_EQ(decode_mono(d.file("q.wav"), keep).size(), 5000u);
}

TEST(Decode, FailureNames) {
  EXPECT_STREQ(to_string(DecodeFailure::truncated), "truncated");
  EXPECT_STREQ(to_string(DecodeFailure::silent), "silent");
}
