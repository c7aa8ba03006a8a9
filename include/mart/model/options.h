#pragma once
// Every option of the MART model (DESIGN.md section 1), the paper's values as defaults. No torch
// here: the config layer and the trainer can hold and validate these without <torch/torch.h>.
#include <cstdint>
#include <string>
#include <vector>

#include "mart/loss/options.h"

namespace mart::model {

struct ModelOptions {
  // Hierarchy and input (must match the feature config: FeatureConfig::levels/parts/n_mels/frames).
  int levels = 4;  // N
  int parts = 2;   // M
  int n_mels = 128;
  int frames = 128;  // T

  // Projection encoder "FCN-7": one Conv3x3-BN-ReLU-MaxPool2x2 block per channel count.
  std::vector<int64_t> fcn_channels{128, 128, 256, 256, 256, 256, 512};
  int64_t dim = 512;  // embedding size D; equals the last FCN channel count

  // Part-whole transformer (eqs. 1-2).
  int pwt_blocks = 3;
  int heads = 3;
  int64_t head_dim = 64;  // attention works in heads * head_dim = 192 dimensions
  int64_t ff_dim = 2048;
  // lambda_n of eqs. 1-2, one per level; empty means 1 at every level.
  std::vector<double> lambdas;
  // Open readings of eqs. 1-2 (docs/model.md, "open choices"):
  //   pwt_residual double - w^ = w~ + lambda * Transformer(w~, P~), the Transformer keeping its own
  //                         residual (eq. 1 as printed: two residuals);
  //                single - the Transformer's residual is eq. 1's "+ w~": w^ = w~ + lambda *
  //                         (Transformer(w~, P~) - w~), i.e. w^ = Transformer(w~, P~) at lambda 1.
  //   pwt_order parallel   - every update of a block reads the block's input;
  //             sequential - bottom-up from the finest pair to the top, then top-down from the top,
  //                          each update reading the levels already updated in this block.
  std::string pwt_residual = "double";
  std::string pwt_order = "parallel";

  // Projection head Linear(dim) - ReLU - Linear(projection_dim).
  int64_t projection_dim = 256;

  // Ablations of the paper's table 4: without PWT here, without HCL is loss.use_hcl.
  bool use_pwt = true;  // false: s^ = s~ (the transformer is skipped, its weights unused)

  // The loss (eqs. 3-6) this model trains with: tau, use_hcl, pw_term, pw_weight, anchors,
  // same_track. Its defaults are written once, in loss/options.h; levels and parts are this
  // model's (loss_options() fills them in).
  loss::LossOptions loss;

  // Throws ConfigError naming the bad field.
  void validate() const;
  double lambda(int level) const { return lambdas.empty() ? 1.0 : lambdas.at(level); }
  int64_t clips_at(int level) const;  // M^n
  int64_t clips_total() const;        // sum over levels of M^n
  int64_t attention_dim() const { return heads * head_dim; }
  loss::LossOptions loss_options() const;
  // Every option as "key=value;..." in a fixed order, for checkpoints and logs.
  std::string canonical() const;

  // A small model with the same structure, for tests: channels {8,8,16,16,16,16,32}, dim 32,
  // 2 heads of 8, ff 64, projection 16, 32 mel bands x 32 frames.
  static ModelOptions small();
};

}  // namespace mart::model
