// mart-stage-probe: a stage that does nothing but what tests ask of the frame around it.
#include <mpi.h>
#include <spdlog/spdlog.h>

#include <stdexcept>
#include <thread>

#include "mart/app/stage.h"

int main(int argc, char** argv) {
  mart::app::Stage stage;
  stage.name = "mart-stage-probe";
  stage.summary = "exercises run_stage for the tests";
  stage.run_dir_key = "run";
  stage.declare = [](mart::Config& c) {
    c.add<std::string>("run", "probe-run", "run directory");
    c.add<int>("probe.throw_on_rank", -1, "throw on this rank after start-up (-1: none)", "Probe");
    c.add<int>("probe.value", 0, "a value to make configs differ", "Probe");
  };
  stage.run = [](mart::app::StageContext& ctx) {
    if (ctx.world.rank() == ctx.cfg.get<int>("probe.throw_on_rank"))
      throw std::runtime_error("probe failure as asked");
    // The other ranks wait in a collective that the failed rank never joins: without the
    // abort they would hang here forever.
    ctx.world.barrier();
    spdlog::info("probe done");
    return 0;
  };
  return mart::app::run_stage(argc, argv, stage);
}
