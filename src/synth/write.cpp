#include <sndfile.h>
#include <unistd.h>

#include <cstdio>

#include "mart/core/error.h"
#include "mart/synth/write.h"

namespace mart::synth {

void write_audio_atomic(const std::string& path, const std::vector<float>& samples, int sample_rate,
                        const std::string& format) {
  SF_INFO info{};
  info.samplerate = sample_rate;
  info.channels = 1;
  if (format == "wav") info.format = SF_FORMAT_WAV | SF_FORMAT_PCM_16;
  else if (format == "flac") info.format = SF_FORMAT_FLAC | SF_FORMAT_PCM_16;
  else MART_CONFIG_ERROR("unknown audio format '", format, "': choose wav or flac");
  const std::string tmp = path + ".tmp." + std::to_string(::getpid());
  SNDFILE* f = sf_open(tmp.c_str(), SFM_WRITE, &info);
  if (!f) MART_FAIL("cannot write '", tmp, "': ", sf_strerror(nullptr));
  const auto n = static_cast<sf_count_t>(samples.size());
  const sf_count_t written = sf_writef_float(f, samples.data(), n);
  const int rc = sf_close(f);
  if (written != n || rc != 0) {
    std::remove(tmp.c_str());
    MART_FAIL("short write to '", tmp, "' (disk full?)");
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) MART_FAIL("cannot rename '", tmp, "' to '", path, "'");
}

}  // namespace mart::synth
