// mart-bench-comm: the cost of averaging gradients over ranks, with and without overlapping the
// all-reduce with backward. Run under mpirun, e.g. `mpirun -np 2 mart-bench-comm [steps] [batch]`.
//
// The model is an MLP stand-in sized like the real ones (FCN-7 ~3.7M parameters, and 20M).
// Modes, each timed per step (median over steps, rank 0's clock):
//   allreduce  one all-reduce of all gradients as a single flat tensor (the bare collective)
//   iallreduce the same, nonblocking and waited at once (what a bucket does)
//   sequential backward, then GradientReducer::finalize() adds every bucket (no overlap)
//   overlap    GradientReducer with hooks: buckets launch during backward, finalize() waits
//   overlap/4  the same with 4 MB buckets (a 25 MB bucket holds all of FCN-7, leaving nothing
//              to overlap)
// "exposed comm" is the time finalize() adds to the step after backward returns.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "mart/dist/communicator.h"
#include "mart/dist/gradient_reducer.h"

namespace {

using Clock = std::chrono::steady_clock;
using mart::dist::Communicator;

double ms_since(Clock::time_point t0) {
  return std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

struct ModelSize {
  const char* name;
  int layers, width;
};

torch::nn::Sequential make_mlp(const ModelSize& s) {
  torch::nn::Sequential m;
  for (int l = 0; l < s.layers; ++l) {
    m->push_back(torch::nn::Linear(s.width, s.width));
    m->push_back(torch::nn::ReLU());
  }
  return m;
}

int64_t count_params(torch::nn::Module& m) {
  int64_t n = 0;
  for (const auto& p : m.parameters()) n += p.numel();
  return n;
}

struct Row {
  double step_ms, backward_ms, exposed_ms;
};

// The bare collective: one all-reduce of a flat tensor with every gradient in it, blocking
// (MPI_Allreduce) or nonblocking and waited at once (MPI_Iallreduce + MPI_Wait).
Row time_flat_allreduce(int64_t n, Communicator& comm, bool async, int steps) {
  torch::Tensor flat = torch::ones({n});
  std::vector<double> t;
  for (int s = 0; s < steps; ++s) {
    comm.barrier();
    const auto t0 = Clock::now();
    if (async)
      comm.all_reduce_async(flat)->wait();
    else
      comm.all_reduce(flat);
    t.push_back(ms_since(t0));
  }
  return {median(t), 0, median(t)};
}

Row time_steps(torch::nn::Sequential& m, const torch::Tensor& x, Communicator& comm, bool overlap,
               size_t bucket_mb, int steps) {
  mart::dist::GradientReducer reducer(m->parameters(), comm, {bucket_mb << 20, overlap});
  std::vector<double> step, backward, exposed;
  for (int s = 0; s < steps; ++s) {
    for (auto& p : m->parameters()) p.mutable_grad() = torch::Tensor();
    comm.barrier();
    const auto t0 = Clock::now();
    torch::Tensor loss = m->forward(x).pow(2).mean();
    const auto t_bwd = Clock::now();
    loss.backward();
    backward.push_back(ms_since(t_bwd));
    const auto t_fin = Clock::now();
    reducer.finalize();
    exposed.push_back(ms_since(t_fin));
    step.push_back(ms_since(t0));
  }
  return {median(step), median(backward), median(exposed)};
}

void print_row(const Communicator& comm, const char* model, int64_t params, const char* mode,
               const Row& r) {
  if (comm.rank() != 0) return;
  std::printf("%-6s %9.2fM %8.1f  %-10s %10.1f %12.1f %14.1f\n", model, params / 1e6,
              params * 4 / 1048576.0, mode, r.step_ms, r.backward_ms, r.exposed_ms);
}

}  // namespace

int main(int argc, char** argv) {
  mart::dist::World world(&argc, &argv);
  const int steps = argc > 1 ? std::atoi(argv[1]) : 7;
  const int batch = argc > 2 ? std::atoi(argv[2]) : 64;
  torch::set_num_threads(1);
  auto comm = mart::dist::make_communicator(world, torch::kCPU);
  if (comm->rank() == 0) {
    std::printf("%d ranks, %d steps (median), batch %d per rank, buckets 25 MB unless /4, %d torch thread\n",
                comm->size(), steps, batch, torch::get_num_threads());
    std::printf("%-6s %10s %8s  %-10s %10s %12s %14s\n", "model", "params", "MB", "mode",
                "step ms", "backward ms", "exposed comm");
  }
  const ModelSize sizes[] = {{"fcn7", 4, 960}, {"20M", 5, 2000}};
  for (const ModelSize& s : sizes) {
    torch::manual_seed(0);
    auto m = make_mlp(s);
    const int64_t n = count_params(*m);
    const torch::Tensor x = torch::randn({batch, s.width});
    print_row(*comm, s.name, n, "allreduce", time_flat_allreduce(n, *comm, false, steps));
    print_row(*comm, s.name, n, "iallreduce", time_flat_allreduce(n, *comm, true, steps));
    print_row(*comm, s.name, n, "sequential", time_steps(m, x, *comm, false, 25, steps));
    print_row(*comm, s.name, n, "overlap", time_steps(m, x, *comm, true, 25, steps));
    print_row(*comm, s.name, n, "overlap/4", time_steps(m, x, *comm, true, 4, steps));
  }
  return 0;
}
