#include "mart/eval/checkpoint.h"

#include <filesystem>

#include "mart/core/config.h"
#include "mart/core/error.h"
#include "mart/core/fs.h"
#include "mart/train/checkpoint.h"
#include "mart/train/options.h"

namespace fs = std::filesystem;

namespace mart::eval {

CheckpointInfo open_checkpoint(const std::string& path) {
  CheckpointInfo c;
  if (fs::exists(path + "/COMPLETE")) {
    c.dir = path;
  } else if (auto latest = train::latest_checkpoint(path)) {
    c.dir = *latest;
  } else {
    MART_CONFIG_ERROR("checkpoint '", path, "' is neither a complete checkpoint folder nor a mart-train run with one: "
                      "give a run folder of mart-train or one of its checkpoints/step-N folders");
  }
  train::verify_checkpoint(c.dir);  // a checkpoint whose bytes changed is refused by name
  Config cfg("checkpoint", "model options");
  train::declare_model_options(cfg);
  cfg.parse_ini_text(read_file(c.dir + "/model.ini"), c.dir + "/model.ini");
  c.model = train::model_options_from(cfg);
  const auto state = train::read_train_state(c.dir);
  c.features = state.features;
  if (c.features) c.model = train::with_input_of(c.model, *c.features);
  return c;
}

model::ModelOptions model_for_features(const CheckpointInfo& c, const audio::FeatureConfig& f) {
  const model::ModelOptions m = train::with_input_of(c.model, f);
  const auto state = train::read_train_state(c.dir);
  if (state.model_canonical != m.canonical())
    MART_CONFIG_ERROR("checkpoint '", c.dir, "' was trained on features with another hierarchy or mel size than ",
                      "the evaluation data:\n  checkpoint: ", state.model_canonical, "\n  data gives: ", m.canonical(),
                      "\nrun mart-preprocess on the evaluation data with the features of the training data");
  if (c.features) {  // the same shapes could still come from other audio (sample rate, window, band)
    audio::FeatureConfig a = *c.features, b = f;
    a.views = b.views = 0;  // augmented views don't change what the model sees at evaluation
    if (a.canonical() != b.canonical())
      MART_CONFIG_ERROR("checkpoint '", c.dir, "' was trained on other features than the evaluation data's:\n",
                        "  checkpoint: ", a.canonical(), "\n  data:       ", b.canonical(),
                        "\nrun mart-preprocess on the evaluation data with the features of the training data");
  }
  return m;
}

}  // namespace mart::eval
