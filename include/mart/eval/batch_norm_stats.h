#pragma once
// Population BatchNorm statistics of the FCN encoder, measured on data ("precise BatchNorm",
// Wu & Johnson 2021). Fine-tuning from a random initialisation uses it: with frozen BatchNorm
// a random model would otherwise normalise with its initial 0 / 1 statistics, that is, not at all.
#include <torch/torch.h>

#include <cstddef>
#include <cstdint>
#include <functional>

#include "mart/dist/communicator.h"
#include "mart/model/fcn_encoder.h"

namespace mart::eval {

// Sets every block's BatchNorm running mean and variance to the exact mean and unbiased variance
// (per channel, over clips, frequency and time) of its input, the conv output, over all the clips
// that clips(b) gives for b in [0, n_batches) on every rank of `comm` (nullptr: this process
// alone). Block i is measured with blocks 0 .. i-1 already normalised by their new statistics,
// one pass over the clips per block. Sums are taken in float64 and summed over the ranks (then
// broadcast from rank 0, so every rank sets the same bits): the statistics do not depend on how
// the clips are split into batches or over ranks, up to the order of float64 additions.
// clips(b): [n, 1, n_mels, T] or [n, n_mels, T] (n may be 0; batches may differ in size).
// Leaves the encoder in eval mode. Returns the clip count over all ranks; with none it changes
// nothing and returns 0.
int64_t estimate_batch_norm(model::FcnEncoderImpl& encoder, size_t n_batches,
                            const std::function<torch::Tensor(size_t)>& clips, dist::Communicator* comm);

}  // namespace mart::eval
