#include "mart/dist/mpi_communicator.h"

#include <limits>
#include <vector>

#include "mart/core/error.h"
#include "mart/core/mpi_check.h"

namespace mart::dist {

namespace {

void check_cpu_contiguous(const torch::Tensor& t, const char* op) {
  MART_CHECK(t.defined(), op, ": undefined tensor");
  MART_CHECK(t.device().is_cpu(), op, ": the MPI backend takes CPU tensors, got ", t.device(),
             " (use a communicator made for that device)");
  MART_CHECK(t.is_contiguous(), op, ": the tensor must be contiguous");
}

int mpi_count(int64_t n, const char* op) {
  MART_CHECK(n <= std::numeric_limits<int>::max(), op, ": ", n,
             " elements exceed MPI's int count; split the tensor");
  return static_cast<int>(n);
}

// The shape of a gather result: `rows` along dim 0, the rest as in `t`.
std::vector<int64_t> with_rows(const torch::Tensor& t, int64_t rows) {
  std::vector<int64_t> shape(t.sizes().begin(), t.sizes().end());
  MART_CHECK(!shape.empty(), "all_gather: a 0-d tensor has no dim 0 to concatenate along");
  shape[0] = rows;
  return shape;
}

class MpiWork final : public Work {
 public:
  explicit MpiWork(MPI_Request r) : request_(r) {}
  ~MpiWork() override {
    // A request left in flight would write into freed memory later: finish it. A destructor
    // must not throw, so the result is not checked here; wait() is the checked path.
    if (request_ != MPI_REQUEST_NULL) MPI_Wait(&request_, MPI_STATUS_IGNORE);
  }
  void wait() override { MPI_CHECK(MPI_Wait(&request_, MPI_STATUS_IGNORE)); }
  void poke() override {
    int done = 0;
    if (request_ != MPI_REQUEST_NULL) MPI_CHECK(MPI_Test(&request_, &done, MPI_STATUS_IGNORE));
  }

 private:
  MPI_Request request_;
};

}  // namespace

MPI_Datatype mpi_datatype(torch::ScalarType type) {
  switch (type) {
    case torch::kFloat32: return MPI_FLOAT;
    case torch::kFloat64: return MPI_DOUBLE;
    case torch::kInt32: return MPI_INT32_T;
    case torch::kInt64: return MPI_INT64_T;
    default:
      MART_FAIL("the MPI backend does not handle dtype ", c10::toString(type),
                "; use float32, float64, int32 or int64");
  }
}

MpiCommunicator::MpiCommunicator(MPI_Comm comm) : comm_(comm) {
  MPI_CHECK(MPI_Comm_rank(comm_, &rank_));
  MPI_CHECK(MPI_Comm_size(comm_, &size_));
}

void MpiCommunicator::all_reduce(torch::Tensor& t) {
  check_cpu_contiguous(t, "all_reduce");
  MPI_CHECK(MPI_Allreduce(MPI_IN_PLACE, t.data_ptr(), mpi_count(t.numel(), "all_reduce"),
                          mpi_datatype(t.scalar_type()), MPI_SUM, comm_));
}

std::unique_ptr<Work> MpiCommunicator::all_reduce_async(torch::Tensor& t) {
  check_cpu_contiguous(t, "all_reduce_async");
  MPI_Request request = MPI_REQUEST_NULL;
  MPI_CHECK(MPI_Iallreduce(MPI_IN_PLACE, t.data_ptr(), mpi_count(t.numel(), "all_reduce_async"),
                           mpi_datatype(t.scalar_type()), MPI_SUM, comm_, &request));
  return std::make_unique<MpiWork>(request);
}

torch::Tensor MpiCommunicator::all_gather(const torch::Tensor& t) {
  const torch::Tensor in = t.contiguous();
  check_cpu_contiguous(in, "all_gather");
  torch::Tensor out = torch::empty(with_rows(in, in.size(0) * size_), in.options());
  // Gathering moves bytes and sums nothing, so every dtype goes as MPI_BYTE.
  const int count = mpi_count(in.nbytes(), "all_gather");
  MPI_CHECK(MPI_Allgather(in.data_ptr(), count, MPI_BYTE, out.data_ptr(), count, MPI_BYTE, comm_));
  return out;
}

torch::Tensor MpiCommunicator::all_gather_v(const torch::Tensor& t) {
  const torch::Tensor in = t.contiguous();
  check_cpu_contiguous(in, "all_gather_v");
  MART_CHECK(in.dim() > 0, "all_gather_v: a 0-d tensor has no dim 0 to concatenate along");
  int64_t row = static_cast<int64_t>(in.element_size());  // bytes per row; moved as MPI_BYTE
  for (int64_t d = 1; d < in.dim(); ++d) row *= in.size(d);
  int64_t rows = in.size(0);
  std::vector<int64_t> all_rows(static_cast<size_t>(size_));
  MPI_CHECK(MPI_Allgather(&rows, 1, MPI_INT64_T, all_rows.data(), 1, MPI_INT64_T, comm_));
  std::vector<int> counts(all_rows.size()), displs(all_rows.size());
  int64_t total = 0;
  for (size_t r = 0; r < all_rows.size(); ++r) {
    counts[r] = mpi_count(all_rows[r] * row, "all_gather_v");
    displs[r] = mpi_count(total * row, "all_gather_v");
    total += all_rows[r];
  }
  torch::Tensor out = torch::empty(with_rows(in, total), in.options());
  MPI_CHECK(MPI_Allgatherv(in.data_ptr(), counts[static_cast<size_t>(rank_)], MPI_BYTE,
                           out.data_ptr(), counts.data(), displs.data(), MPI_BYTE, comm_));
  return out;
}

torch::Tensor MpiCommunicator::reduce_scatter(const torch::Tensor& t) {
  const torch::Tensor in = t.contiguous();
  check_cpu_contiguous(in, "reduce_scatter");
  MART_CHECK(in.dim() > 0 && in.size(0) % size_ == 0, "reduce_scatter: dim 0 (",
             in.dim() > 0 ? in.size(0) : 0, ") must split into ", size_, " equal chunks");
  torch::Tensor out = torch::empty(with_rows(in, in.size(0) / size_), in.options());
  MPI_CHECK(MPI_Reduce_scatter_block(in.data_ptr(), out.data_ptr(),
                                     mpi_count(out.numel(), "reduce_scatter"),
                                     mpi_datatype(in.scalar_type()), MPI_SUM, comm_));
  return out;
}

void MpiCommunicator::broadcast(torch::Tensor& t, int root) {
  check_cpu_contiguous(t, "broadcast");
  MPI_CHECK(MPI_Bcast(t.data_ptr(), mpi_count(t.nbytes(), "broadcast"), MPI_BYTE, root, comm_));
}

void MpiCommunicator::barrier() { MPI_CHECK(MPI_Barrier(comm_)); }

}  // namespace mart::dist
