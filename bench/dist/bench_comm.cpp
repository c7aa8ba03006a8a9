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
//
// `mpirun -np N mart-bench-comm sweep [reps]` instead times the bare collectives against message
// size (4 KiB to 64 MiB of float32 per rank): all_reduce, all_gather (each rank's part is the
// size), and reduce_scatter (AllGatherWithGrad's backward: the gathered gradient, n x the size,
// summed over ranks, each keeping its own part). Bandwidths as nccl-tests defines them: algbw = bytes / time, busbw = algbw x
// 2(n-1)/n for all-reduce and x (n-1)/n for all-gather and reduce-scatter (of n x the size), so busbw is
// comparable across rank counts and with published NCCL figures. Run it over TCP with
// `mpirun --mca pml ob1 --mca btl self,tcp ...` (the stand-in for links between nodes).
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

// One collective over message sizes: median of reps after one warm-up, rank 0's clock, every
// call between barriers (so the slowest rank's arrival is in the time, as on a real step).
void sweep(Communicator& comm, int reps) {
  const int n = comm.size();
  if (comm.rank() == 0) {
    std::printf("%d ranks, median of %d calls per size, float32, sizes per rank\n", n, reps);
    std::printf("%-16s %10s %10s %12s %12s\n", "collective", "bytes", "time us", "algbw GB/s",
                "busbw GB/s");
  }
  for (const std::string w : {"all_reduce", "all_gather", "reduce_scatter"}) {
    for (int64_t bytes = 4096; bytes <= (int64_t{64} << 20); bytes *= 4) {
      const int64_t elems = bytes / 4;
      torch::Tensor t = torch::ones({elems});
      torch::Tensor big = torch::ones({elems * n});
      std::vector<double> us;
      for (int r = 0; r <= reps; ++r) {
        comm.barrier();
        const auto t0 = Clock::now();
        if (w == "all_reduce") {
          comm.all_reduce(t);
        } else if (w == "all_gather") {
          torch::Tensor g = comm.all_gather(t);
          if (g.numel() != elems * n) std::abort();
        } else {
          torch::Tensor own = comm.reduce_scatter(big);
          if (own.numel() != elems) std::abort();
        }
        if (r > 0) us.push_back(ms_since(t0) * 1000.0);
      }
      const double med = median(us);
      // all_reduce's tensor is the size; all_gather's output and reduce_scatter's input n x it.
      const bool ar = w == "all_reduce";
      const double moved = ar ? bytes : static_cast<double>(bytes) * n;
      const double factor = ar ? 2.0 * (n - 1.0) / n : (n - 1.0) / n;
      const double algbw = moved / (med * 1e-6) / 1e9;
      if (comm.rank() == 0)
        std::printf("%-16s %10lld %10.1f %12.3f %12.3f\n", w.c_str(), static_cast<long long>(bytes), med,
                    algbw, algbw * factor);
    }
  }
}

}  // namespace

int main(int argc, char** argv) {
  mart::dist::World world(&argc, &argv);
  if (argc > 1 && std::string(argv[1]) == "sweep") {
    torch::set_num_threads(1);
    auto comm = mart::dist::make_communicator(world, torch::kCPU);
    sweep(*comm, argc > 2 ? std::atoi(argv[2]) : 9);
    return 0;
  }
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
