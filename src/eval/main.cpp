// mart-eval: embeddings and task reports for a checkpoint and the baselines.
#include "mart/app/stage.h"
#include "mart/eval/evaluate.h"
#include "mart/eval/options.h"

int main(int argc, char** argv) {
  mart::app::Stage stage;
  stage.name = "mart-eval";
  stage.summary =
      "embed a preprocessed dataset with a MART checkpoint and baselines (random encoder, log-mel statistics), "
      "then probe tagging / classification and rank cover songs; writes report.md and results.json";
  stage.declare = mart::eval::declare_options;
  stage.run_dir_key = "run";
  stage.check = mart::eval::check_options;
  stage.run = mart::eval::run;
  return mart::app::run_stage(argc, argv, stage);
}
