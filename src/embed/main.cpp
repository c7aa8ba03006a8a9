// mart-embed: scene and timestamped per-level embeddings straight from audio files.
#include "mart/app/stage.h"
#include "mart/embed/embed_audio.h"

int main(int argc, char** argv) {
  mart::app::Stage stage;
  stage.name = "mart-embed";
  stage.summary =
      "embed audio files of any length with a MART checkpoint, no preprocessing step: a scene embedding per file "
      "and timestamped embeddings per level (HDF5, CSV, NPY); see docs/embed.md";
  stage.declare = mart::embed::declare_embed_options;
  stage.run_dir_key = "output";
  stage.check = mart::embed::check_embed_options;
  stage.run = mart::embed::run_embed;
  return mart::app::run_stage(argc, argv, stage);
}
