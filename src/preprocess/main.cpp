// mart-preprocess: a music collection -> HDF5 shards of multi-level log-mels.
#include "mart/app/stage.h"
#include "mart/preprocess/pipeline.h"

int main(int argc, char** argv) {
  mart::app::Stage stage;
  stage.name = "mart-preprocess";
  stage.summary =
      "decode, resample, augment and turn every track into whole-track log-mels at each level of the "
      "hierarchy, written as HDF5 shards with a manifest.json";
  stage.declare = mart::preprocess::declare_options;
  stage.check = [](const mart::Config& c) { mart::preprocess::options_from(c); };
  stage.run_dir_key = "output";
  stage.run = mart::preprocess::run;
  return mart::app::run_stage(argc, argv, stage);
}
