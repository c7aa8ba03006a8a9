#pragma once
#include <string>
#include <vector>

namespace mart::synth {
// Mono 16-bit WAV or FLAC through libsndfile, written under a temporary name and renamed.
void write_audio_atomic(const std::string& path, const std::vector<float>& samples, int sample_rate,
                        const std::string& format);
}  // namespace mart::synth
