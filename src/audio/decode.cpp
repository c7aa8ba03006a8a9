#include "mart/audio/decode.h"

#include <sndfile.h>
#include <soxr.h>
#include <sys/stat.h>

#include <algorithm>
#include <cctype>
#include <cmath>
#include <memory>
#include <cstdio>
#include <set>
#include <sstream>

namespace mart::audio {

const char* to_string(DecodeFailure f) {
  switch (f) {
    case DecodeFailure::missing: return "missing";
    case DecodeFailure::empty: return "empty";
    case DecodeFailure::unsupported: return "unsupported";
    case DecodeFailure::corrupt: return "corrupt";
    case DecodeFailure::truncated: return "truncated";
    case DecodeFailure::silent: return "silent";
  }
  return "unknown";
}

DecodeError::DecodeError(DecodeFailure kind, const std::string& path, const std::string& reason)
    : Error(detail::concat("cannot decode '", path, "' (", to_string(kind), "): ", reason)),
      kind_(kind),
      path_(path),
      reason_(reason) {}

namespace {

std::string lower_extension(const std::string& s) {
  const auto dot = s.find_last_of('.');
  std::string e = dot == std::string::npos ? s : s.substr(dot + 1);
  std::transform(e.begin(), e.end(), e.begin(), [](unsigned char c) { return std::tolower(c); });
  return e;
}

// The extensions libsndfile reports for its major formats, plus the usual aliases it does not
// list (it names Ogg "oga" and AIFF "aiff").
const std::set<std::string>& supported_extensions() {
  static const std::set<std::string> exts = [] {
    std::set<std::string> s;
    int count = 0;
    sf_command(nullptr, SFC_GET_FORMAT_MAJOR_COUNT, &count, sizeof(int));
    for (int i = 0; i < count; ++i) {
      SF_FORMAT_INFO fi{};
      fi.format = i;
      sf_command(nullptr, SFC_GET_FORMAT_MAJOR, &fi, sizeof(fi));
      if (fi.extension) s.insert(lower_extension(fi.extension));
    }
    if (s.count("oga")) s.insert({"ogg", "opus"});
    if (s.count("aiff")) s.insert("aif");
    if (s.count("au")) s.insert("snd");
    if (s.count("wav")) s.insert("wave");
    return s;
  }();
  return exts;
}

struct SndfileCloser {
  void operator()(SNDFILE* f) const { sf_close(f); }
};
using SndfilePtr = std::unique_ptr<SNDFILE, SndfileCloser>;

struct SoxrDeleter {
  void operator()(soxr_t s) const { soxr_delete(s); }
};
using SoxrPtr = std::unique_ptr<soxr, SoxrDeleter>;

// Opening failed: tell an unknown format from a known one that libsndfile cannot parse.
[[noreturn]] void throw_open_error(const std::string& path, int sf_err) {
  const std::string msg = sf_error_number(sf_err);
  if (sf_err == SF_ERR_UNSUPPORTED_ENCODING || !extension_supported(path))
    throw DecodeError(DecodeFailure::unsupported, path, msg);
  throw DecodeError(DecodeFailure::corrupt, path, msg);
}

SndfilePtr open_checked(const std::string& path, SF_INFO* info) {
  struct stat st {};
  if (stat(path.c_str(), &st) != 0) throw DecodeError(DecodeFailure::missing, path, "no such file");
  if (S_ISDIR(st.st_mode)) throw DecodeError(DecodeFailure::missing, path, "is a directory");
  if (st.st_size == 0) throw DecodeError(DecodeFailure::empty, path, "file has 0 bytes");
  SNDFILE* f = sf_open(path.c_str(), SFM_READ, info);
  if (!f) throw_open_error(path, sf_error(nullptr));
  return SndfilePtr(f);
}

// Whether libsndfile's frame count is a promise the stream must keep: it is exact for PCM
// containers and FLAC, an estimate for MP3 (and absent for some streams). For Ogg, the count and
// what decodes differ on complete real files (measured on Debian's game music: a count 104 frames
// past the last page's granule position, or a decode 5806 frames short of it), so Ogg is checked
// by its end-of-stream page instead (ogg_end_problem).
bool header_frames_exact(const SF_INFO& info) {
  const int major = info.format & SF_FORMAT_TYPEMASK;
  return major != SF_FORMAT_MPEG && major != SF_FORMAT_OGG && info.frames > 0 && info.frames < SF_COUNT_MAX;
}

// An Ogg file ends with a whole page that carries the end-of-stream flag (RFC 3533: header type
// bit 0x04). A file cut short ends inside a page, or after a page without the flag. Returns an
// empty string when the end is clean, else what is wrong.
std::string ogg_end_problem(const std::string& path) {
  std::FILE* fp = std::fopen(path.c_str(), "rb");
  if (!fp) return "cannot reopen it to check its last page";
  std::fseek(fp, 0, SEEK_END);
  const long size = std::ftell(fp);
  const long start = std::max(0L, size - 2 * 65307L);  // two maximal pages (27 + 255 + 255 * 255 bytes)
  std::string tail(static_cast<size_t>(size - start), '\0');
  std::fseek(fp, start, SEEK_SET);
  const size_t got = std::fread(tail.data(), 1, tail.size(), fp);
  std::fclose(fp);
  if (got != tail.size()) return "cannot read its last page";
  // The last page that starts here and whose lengths run exactly to the end of the file.
  for (size_t k = tail.rfind("OggS"); k != std::string::npos && k + 27 <= tail.size();
       k = k ? tail.rfind("OggS", k - 1) : std::string::npos) {
    const auto* p = reinterpret_cast<const unsigned char*>(tail.data() + k);
    const size_t segments = p[26];
    if (k + 27 + segments > tail.size()) continue;
    size_t len = 27 + segments;
    for (size_t i = 0; i < segments; ++i) len += p[27 + i];
    if (k + len != tail.size()) {
      if (k + len > tail.size()) return "its last page is cut short (the file ends inside it)";
      continue;  // "OggS" inside packet data
    }
    if (!(p[5] & 0x04)) return "its last page has no end-of-stream flag (the file was cut after a page)";
    return "";
  }
  return "no whole Ogg page ends the file";
}

// libsndfile opens a WAV/AIFF whose data chunk runs past the end of the file, shrinks its frame
// count to what is there and only notes it in its log ("data : 40000 (should be 16000)"). A
// RIFF size that is off is common and harmless; a data chunk that is cut short is a truncation.
bool log_reports_short_data(SNDFILE* f, int64_t* promised_bytes, int64_t* present_bytes) {
  std::string log(8192, '\0');
  sf_command(f, SFC_GET_LOG_INFO, log.data(), static_cast<int>(log.size()));
  std::istringstream lines(log.c_str());
  for (std::string line; std::getline(lines, line);) {
    if (line.rfind("data", 0) != 0 && line.rfind("SSND", 0) != 0) continue;
    long long said = 0, real = 0;
    const auto colon = line.find(':');
    if (colon == std::string::npos) continue;
    if (std::sscanf(line.c_str() + colon + 1, " %lld (should be %lld)", &said, &real) == 2 &&
        said > real) {
      *promised_bytes = said;
      *present_bytes = real;
      return true;
    }
  }
  return false;
}

void downmix(const float* interleaved, int64_t frames, int channels, float* mono) {
  if (channels == 1) {
    std::copy(interleaved, interleaved + frames, mono);
    return;
  }
  const float scale = 1.0f / static_cast<float>(channels);
  for (int64_t i = 0; i < frames; ++i) {
    float s = 0;
    for (int c = 0; c < channels; ++c) s += interleaved[i * channels + c];
    mono[i] = s * scale;
  }
}

// Streams mono blocks through libsoxr, appending to `out`; in == nullptr flushes the tail.
class StreamResampler {
 public:
  StreamResampler(double from, double to) : ratio_(to / from) {
    if (from == to) return;
    soxr_error_t err = nullptr;
    const soxr_quality_spec_t q = soxr_quality_spec(SOXR_HQ, 0);
    // One thread: preprocess runs one MPI rank per core, and libsoxr's OpenMP threads would
    // oversubscribe them.
    const soxr_runtime_spec_t rt = soxr_runtime_spec(1);
    soxr_t s = soxr_create(from, to, 1, &err, nullptr, &q, &rt);
    if (err) MART_FAIL("soxr_create(", from, " -> ", to, "): ", err);
    soxr_.reset(s);
  }
  void push(const float* in, size_t n, std::vector<float>& out) {
    if (!soxr_) {
      out.insert(out.end(), in, in + n);
      return;
    }
    size_t consumed = 0;
    do {  // soxr may keep input when the output space runs out: loop until it took all of it
      const size_t room = static_cast<size_t>(std::ceil((n - consumed) * ratio_)) + 1024;
      const size_t old = out.size();
      out.resize(old + room);
      size_t idone = 0, odone = 0;
      soxr_error_t err = soxr_process(soxr_.get(), in ? in + consumed : nullptr, n - consumed,
                                      &idone, out.data() + old, room, &odone);
      if (err) MART_FAIL("soxr_process: ", err);
      out.resize(old + odone);
      consumed += idone;
      if (!in && odone == 0) break;  // flush: until soxr has nothing left to give
    } while (in ? consumed < n : true);
  }

 private:
  double ratio_;
  SoxrPtr soxr_;
};

}  // namespace

bool extension_supported(const std::string& ext_or_path) {
  return supported_extensions().count(lower_extension(ext_or_path)) > 0;
}

std::vector<float> decode_mono(const std::string& path, const DecodeOptions& opts,
                               DecodedInfo* info_out) {
  MART_CHECK(opts.target_rate > 0 && opts.block_frames > 0, "bad decode options");
  SF_INFO info{};
  SndfilePtr file = open_checked(path, &info);
  if (info.channels < 1 || info.samplerate < 1)
    throw DecodeError(DecodeFailure::corrupt, path, "header gives no channels or no sample rate");
  int64_t promised = 0, present = 0;
  if (log_reports_short_data(file.get(), &promised, &present))
    throw DecodeError(DecodeFailure::truncated, path,
                      detail::concat("data chunk promises ", promised, " bytes, file holds ",
                                     present));

  StreamResampler resampler(info.samplerate, opts.target_rate);
  std::vector<float> out;
  if (header_frames_exact(info))  // reserve once; a guess for mp3 would only be approximate
    out.reserve(static_cast<size_t>(info.frames * double(opts.target_rate) / info.samplerate) + 64);
  std::vector<float> block(static_cast<size_t>(opts.block_frames) * info.channels);
  std::vector<float> mono(static_cast<size_t>(opts.block_frames));
  int64_t frames = 0;
  float peak = 0;
  for (;;) {
    const sf_count_t got = sf_readf_float(file.get(), block.data(), opts.block_frames);
    if (got <= 0) break;
    downmix(block.data(), got, info.channels, mono.data());
    for (sf_count_t i = 0; i < got; ++i) peak = std::max(peak, std::fabs(mono[i]));
    resampler.push(mono.data(), static_cast<size_t>(got), out);
    frames += got;
  }
  const int err = sf_error(file.get());
  if (err != SF_ERR_NO_ERROR)
    throw DecodeError(frames > 0 ? DecodeFailure::truncated : DecodeFailure::corrupt, path,
                      sf_strerror(file.get()));
  if (frames == 0) throw DecodeError(DecodeFailure::empty, path, "no audio frames");
  if ((info.format & SF_FORMAT_TYPEMASK) == SF_FORMAT_OGG) {
    const std::string problem = ogg_end_problem(path);
    if (!problem.empty()) throw DecodeError(DecodeFailure::truncated, path, problem);
  }
  if (header_frames_exact(info) && frames < info.frames)
    throw DecodeError(DecodeFailure::truncated, path,
                      detail::concat("header promises ", info.frames, " frames, stream ends after ",
                                     frames));
  if (!std::isfinite(peak))
    throw DecodeError(DecodeFailure::corrupt, path, "decoded samples are not finite");
  if (opts.reject_silent && peak <= opts.silence_peak)
    throw DecodeError(DecodeFailure::silent, path,
                      detail::concat("peak ", peak, " <= ", opts.silence_peak, " over ", frames,
                                     " frames"));
  resampler.push(nullptr, 0, out);
  if (info_out) *info_out = DecodedInfo{info.samplerate, info.channels, frames, peak};
  return out;
}

std::vector<float> resample(const std::vector<float>& x, double from_rate, double to_rate) {
  StreamResampler r(from_rate, to_rate);
  std::vector<float> out;
  out.reserve(static_cast<size_t>(x.size() * to_rate / from_rate) + 64);
  r.push(x.data(), x.size(), out);
  r.push(nullptr, 0, out);
  return out;
}

}  // namespace mart::audio
