#include "mart/loss/options.h"

#include <cmath>

#include "mart/core/error.h"

namespace mart::loss {

void LossOptions::validate() const {
  if (levels < 1) MART_CONFIG_ERROR("loss option levels (N) must be at least 1, got ", levels);
  if (parts < 1) MART_CONFIG_ERROR("loss option parts (M) must be at least 1, got ", parts);
  if (!(tau > 0) || !std::isfinite(tau))
    MART_CONFIG_ERROR("loss option tau must be a positive number, got ", tau);
}

}  // namespace mart::loss
