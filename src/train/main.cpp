// mart-train: distributed MART pretraining on the shards of mart-preprocess.
#include "mart/app/stage.h"
#include "mart/train/options.h"
#include "mart/train/trainer.h"

int main(int argc, char** argv) {
  mart::app::Stage stage;
  stage.name = "mart-train";
  stage.summary =
      "pretrain MART (FCN-7 encoder, part-whole transformer, hierarchical contrastive loss) on the shards of "
      "mart-preprocess; exits 75 after checkpointing on SIGUSR1/SIGTERM";
  stage.declare = mart::train::declare_options;
  stage.check = mart::train::check_options;
  stage.run_dir_key = "run";
  stage.run = mart::train::run;
  return mart::app::run_stage(argc, argv, stage);
}
