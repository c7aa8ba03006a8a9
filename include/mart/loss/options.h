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
  // Where L_pw goes (docs/model.md, "open choices"):
  //   inside   - eq. (5) literally: L_pw is added to the numerator and the denominator;
  //   separate - eq. (5) with L_pw = 0 (InfoNCE), plus pw_weight times the part-whole term
  //              mean_b [log L_pw_max - log L_pw_b] (>= 0; 0 when every part equals its whole).
  std::string pw_term = "inside";
  double pw_weight = 1.0;

  // Throws ConfigError naming the field.
  void validate() const;
};

}  // namespace mart::loss
