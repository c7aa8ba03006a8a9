#pragma once
// Options of the hierarchical contrastive loss (DESIGN.md section 1, eqs. 3-6). No torch here, so
// config code can hold them without parsing <torch/torch.h>.
#include <string>

namespace mart::loss {

struct LossOptions {
  int levels = 4;        // N
  int parts = 2;         // M: parts per whole; eq. (4) gives lambda_i = 1 / M
  double tau = 0.5;      // temperature (CLMR's; the paper gives none)
  bool use_hcl = true;   // false: L_pw = 0, the "without HCL" ablation (plain InfoNCE)

  // Throws ConfigError naming the field.
  void validate() const;
};

}  // namespace mart::loss
