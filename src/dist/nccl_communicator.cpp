#include "mart/dist/nccl_communicator.h"

#include <algorithm>
#include <vector>

#include "mart/core/cuda_check.h"
#include "mart/core/error.h"
#include "mart/core/mpi_check.h"

namespace mart::dist {

struct NcclCommunicator::State {
  ncclComm_t comm = nullptr;
  cudaStream_t stream = nullptr;
};

namespace {

void check_cuda_contiguous(const torch::Tensor& t, int device, const char* op) {
  MART_CHECK(t.defined(), op, ": undefined tensor");
  MART_CHECK(t.device().is_cuda(), op, ": the NCCL backend takes CUDA tensors, got ", t.device(),
             " (use a communicator made for that device)");
  MART_CHECK(t.device().index() == device, op, ": the tensor is on cuda:", t.device().index(),
             " but this rank drives cuda:", device);
  MART_CHECK(t.is_contiguous(), op, ": the tensor must be contiguous");
}

ncclDataType_t nccl_datatype(torch::ScalarType type) {
  switch (type) {
    case torch::kFloat32: return ncclFloat32;
    case torch::kFloat64: return ncclFloat64;
    case torch::kFloat16: return ncclFloat16;
    case torch::kBFloat16: return ncclBfloat16;
    case torch::kInt32: return ncclInt32;
    case torch::kInt64: return ncclInt64;
    default:
      MART_FAIL("the NCCL backend does not sum dtype ", c10::toString(type),
                "; use float32, float64, float16, bfloat16, int32 or int64");
  }
}

std::vector<int64_t> with_rows(const torch::Tensor& t, int64_t rows) {
  std::vector<int64_t> shape(t.sizes().begin(), t.sizes().end());
  MART_CHECK(!shape.empty(), "all_gather: a 0-d tensor has no dim 0 to concatenate along");
  shape[0] = rows;
  return shape;
}

// The end of one collective on the communicator's stream, marked by an event.
class NcclWork final : public Work {
 public:
  NcclWork(cudaStream_t stream, int device) : device_(device) {
    CUDA_CHECK(cudaEventCreateWithFlags(&done_, cudaEventDisableTiming));
    CUDA_CHECK(cudaEventRecord(done_, stream));
  }
  ~NcclWork() override {
    // Not checked: a destructor must not throw; wait() is the checked path.
    if (done_) {
      cudaEventSynchronize(done_);
      cudaEventDestroy(done_);
    }
  }
  void wait() override {
    CUDA_CHECK(cudaSetDevice(device_));
    CUDA_CHECK(cudaEventSynchronize(done_));
  }

 private:
  cudaEvent_t done_ = nullptr;
  int device_;
};

}  // namespace

NcclCommunicator::NcclCommunicator(const World& world)
    : state_(std::make_unique<State>()), mpi_comm_(world.comm()), rank_(world.rank()),
      size_(world.size()) {
  int devices = 0;
  CUDA_CHECK(cudaGetDeviceCount(&devices));
  MART_CHECK(devices > 0, "the NCCL backend needs a GPU and this node shows none");
  device_ = world.local_rank() % devices;
  CUDA_CHECK(cudaSetDevice(device_));
  ncclUniqueId id{};
  if (rank_ == 0) NCCL_CHECK(ncclGetUniqueId(&id));
  MPI_CHECK(MPI_Bcast(&id, static_cast<int>(sizeof(id)), MPI_BYTE, 0, mpi_comm_));
  NCCL_CHECK(ncclCommInitRank(&state_->comm, size_, id, rank_));
  // Blocking (default-flag) stream: ordered with the legacy default stream, see the header.
  CUDA_CHECK(cudaStreamCreate(&state_->stream));
}

NcclCommunicator::~NcclCommunicator() {
  // Not checked: a destructor must not throw.
  if (state_->stream) {
    cudaStreamSynchronize(state_->stream);
    cudaStreamDestroy(state_->stream);
  }
  if (state_->comm) ncclCommDestroy(state_->comm);
}

void NcclCommunicator::synchronize() { CUDA_CHECK(cudaStreamSynchronize(state_->stream)); }

void NcclCommunicator::launch_all_reduce(torch::Tensor& t) {
  check_cuda_contiguous(t, device_, "all_reduce");
  CUDA_CHECK(cudaSetDevice(device_));
  NCCL_CHECK(ncclAllReduce(t.data_ptr(), t.data_ptr(), static_cast<size_t>(t.numel()),
                           nccl_datatype(t.scalar_type()), ncclSum, state_->comm, state_->stream));
}

void NcclCommunicator::all_reduce(torch::Tensor& t) {
  launch_all_reduce(t);
  synchronize();
}

std::unique_ptr<Work> NcclCommunicator::all_reduce_async(torch::Tensor& t) {
  launch_all_reduce(t);
  return std::make_unique<NcclWork>(state_->stream, device_);
}

torch::Tensor NcclCommunicator::all_gather(const torch::Tensor& t) {
  const torch::Tensor in = t.contiguous();
  check_cuda_contiguous(in, device_, "all_gather");
  torch::Tensor out = torch::empty(with_rows(in, in.size(0) * size_), in.options());
  CUDA_CHECK(cudaSetDevice(device_));
  // Gathering moves bytes and sums nothing, so every dtype goes as bytes.
  NCCL_CHECK(ncclAllGather(in.data_ptr(), out.data_ptr(), in.nbytes(), ncclUint8, state_->comm,
                           state_->stream));
  synchronize();
  return out;
}

torch::Tensor NcclCommunicator::all_gather_v(const torch::Tensor& t) {
  // NCCL has no all-gather-v: gather the row counts, pad every rank to the longest, gather, and
  // keep each rank's real rows.
  MART_CHECK(t.dim() > 0, "all_gather_v: a 0-d tensor has no dim 0 to concatenate along");
  const torch::Tensor rows = torch::full({1}, t.size(0), t.options().dtype(torch::kInt64));
  const torch::Tensor all_rows = all_gather(rows).cpu();
  const int64_t longest = all_rows.max().item<int64_t>();
  torch::Tensor padded = torch::zeros(with_rows(t, longest), t.options());
  padded.narrow(0, 0, t.size(0)).copy_(t);
  const torch::Tensor gathered = all_gather(padded);
  std::vector<torch::Tensor> parts;
  for (int r = 0; r < size_; ++r)
    parts.push_back(gathered.narrow(0, r * longest, all_rows[r].item<int64_t>()));
  return torch::cat(parts, 0);
}

torch::Tensor NcclCommunicator::reduce_scatter(const torch::Tensor& t) {
  const torch::Tensor in = t.contiguous();
  check_cuda_contiguous(in, device_, "reduce_scatter");
  MART_CHECK(in.size(0) % size_ == 0, "reduce_scatter: dim 0 (", in.size(0), ") must split into ",
             size_, " equal chunks");
  torch::Tensor out = torch::empty(with_rows(in, in.size(0) / size_), in.options());
  CUDA_CHECK(cudaSetDevice(device_));
  NCCL_CHECK(ncclReduceScatter(in.data_ptr(), out.data_ptr(), static_cast<size_t>(out.numel()),
                               nccl_datatype(in.scalar_type()), ncclSum, state_->comm,
                               state_->stream));
  synchronize();
  return out;
}

void NcclCommunicator::broadcast(torch::Tensor& t, int root) {
  check_cuda_contiguous(t, device_, "broadcast");
  CUDA_CHECK(cudaSetDevice(device_));
  NCCL_CHECK(ncclBroadcast(t.data_ptr(), t.data_ptr(), t.nbytes(), ncclUint8, root, state_->comm,
                           state_->stream));
  synchronize();
}

void NcclCommunicator::barrier() {
  // Our own GPU work first, then the host-side meeting.
  synchronize();
  MPI_CHECK(MPI_Barrier(mpi_comm_));
}

}  // namespace mart::dist
