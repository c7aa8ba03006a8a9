#pragma once
// mart-train's stage body: data, model, optimizer, the step loop, checkpoints, preemption.
#include "mart/app/stage.h"

namespace mart::train {

// Installs SIGUSR1/SIGTERM handlers that ask for a checkpoint-and-exit at the next step boundary.
void install_preemption_handlers();
bool preemption_requested();

int run(app::StageContext& ctx);

}  // namespace mart::train
