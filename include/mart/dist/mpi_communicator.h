#pragma once
// The MPI backend for CPU tensors. Sums (all_reduce, reduce_scatter) take float32, float64, int32
// and int64; gathers and broadcasts move bytes and take any dtype.
#include <mpi.h>

#include "mart/dist/communicator.h"

namespace mart::dist {

class MpiCommunicator final : public Communicator {
 public:
  // Spans the ranks of `comm`, which must outlive this object.
  explicit MpiCommunicator(MPI_Comm comm);

  Backend backend() const override { return Backend::kMpi; }
  int rank() const override { return rank_; }
  int size() const override { return size_; }
  torch::Device device() const override { return torch::kCPU; }

  void all_reduce(torch::Tensor& t) override;
  std::unique_ptr<Work> all_reduce_async(torch::Tensor& t) override;
  torch::Tensor all_gather(const torch::Tensor& t) override;
  torch::Tensor all_gather_v(const torch::Tensor& t) override;
  torch::Tensor reduce_scatter(const torch::Tensor& t) override;
  void broadcast(torch::Tensor& t, int root = 0) override;
  void barrier() override;

 private:
  MPI_Comm comm_;
  int rank_ = 0, size_ = 1;
};

// The MPI datatype of a tensor's dtype; throws for dtypes MPI cannot sum (half, bfloat16, bool).
MPI_Datatype mpi_datatype(torch::ScalarType type);

}  // namespace mart::dist
