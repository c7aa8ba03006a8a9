#include "mart/model/config.h"

#include <sstream>

#include "mart/core/text.h"

namespace mart::model {

void declare_model_options(Config& c) {
  const ModelOptions m;
  std::ostringstream ch;
  for (size_t i = 0; i < m.fcn_channels.size(); ++i) ch << (i ? "," : "") << m.fcn_channels[i];
  c.add<std::string>("model.fcn_channels", ch.str(), "channels of the 7 FCN blocks", "Model");
  c.add<int>("model.dim", static_cast<int>(m.dim), "embedding size D (= the last FCN channel count)", "Model");
  c.add<int>("model.pwt_blocks", m.pwt_blocks, "part-whole transformer blocks", "Model");
  c.add<int>("model.heads", m.heads, "attention heads", "Model");
  c.add<int>("model.head_dim", static_cast<int>(m.head_dim), "width of each head (heads x head_dim = attention width)", "Model");
  c.add<int>("model.ff_dim", static_cast<int>(m.ff_dim), "feed-forward width of the transformer layers", "Model");
  c.add<std::string>("model.lambdas", "", "lambda_n of eqs. 1-2, one per level, comma-separated; empty: all 1", "Model");
  c.add<int>("model.projection_dim", static_cast<int>(m.projection_dim), "output of the projection head", "Model");
  c.add<double>("model.tau", m.loss.tau, "temperature of the contrastive loss", "Model");
  c.add<bool>("model.use_pwt", m.use_pwt, "false: the 'without PWT' ablation (s^ = s~)", "Model");
  c.add<bool>("model.use_hcl", m.loss.use_hcl, "false: the 'without HCL' ablation (L_pw = 0)", "Model");
  c.add<std::string>("model.pwt_residual", m.pwt_residual,
                     "double: eq. 1 as printed (w~ + lambda * Transformer, which has its own residual); single: "
                     "the Transformer's residual is the only one", "Model");
  c.add<std::string>("model.pwt_order", m.pwt_order,
                     "parallel: every update of a PWT block reads the block's input; sequential: bottom-up, then "
                     "top-down, each reading the levels already updated", "Model");
  c.add<std::string>("model.pw_term", m.loss.pw_term,
                     "inside: L_pw in eq. 5's numerator and denominator (literal); separate: InfoNCE plus "
                     "model.pw_weight x the part-whole term", "Model");
  c.add<double>("model.pw_weight", m.loss.pw_weight, "weight of the separate part-whole term (model.pw_term = separate)",
                "Model");
  c.add<std::string>("model.anchors", m.loss.anchors,
                     "one: s^0 of view B anchors eq. 5 (as printed); both: s~0 of view A anchors it too, the loss "
                     "is the mean of the two directions (CLMR's symmetric NT-Xent)", "Model");
  c.add<std::string>("model.same_track", m.loss.same_track,
                     "negative: other crops of an instance's track in the batch are its negatives (eq. 6 as "
                     "printed); masked: they are neither positives nor negatives", "Model");
}

ModelOptions model_options_from(const Config& c) {
  ModelOptions m;
  m.fcn_channels = parse_int_list(c.get<std::string>("model.fcn_channels"), "model.fcn_channels");
  m.dim = c.get<int>("model.dim");
  m.pwt_blocks = c.get<int>("model.pwt_blocks");
  m.heads = c.get<int>("model.heads");
  m.head_dim = c.get<int>("model.head_dim");
  m.ff_dim = c.get<int>("model.ff_dim");
  m.lambdas = parse_double_list(c.get<std::string>("model.lambdas"), "model.lambdas");
  m.projection_dim = c.get<int>("model.projection_dim");
  m.loss.tau = c.get<double>("model.tau");
  m.use_pwt = c.get<bool>("model.use_pwt");
  m.loss.use_hcl = c.get<bool>("model.use_hcl");
  m.pwt_residual = c.get<std::string>("model.pwt_residual");
  m.pwt_order = c.get<std::string>("model.pwt_order");
  m.loss.pw_term = c.get<std::string>("model.pw_term");
  m.loss.pw_weight = c.get<double>("model.pw_weight");
  m.loss.anchors = c.get<std::string>("model.anchors");
  m.loss.same_track = c.get<std::string>("model.same_track");
  return m;
}

ModelOptions with_input_of(ModelOptions m, const features::FeatureConfig& f) {
  m.levels = f.levels;
  m.parts = f.parts;
  m.n_mels = f.n_mels;
  m.frames = f.frames;
  return m;
}

std::string model_ini(const ModelOptions& m) {
  std::ostringstream os;
  os << "[model]\nfcn_channels = ";
  for (size_t i = 0; i < m.fcn_channels.size(); ++i) os << (i ? "," : "") << m.fcn_channels[i];
  os << "\ndim = " << m.dim << "\npwt_blocks = " << m.pwt_blocks << "\nheads = " << m.heads
     << "\nhead_dim = " << m.head_dim << "\nff_dim = " << m.ff_dim << "\nlambdas = ";
  for (size_t i = 0; i < m.lambdas.size(); ++i) os << (i ? "," : "") << format_value(m.lambdas[i]);
  os << "\nprojection_dim = " << m.projection_dim << "\ntau = " << format_value(m.loss.tau)
     << "\nuse_pwt = " << format_value(m.use_pwt) << "\nuse_hcl = " << format_value(m.loss.use_hcl)
     << "\npwt_residual = " << m.pwt_residual << "\npwt_order = " << m.pwt_order << "\npw_term = " << m.loss.pw_term
     << "\npw_weight = " << format_value(m.loss.pw_weight) << "\n";
  // Pairing options added later are written only when they differ from the reading that older
  // checkpoints (which lack them) trained with.
  if (m.loss.anchors != "one") os << "anchors = " << m.loss.anchors << "\n";
  if (m.loss.same_track != "negative") os << "same_track = " << m.loss.same_track << "\n";
  return os.str();
}

}  // namespace mart::model
