#pragma once
// The NCCL backend for CUDA tensors; compiled only when CUDA and NCCL are found
// (MART_HAVE_NCCL). This header carries no CUDA or NCCL types, so it can be included anywhere.
//
// Bootstrap: each rank takes one GPU, its local rank (more ranks on a node than GPUs is a clear
// error, see gpu_for_local_rank); rank 0 makes the ncclUniqueId and MPI broadcasts it; then every
// rank calls ncclCommInitRank. Before that, the NCCL version mart was compiled against must equal
// the one loaded (ncclGetVersion). MPI stays for host-side control only.
//
// Streams: the collectives run on a *non-blocking* stream this communicator owns. Each one first
// makes that stream wait for an event recorded on the compute stream (LibTorch's current stream),
// so it reads finished inputs, and blocking collectives then make the compute stream wait for the
// collective's end event: ordering is kept on the GPU without stalling the host, and an
// all-reduce started during backward (all_reduce_async) runs beside the rest of backward until
// Work::wait() joins it into the compute stream.
//
// Failure: a watchdog thread polls every collective in flight; on an NCCL async error
// (ncclCommGetAsyncError), a CUDA error, or a collective older than MART_NCCL_TIMEOUT_S (default
// 600 s) it calls ncclCommAbort, which ends the hung kernels, and the next call on this rank
// throws the reason. Destroyed during an exception, the communicator aborts instead of waiting.
#include <memory>

#include "mart/dist/communicator.h"

namespace mart::dist {

class NcclCommunicator final : public Communicator {
 public:
  explicit NcclCommunicator(const World& world);
  ~NcclCommunicator() override;
  NcclCommunicator(const NcclCommunicator&) = delete;
  NcclCommunicator& operator=(const NcclCommunicator&) = delete;

  Backend backend() const override { return Backend::kNccl; }
  int rank() const override { return rank_; }
  int size() const override { return size_; }
  torch::Device device() const override {  // the GPU this rank drives
    return {torch::kCUDA, static_cast<torch::DeviceIndex>(device_)};
  }

  void all_reduce(torch::Tensor& t) override;
  std::unique_ptr<Work> all_reduce_async(torch::Tensor& t) override;
  torch::Tensor all_gather(const torch::Tensor& t) override;
  torch::Tensor all_gather_v(const torch::Tensor& t) override;
  torch::Tensor reduce_scatter(const torch::Tensor& t) override;
  void broadcast(torch::Tensor& t, int root = 0) override;
  void barrier() override;
  // Device time of the collectives that finished since the last call (CUDA events).
  double take_device_seconds() override;

 private:
  struct State;  // NCCL communicator, CUDA stream, collectives in flight, watchdog
  template <typename Call>
  std::shared_ptr<void> launch(const char* op, Call&& call);
  void join(const std::shared_ptr<void>& pending);
  void synchronize();
  void watch();
  std::string retire_locked();
  void throw_if_failed();

  std::unique_ptr<State> state_;
  MPI_Comm mpi_comm_;
  int rank_ = 0, size_ = 1, device_ = 0;
};

}  // namespace mart::dist
