#pragma once
// Options of the hierarchical contrastive loss (DESIGN.md section 1, eqs. 3-6). No torch here, so
// config code can hold them without parsing <torch/torch.h>. Every default is written here once:
// model::ModelOptions holds a LossOptions and the config's [model] keys read and write it.
#include <string>

namespace mart::loss {

struct LossOptions {
  int levels = 4;        // N (the model sets it from the features)
  int parts = 2;         // M: parts per whole; eq. (4) gives lambda_i = 1 / M
  double tau = 0.5;      // temperature (CLMR's; the paper gives none)
  bool use_hcl = true;   // false: L_pw = 0, the "without HCL" ablation (plain InfoNCE)
  // Where L_pw goes (docs/model.md, "open choices"):
  //   inside   - eq. (5) literally: L_pw is added to the numerator and the denominator;
  //   separate - eq. (5) with L_pw = 0 (InfoNCE), plus pw_weight times the part-whole term
  //              mean_b [log L_pw_max - log L_pw_b] (>= 0; 0 when every part equals its whole).
  // Default separate: with L_pw inside, training never learns to tell tracks apart (top-1
  // contrastive accuracy stays at chance while log L_pw reaches its maximum; docs/results.md).
  std::string pw_term = "separate";
  double pw_weight = 0.2;
  // Pairing (docs/results.md section 8):
  //   anchors one  - s^_b^0 (view B) anchors eq. (5), as printed;
  //           both - s~_b^0 (view A) anchors it too, with s^ and s~ swapped in eqs. (5)-(6), and
  //                  L_hc_b is the mean of the two (CLMR's NT-Xent is symmetric the same way).
  //   same_track negative - other crops of b's track in the batch are negatives (eq. 6: u != b);
  //              masked   - they are neither positives nor negatives (needs the batch's track ids).
  std::string anchors = "one";
  std::string same_track = "negative";

  // Throws ConfigError naming the field.
  void validate() const;
};

}  // namespace mart::loss
