#include "mart/dist/nccl_communicator.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <deque>
#include <exception>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

#include "mart/core/cuda_check.h"
#include "mart/core/error.h"
#include "mart/core/mpi_check.h"

#if defined(MART_TORCH_CUDA)
#include <c10/cuda/CUDAStream.h>
#endif

namespace mart::dist {

namespace {

using Clock = std::chrono::steady_clock;

// The stream LibTorch queues this rank's kernels on: the collectives wait for it and it waits for
// them, through events (never by stalling the host).
cudaStream_t compute_stream(int device) {
#if defined(MART_TORCH_CUDA)
  return c10::cuda::getCurrentCUDAStream(static_cast<c10::DeviceIndex>(device)).stream();
#else
  (void)device;  // a LibTorch without CUDA queues nothing on a GPU; mart's own work uses the legacy stream
  return cudaStreamLegacy;
#endif
}

// One collective in flight: `ready` on the compute stream (its inputs are written), `start` and
// `done` on the NCCL stream (timing events: the device time of the collective itself).
struct Pending {
  explicit Pending(const char* name) : op(name), launched(Clock::now()) {
    CUDA_CHECK(cudaEventCreateWithFlags(&ready, cudaEventDisableTiming));
    CUDA_CHECK(cudaEventCreate(&start));
    CUDA_CHECK(cudaEventCreate(&done));
  }
  ~Pending() {  // not checked: a destructor must not throw
    cudaEventDestroy(ready);
    cudaEventDestroy(start);
    cudaEventDestroy(done);
  }
  Pending(const Pending&) = delete;
  Pending& operator=(const Pending&) = delete;
  const char* op;
  Clock::time_point launched;
  cudaEvent_t ready = nullptr, start = nullptr, done = nullptr;
};

double env_seconds(const char* name, double fallback) {
  const char* v = std::getenv(name);
  if (!v || !*v) return fallback;
  char* end = nullptr;
  const double s = std::strtod(v, &end);
  if (end == v || *end != '\0' || !(s > 0))
    MART_CONFIG_ERROR(name, "='", v, "' is not a positive number of seconds");
  return s;
}

}  // namespace

struct NcclCommunicator::State {
  ncclComm_t comm = nullptr;
  cudaStream_t stream = nullptr;  // non-blocking: runs beside the compute stream, ordered by events
  double timeout_s = 600;
  std::mutex mutex;
  std::condition_variable wake;
  std::deque<std::shared_ptr<Pending>> in_flight;  // launch order; the watchdog retires them
  double device_s = 0;                             // device time of retired collectives
  bool stop = false, aborted = false;
  std::string failure;        // set once by the watchdog; every later call throws it
  bool failure_seen = false;  // the main thread threw it
  std::thread watchdog;
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

// An all-reduce started during backward. wait() makes the compute stream wait for it (the
// gradients are read there next); the host goes on.
class NcclWork final : public Work {
 public:
  explicit NcclWork(std::function<void()> join) : join_(std::move(join)) {}
  void wait() override { join_(); }

 private:
  std::function<void()> join_;  // holds the collective's events alive
};

}  // namespace

NcclCommunicator::NcclCommunicator(const World& world)
    : state_(std::make_unique<State>()), mpi_comm_(world.comm()), rank_(world.rank()),
      size_(world.size()) {
  // The NCCL mart was compiled against must be the one the loader found (LibTorch loads its own).
  int loaded = 0;
  NCCL_CHECK(ncclGetVersion(&loaded));
  const std::string mismatch = nccl_version_mismatch(NCCL_VERSION_CODE, loaded);
  if (!mismatch.empty()) MART_CONFIG_ERROR(mismatch);
  int devices = 0;
  CUDA_CHECK(cudaGetDeviceCount(&devices));
  device_ = gpu_for_local_rank(world.local_rank(), world.local_size(), devices);
  state_->timeout_s = env_seconds("MART_NCCL_TIMEOUT_S", 600);
  CUDA_CHECK(cudaSetDevice(device_));
  ncclUniqueId id{};
  if (rank_ == 0) NCCL_CHECK(ncclGetUniqueId(&id));
  MPI_CHECK(MPI_Bcast(&id, static_cast<int>(sizeof(id)), MPI_BYTE, 0, mpi_comm_));
  NCCL_CHECK(ncclCommInitRank(&state_->comm, size_, id, rank_));
  CUDA_CHECK(cudaStreamCreateWithFlags(&state_->stream, cudaStreamNonBlocking));
  state_->watchdog = std::thread([this] { watch(); });
}

NcclCommunicator::~NcclCommunicator() {
  // Not checked: a destructor must not throw.
  {
    std::lock_guard<std::mutex> lock(state_->mutex);
    state_->stop = true;
  }
  state_->wake.notify_all();
  if (state_->watchdog.joinable()) state_->watchdog.join();
  cudaSetDevice(device_);
  // Leaving on an exception (or after a failure) means a peer may never arrive: abort, which
  // ends our pending collectives, instead of destroy, which waits for them.
  const bool abort = state_->aborted || !state_->failure.empty() || std::uncaught_exceptions() > 0;
  if (state_->comm && !state_->aborted) {
    if (abort)
      ncclCommAbort(state_->comm);
    else
      ncclCommDestroy(state_->comm);
  }
  state_->in_flight.clear();
  if (state_->stream) cudaStreamDestroy(state_->stream);
}

// The watchdog: retires finished collectives (adding their device time), and on an NCCL async
// error, a CUDA error or a collective older than the deadline aborts the communicator, which
// unblocks every kernel of it, so that the main thread's next call throws instead of hanging.
void NcclCommunicator::watch() {
  cudaSetDevice(device_);
  State& s = *state_;
  std::unique_lock<std::mutex> lock(s.mutex);
  Clock::time_point failed_at{};
  while (!s.stop) {
    s.wake.wait_for(lock, std::chrono::milliseconds(20));
    if (!s.failure.empty()) {
      // The main thread gets the error at its next call; if it never comes (blocked outside
      // mart, e.g. in a host sync), end the process so the launcher takes the job down.
      if (!s.failure_seen && Clock::now() - failed_at > std::chrono::seconds(60)) {
        spdlog::critical("rank {}: {}; the main thread did not return in 60 s: exiting", rank_, s.failure);
        std::_Exit(70);
      }
      continue;
    }
    std::string why = retire_locked();
    if (why.empty() && !s.in_flight.empty()) {
      const auto& oldest = *s.in_flight.front();
      const double age = std::chrono::duration<double>(Clock::now() - oldest.launched).count();
      ncclResult_t async = ncclSuccess;
      const ncclResult_t rc = ncclCommGetAsyncError(s.comm, &async);
      if (rc != ncclSuccess)
        why = std::string("ncclCommGetAsyncError failed: ") + ncclGetErrorString(rc);
      else if (async != ncclSuccess)
        why = std::string("NCCL reported an asynchronous error during ") + oldest.op + ": " +
              ncclGetErrorString(async) + " (a peer rank died, or the network failed)";
      else if (age > s.timeout_s)
        why = std::string(oldest.op) + " did not finish within MART_NCCL_TIMEOUT_S=" +
              std::to_string(static_cast<long>(s.timeout_s)) +
              " s: a peer rank died or hangs (its log says why); raise MART_NCCL_TIMEOUT_S if a rank is "
              "legitimately that slow";
    }
    if (!why.empty()) {
      s.failure = "rank " + std::to_string(rank_) + ": " + why;
      failed_at = Clock::now();
      spdlog::error("{}: aborting the NCCL communicator", s.failure);
      ncclCommAbort(s.comm);
      s.aborted = true;
    }
  }
}

// Drops finished collectives from the front of the queue, adding their device time; a CUDA error
// on one of them is returned as the reason to abort.
std::string NcclCommunicator::retire_locked() {
  State& s = *state_;
  while (!s.in_flight.empty()) {
    const Pending& p = *s.in_flight.front();
    const cudaError_t rc = cudaEventQuery(p.done);
    if (rc == cudaErrorNotReady) return "";
    if (rc != cudaSuccess) return std::string("CUDA error after ") + p.op + ": " + cudaGetErrorString(rc);
    float ms = 0;
    if (cudaEventElapsedTime(&ms, p.start, p.done) == cudaSuccess) s.device_s += ms / 1e3;
    s.in_flight.pop_front();
  }
  return "";
}

void NcclCommunicator::throw_if_failed() {
  std::lock_guard<std::mutex> lock(state_->mutex);
  if (state_->failure.empty()) return;
  state_->failure_seen = true;
  MART_FAIL(state_->failure, "; see every rank's log for the first error");
}

// Every collective: the NCCL stream waits (on the GPU) for what the compute stream queued so far,
// runs the collective and marks its end; the watchdog watches it from then on.
template <typename Call>
std::shared_ptr<void> NcclCommunicator::launch(const char* op, Call&& call) {
  throw_if_failed();
  CUDA_CHECK(cudaSetDevice(device_));
  auto p = std::make_shared<Pending>(op);
  CUDA_CHECK(cudaEventRecord(p->ready, compute_stream(device_)));
  CUDA_CHECK(cudaStreamWaitEvent(state_->stream, p->ready, 0));
  CUDA_CHECK(cudaEventRecord(p->start, state_->stream));
  NCCL_CHECK(call(state_->comm, state_->stream));
  CUDA_CHECK(cudaEventRecord(p->done, state_->stream));
  {
    std::lock_guard<std::mutex> lock(state_->mutex);
    state_->in_flight.push_back(p);
  }
  return p;
}

// The compute stream waits (on the GPU) for the collective: later kernels see its result, and
// memory the caching allocator hands out again on that stream is not reused under NCCL's feet.
void NcclCommunicator::join(const std::shared_ptr<void>& pending) {
  throw_if_failed();
  const auto& p = *static_cast<const Pending*>(pending.get());
  CUDA_CHECK(cudaSetDevice(device_));
  CUDA_CHECK(cudaStreamWaitEvent(compute_stream(device_), p.done, 0));
}

// The host waits for everything queued on the NCCL stream, polling so that the watchdog's
// verdict (deadline, async error) ends the wait with an exception instead of a hang.
void NcclCommunicator::synchronize() {
  CUDA_CHECK(cudaSetDevice(device_));
  for (;;) {
    throw_if_failed();
    const cudaError_t rc = cudaStreamQuery(state_->stream);
    if (rc == cudaSuccess) return;
    if (rc != cudaErrorNotReady) CUDA_CHECK(rc);
    std::this_thread::sleep_for(std::chrono::microseconds(50));
  }
}

double NcclCommunicator::take_device_seconds() {
  std::lock_guard<std::mutex> lock(state_->mutex);
  if (state_->failure.empty()) retire_locked();
  const double s = state_->device_s;
  state_->device_s = 0;
  return s;
}

void NcclCommunicator::all_reduce(torch::Tensor& t) {
  check_cuda_contiguous(t, device_, "all_reduce");
  join(launch("all_reduce", [&](ncclComm_t c, cudaStream_t st) {
    return ncclAllReduce(t.data_ptr(), t.data_ptr(), static_cast<size_t>(t.numel()),
                         nccl_datatype(t.scalar_type()), ncclSum, c, st);
  }));
}

std::unique_ptr<Work> NcclCommunicator::all_reduce_async(torch::Tensor& t) {
  check_cuda_contiguous(t, device_, "all_reduce");
  auto p = launch("all_reduce (gradient bucket)", [&](ncclComm_t c, cudaStream_t st) {
    return ncclAllReduce(t.data_ptr(), t.data_ptr(), static_cast<size_t>(t.numel()),
                         nccl_datatype(t.scalar_type()), ncclSum, c, st);
  });
  return std::make_unique<NcclWork>([this, p] { join(p); });
}

torch::Tensor NcclCommunicator::all_gather(const torch::Tensor& t) {
  const torch::Tensor in = t.contiguous();
  check_cuda_contiguous(in, device_, "all_gather");
  torch::Tensor out = torch::empty(with_rows(in, in.size(0) * size_), in.options());
  // Gathering moves bytes and sums nothing, so every dtype goes as bytes.
  join(launch("all_gather", [&](ncclComm_t c, cudaStream_t st) {
    return ncclAllGather(in.data_ptr(), out.data_ptr(), in.nbytes(), ncclUint8, c, st);
  }));
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
  join(launch("reduce_scatter", [&](ncclComm_t c, cudaStream_t st) {
    return ncclReduceScatter(in.data_ptr(), out.data_ptr(), static_cast<size_t>(out.numel()),
                             nccl_datatype(in.scalar_type()), ncclSum, c, st);
  }));
  return out;
}

void NcclCommunicator::broadcast(torch::Tensor& t, int root) {
  check_cuda_contiguous(t, device_, "broadcast");
  join(launch("broadcast", [&](ncclComm_t c, cudaStream_t st) {
    return ncclBroadcast(t.data_ptr(), t.data_ptr(), t.nbytes(), ncclUint8, root, c, st);
  }));
}

void NcclCommunicator::barrier() {
  // Our own GPU work first (with the watchdog's deadline), then the host-side meeting.
  synchronize();
  MPI_CHECK(MPI_Barrier(mpi_comm_));
}

}  // namespace mart::dist
