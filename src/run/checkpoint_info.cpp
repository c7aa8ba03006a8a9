#include "mart/run/checkpoint_info.h"

#include <filesystem>

#include "mart/core/config.h"
#include "mart/core/error.h"
#include "mart/core/fs.h"
#include "mart/model/config.h"
#include "mart/run/checkpoint.h"

namespace fs = std::filesystem;

namespace mart::run {

CheckpointInfo open_checkpoint(const std::string& path) {
  CheckpointInfo c;
  if (fs::exists(path + "/COMPLETE")) {
    c.dir = path;
  } else if (auto latest = latest_checkpoint(path)) {
    c.dir = *latest;
  } else {
    MART_CONFIG_ERROR("checkpoint '", path, "' is neither a complete checkpoint folder nor a mart-train run with one: "
                      "give a run folder of mart-train or one of its checkpoints/step-N folders");
  }
  verify_checkpoint(c.dir);  // a checkpoint whose bytes changed is refused by name
  Config cfg("checkpoint", "model options");
  model::declare_model_options(cfg);
  const std::string ini = read_file(c.dir + "/model.ini");
  cfg.parse_ini_text(ini, c.dir + "/model.ini");
  c.model = model::model_options_from(cfg);
  // A checkpoint written before an open reading became an option used the literal reading,
  // whatever today's default is.
  if (ini.find("pwt_residual") == std::string::npos) c.model.pwt_residual = "double";
  if (ini.find("pwt_order") == std::string::npos) c.model.pwt_order = "parallel";
  if (ini.find("pw_term") == std::string::npos) c.model.loss.pw_term = "inside";
  const auto state = read_train_state(c.dir);
  c.features = state.features;
  if (c.features) c.model = model::with_input_of(c.model, *c.features);
  return c;
}

model::ModelOptions model_for_features(const CheckpointInfo& c, const features::FeatureConfig& f) {
  const model::ModelOptions m = model::with_input_of(c.model, f);
  const auto state = read_train_state(c.dir);
  if (state.model_canonical != m.canonical())
    MART_CONFIG_ERROR("checkpoint '", c.dir, "' was trained on features with another hierarchy or mel size than ",
                      "the evaluation data:\n  checkpoint: ", state.model_canonical, "\n  data gives: ", m.canonical(),
                      "\nrun mart-preprocess on the evaluation data with the features of the training data");
  if (c.features) {  // the same shapes could still come from other audio (sample rate, window, band)
    features::FeatureConfig a = *c.features, b = f;
    a.views = b.views = 0;  // augmented views don't change what the model sees at evaluation
    if (a.canonical() != b.canonical())
      MART_CONFIG_ERROR("checkpoint '", c.dir, "' was trained on other features than the evaluation data's:\n",
                        "  checkpoint: ", a.canonical(), "\n  data:       ", b.canonical(),
                        "\nrun mart-preprocess on the evaluation data with the features of the training data");
  }
  return m;
}

}  // namespace mart::run
