#include "mart/model/options.h"

#include <cmath>
#include <sstream>

#include "mart/core/error.h"
#include "mart/features/features.h"

namespace mart::model {
namespace {

void require_positive(int64_t v, const char* field) {
  if (v <= 0) MART_CONFIG_ERROR("model option ", field, " must be positive, got ", v);
}

}  // namespace

void ModelOptions::validate() const {
  if (levels < 1) MART_CONFIG_ERROR("model option levels (N) must be at least 1, got ", levels);
  if (parts < 1) MART_CONFIG_ERROR("model option parts (M) must be at least 1, got ", parts);
  if (levels > 1 && parts < 2)
    MART_CONFIG_ERROR("model option parts (M) must be at least 2 when levels > 1, got ", parts);
  require_positive(n_mels, "n_mels");
  require_positive(frames, "frames");
  if (fcn_channels.empty()) MART_CONFIG_ERROR("model option fcn_channels must not be empty");
  for (auto c : fcn_channels) require_positive(c, "fcn_channels");
  require_positive(dim, "dim");
  if (dim != fcn_channels.back())
    MART_CONFIG_ERROR("model option dim (", dim, ") must equal the last of fcn_channels (",
                      fcn_channels.back(), "): the encoder's global max pool gives that size");
  if (pwt_blocks < 0) MART_CONFIG_ERROR("model option pwt_blocks must be >= 0, got ", pwt_blocks);
  require_positive(heads, "heads");
  require_positive(head_dim, "head_dim");
  require_positive(ff_dim, "ff_dim");
  if (!lambdas.empty() && static_cast<int>(lambdas.size()) != levels)
    MART_CONFIG_ERROR("model option lambdas has ", lambdas.size(), " values; it needs one per level (",
                      levels, ") or none");
  for (double l : lambdas)
    if (!std::isfinite(l)) MART_CONFIG_ERROR("model option lambdas must be finite");
  require_positive(projection_dim, "projection_dim");
  if (pwt_residual != "double" && pwt_residual != "single")
    MART_CONFIG_ERROR("model option pwt_residual must be double (eq. 1 as printed) or single, got '", pwt_residual, "'");
  if (pwt_order != "parallel" && pwt_order != "sequential")
    MART_CONFIG_ERROR("model option pwt_order must be parallel or sequential, got '", pwt_order, "'");
  loss_options().validate();
}

loss::LossOptions ModelOptions::loss_options() const {
  loss::LossOptions l = loss;
  l.levels = levels;
  l.parts = parts;
  return l;
}

// The hierarchy's sizes are the features' (model::with_input_of copies levels and parts from them).
int64_t ModelOptions::clips_at(int level) const { return features::hierarchy_clips(parts, level); }

int64_t ModelOptions::clips_total() const { return features::hierarchy_clips_total(levels, parts); }

std::string ModelOptions::canonical() const {
  std::ostringstream os;
  os << "levels=" << levels << ";parts=" << parts << ";n_mels=" << n_mels << ";frames=" << frames
     << ";fcn_channels=";
  for (size_t i = 0; i < fcn_channels.size(); ++i) os << (i ? "," : "") << fcn_channels[i];
  os << ";dim=" << dim << ";pwt_blocks=" << pwt_blocks << ";heads=" << heads
     << ";head_dim=" << head_dim << ";ff_dim=" << ff_dim << ";lambdas=";
  for (int n = 0; n < levels; ++n) os << (n ? "," : "") << lambda(n);
  os << ";projection_dim=" << projection_dim << ";tau=" << loss.tau << ";use_pwt=" << use_pwt
     << ";use_hcl=" << loss.use_hcl;
  // Options added later appear only when they differ from the reading older checkpoints used,
  // so those checkpoints keep their identity.
  if (pwt_residual != "double") os << ";pwt_residual=" << pwt_residual;
  if (pwt_order != "parallel") os << ";pwt_order=" << pwt_order;
  if (loss.pw_term != "inside") os << ";pw_term=" << loss.pw_term << ";pw_weight=" << loss.pw_weight;
  if (loss.anchors != "one") os << ";anchors=" << loss.anchors;
  if (loss.same_track != "negative") os << ";same_track=" << loss.same_track;
  return os.str();
}

ModelOptions ModelOptions::small() {
  ModelOptions o;
  o.n_mels = 32;
  o.frames = 32;
  o.fcn_channels = {8, 8, 16, 16, 16, 16, 32};
  o.dim = 32;
  o.heads = 2;
  o.head_dim = 8;
  o.ff_dim = 64;
  o.projection_dim = 16;
  return o;
}

}  // namespace mart::model
