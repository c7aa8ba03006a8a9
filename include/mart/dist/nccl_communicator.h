#pragma once
// The NCCL backend for CUDA tensors; compiled only when CUDA and NCCL are found
// (MART_HAVE_NCCL). This header carries no CUDA or NCCL types, so it can be included anywhere.
//
// Bootstrap: each rank takes one GPU, cudaSetDevice(local_rank % device_count); rank 0 makes
// the ncclUniqueId and MPI broadcasts it; then every rank calls ncclCommInitRank. MPI stays for
// host-side control only.
//
// Streams: the collectives run on a stream this communicator owns, created as a *blocking*
// stream, so it is ordered with the legacy default stream that LibTorch uses unless told
// otherwise (work queued on the default stream before a collective finishes before it starts,
// and work queued after waits for it). Blocking calls end with cudaStreamSynchronize; async work
// is finished by Work::wait().
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

 private:
  struct State;  // NCCL communicator and CUDA stream
  void launch_all_reduce(torch::Tensor& t);
  void synchronize();

  std::unique_ptr<State> state_;
  MPI_Comm mpi_comm_;
  int rank_ = 0, size_ = 1, device_ = 0;
};

}  // namespace mart::dist
