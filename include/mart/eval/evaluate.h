#pragma once
// mart-eval's stage body, in named phases: the feature sources (the trained model and the
// baselines) and their embeddings; per source the frozen probes (task x label fraction x seed jobs
// spread over the ranks), whole-model fine-tuning (jobs on rank groups) and the frozen covers
// ranking (query blocks spread over the ranks); then the covers models trained on the training
// works (the paper's table 3), and the report. Options: mart/eval/options.h. No torch here.
#include "mart/app/stage.h"

namespace mart::eval {

int run(app::StageContext& ctx);

}  // namespace mart::eval
