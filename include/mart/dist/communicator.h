#pragma once
// Collectives on torch tensors behind one small interface, with two backends: MPI for CPU
// tensors (always built) and NCCL for CUDA tensors (built when CUDA and NCCL are found). The
// backend follows the device: make_communicator(world, device).
//
// Every rank must call the same collectives in the same order with tensors of the same shape
// and dtype (all_gather_v is the one exception: its first dimension may differ per rank).
#include <torch/torch.h>

#include <memory>

#include "mart/dist/world.h"

namespace mart::dist {

enum class Backend { kMpi, kNccl };
const char* backend_name(Backend b);

// A collective that was started and not yet finished. wait() blocks until its result is in the
// tensor it was started on; it is called once, and a Work must be waited before it is destroyed.
class Work {
 public:
  virtual ~Work() = default;
  virtual void wait() = 0;
  // Lets the backend make progress without blocking (MPI progresses only inside MPI calls).
  virtual void poke() {}
};

class Communicator {
 public:
  virtual ~Communicator() = default;
  virtual Backend backend() const = 0;
  virtual int rank() const = 0;
  virtual int size() const = 0;
  // Where this rank's tensors must live: CPU for MPI, this rank's GPU for NCCL (the model and
  // batches go here: `model->to(comm->device())`).
  virtual torch::Device device() const = 0;

  // Sum over ranks, in place. `t` must be contiguous.
  virtual void all_reduce(torch::Tensor& t) = 0;
  // all_reduce that returns at once; the sum is in `t` after wait().
  virtual std::unique_ptr<Work> all_reduce_async(torch::Tensor& t) = 0;
  // Every rank's `t` ([n, ...], the same shape on every rank) concatenated along dim 0 in rank
  // order: [size() * n, ...].
  virtual torch::Tensor all_gather(const torch::Tensor& t) = 0;
  // As all_gather, but n may differ per rank (one extra small collective for the sizes).
  virtual torch::Tensor all_gather_v(const torch::Tensor& t) = 0;
  // Sum over ranks of `t` ([size() * n, ...]), and rank r keeps chunk r: [n, ...].
  virtual torch::Tensor reduce_scatter(const torch::Tensor& t) = 0;
  // Rank `root`'s `t` copied into every rank's `t`, in place. `t` must be contiguous.
  virtual void broadcast(torch::Tensor& t, int root = 0) = 0;
  virtual void barrier() = 0;
  // Seconds the collectives spent on the device since the last call, for backends whose host
  // timers see only launches (NCCL: CUDA events, counted when the collectives finish); -1 where the
  // host-side time of the calls is the measure (MPI).
  virtual double take_device_seconds() { return -1; }
};

// The backend for `device`: CPU -> MPI, CUDA -> NCCL (a ConfigError when mart was built without
// NCCL). The communicator spans the ranks of `world`; `world` must outlive it.
std::unique_ptr<Communicator> make_communicator(const World& world, const torch::Device& device);

// True when this build has the NCCL backend.
bool nccl_available();

}  // namespace mart::dist
