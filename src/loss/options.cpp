#include "mart/loss/options.h"

#include <cmath>

#include "mart/core/error.h"

namespace mart::loss {

void LossOptions::validate() const {
  if (levels < 1) MART_CONFIG_ERROR("loss option levels (N) must be at least 1, got ", levels);
  if (parts < 1) MART_CONFIG_ERROR("loss option parts (M) must be at least 1, got ", parts);
  if (!(tau > 0) || !std::isfinite(tau))
    MART_CONFIG_ERROR("model option tau must be a positive number, got ", tau);
  if (pw_term != "inside" && pw_term != "separate")
    MART_CONFIG_ERROR("model option pw_term must be inside (eq. 5 as written) or separate, got '", pw_term, "'");
  if (!(pw_weight >= 0) || !std::isfinite(pw_weight))
    MART_CONFIG_ERROR("model option pw_weight must be a finite number >= 0, got ", pw_weight);
  if (anchors != "one" && anchors != "both")
    MART_CONFIG_ERROR("model option anchors must be one (s^0 of view B, as printed) or both (views A and B), got '",
                      anchors, "'");
  if (same_track != "negative" && same_track != "masked")
    MART_CONFIG_ERROR("model option same_track must be negative (as printed) or masked, got '", same_track, "'");
}

}  // namespace mart::loss
