#pragma once
// Decoding: any file libsndfile reads (wav, flac, ogg, mp3, au, ...) -> mono float32 at the
// configured sample rate. The stream is read until libsndfile returns no more frames, because its
// frame count is an estimate for mp3; channels are averaged; libsoxr (HQ) resamples while reading,
// so memory holds the resampled track plus one block, whatever the file's length.
#include <cstdint>
#include <string>
#include <vector>

#include "mart/core/error.h"

namespace mart::audio {

// Why a file could not be turned into audio; preprocess records it in the manifest's failures.
enum class DecodeFailure {
  missing,      // no such file, or not readable
  empty,        // zero bytes, or a valid header with no frames
  unsupported,  // a format or encoding libsndfile does not handle
  corrupt,      // a supported container that libsndfile cannot parse
  truncated,    // fewer frames than the header promises, or the stream breaks off
  silent,       // decodes, but every sample is ~0: no signal to learn from
};
const char* to_string(DecodeFailure f);

class DecodeError : public Error {
 public:
  DecodeError(DecodeFailure kind, const std::string& path, const std::string& reason);
  DecodeFailure kind() const { return kind_; }
  const std::string& path() const { return path_; }
  const std::string& reason() const { return reason_; }  // libsndfile's message where it gave one

 private:
  DecodeFailure kind_;
  std::string path_, reason_;
};

struct DecodeOptions {
  int target_rate = 22050;
  // Peak magnitude at or below which a track counts as silent (about -100 dBFS).
  float silence_peak = 1e-5f;
  bool reject_silent = true;
  int64_t block_frames = 65536;  // frames per sf_readf_float call
};

struct DecodedInfo {
  int source_rate = 0;
  int source_channels = 0;
  int64_t source_frames = 0;  // frames actually read, not the header's estimate
  float peak = 0;             // of the mono signal before resampling
};

// Decodes `path` to mono at opts.target_rate. Throws DecodeError naming the file and the reason.
std::vector<float> decode_mono(const std::string& path, const DecodeOptions& opts,
                               DecodedInfo* info = nullptr);
inline std::vector<float> decode_mono(const std::string& path, int target_rate) {
  DecodeOptions o;
  o.target_rate = target_rate;
  return decode_mono(path, o);
}

// Whether libsndfile on this machine can read files with this extension ("mp3", ".flac", ...).
bool extension_supported(const std::string& ext_or_path);

// One-shot HQ resampling of a mono signal with libsoxr (used by decode and by tests/benchmarks).
std::vector<float> resample(const std::vector<float>& x, double from_rate, double to_rate);

}  // namespace mart::audio
