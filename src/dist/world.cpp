#include "mart/dist/world.h"

#include <algorithm>
#include <cstdlib>
#include <limits>
#include <string>
#include <thread>
#include <sstream>

#include "mart/core/error.h"
#include "mart/core/hash.h"
#include "mart/core/mpi_check.h"

namespace mart::dist {

World::World(int* argc, char*** argv) {
  int initialized = 0;
  MPI_CHECK(MPI_Initialized(&initialized));
  owns_mpi_ = !initialized;
  if (!initialized) {
    // SERIALIZED: the loader thread never calls MPI, but a helper thread may hand work to MPI
    // under a lock (e.g. progress), and NCCL's bootstrap runs on the main thread.
    int provided = 0;
    MPI_CHECK(MPI_Init_thread(argc, argv, MPI_THREAD_SERIALIZED, &provided));
  }
  // Return codes instead of aborting inside MPI, so MPI_CHECK can say which call failed.
  MPI_CHECK(MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN));
  MPI_CHECK(MPI_Comm_rank(MPI_COMM_WORLD, &rank_));
  MPI_CHECK(MPI_Comm_size(MPI_COMM_WORLD, &size_));
  MPI_CHECK(MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, rank_, MPI_INFO_NULL, &node_comm_));
  MPI_CHECK(MPI_Comm_rank(node_comm_, &local_rank_));
  MPI_CHECK(MPI_Comm_size(node_comm_, &local_size_));
}

World::~World() {
  if (node_comm_ != MPI_COMM_NULL) MPI_Comm_free(&node_comm_);
  int finalized = 0;
  MPI_Finalized(&finalized);
  if (owns_mpi_ && !finalized) MPI_Finalize();
}

void World::barrier() const { MPI_CHECK(MPI_Barrier(MPI_COMM_WORLD)); }

bool World::any(bool flag) const {
  int in = flag ? 1 : 0, out = 0;
  MPI_CHECK(MPI_Allreduce(&in, &out, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD));
  return out != 0;
}

std::vector<uint64_t> World::all_gather(uint64_t v) const {
  std::vector<uint64_t> all(static_cast<size_t>(size_));
  MPI_CHECK(MPI_Allgather(&v, 1, MPI_UINT64_T, all.data(), 1, MPI_UINT64_T, MPI_COMM_WORLD));
  return all;
}

std::vector<std::string> World::all_gather_bytes(const std::string& mine) const {
  return all_gather_bytes(mine, static_cast<uint64_t>(std::numeric_limits<int>::max()));
}

std::vector<std::string> World::all_gather_bytes(const std::string& mine, uint64_t max_message) const {
  // Sizes as 64-bit: MPI counts are int, so more than 2 GiB in all goes rank by rank in pieces.
  const auto sizes = all_gather(static_cast<uint64_t>(mine.size()));
  uint64_t total = 0;
  for (auto n : sizes) total += n;
  std::vector<std::string> out(static_cast<size_t>(size_));
  if (total <= max_message) {
    std::vector<int> counts(static_cast<size_t>(size_)), displs(static_cast<size_t>(size_));
    int offset = 0;
    for (size_t r = 0; r < counts.size(); ++r) counts[r] = static_cast<int>(sizes[r]), displs[r] = offset, offset += counts[r];
    std::string all(static_cast<size_t>(total), '\0');
    MPI_CHECK(MPI_Allgatherv(mine.data(), static_cast<int>(mine.size()), MPI_CHAR, all.data(), counts.data(),
                             displs.data(), MPI_CHAR, MPI_COMM_WORLD));
    for (size_t r = 0; r < counts.size(); ++r)
      out[r] = all.substr(static_cast<size_t>(displs[r]), static_cast<size_t>(counts[r]));
    return out;
  }
  const uint64_t piece = std::max<uint64_t>(1, std::min<uint64_t>(max_message, uint64_t{1} << 30));
  for (int r = 0; r < size_; ++r) {
    std::string& buf = out[static_cast<size_t>(r)];
    buf = r == rank_ ? mine : std::string(static_cast<size_t>(sizes[static_cast<size_t>(r)]), '\0');
    for (uint64_t at = 0; at < buf.size(); at += piece) {
      const int n = static_cast<int>(std::min<uint64_t>(piece, buf.size() - at));
      MPI_CHECK(MPI_Bcast(buf.data() + at, n, MPI_CHAR, r, MPI_COMM_WORLD));
    }
  }
  return out;
}

int threads_per_rank(const World& world, int configured) {
  if (configured > 0) return configured;
  return std::max(1, static_cast<int>(std::thread::hardware_concurrency()) / world.local_size());
}

void World::abort(int code) const {
  MPI_Abort(MPI_COMM_WORLD, code);
  std::_Exit(code);  // MPI_Abort does not return; this is for a broken MPI
}

std::string check_slurm_launch(int world_size, const std::function<const char*(const char*)>& env) {
  // SLURM_PROCID is set for tasks that srun started; the step's task count is what MPI should see.
  const char* procid = env("SLURM_PROCID");
  const char* ntasks = env("SLURM_STEP_NUM_TASKS");
  if (!ntasks) ntasks = env("SLURM_NTASKS");
  if (!procid || !ntasks) return "";
  const long n = std::strtol(ntasks, nullptr, 10);
  // mpirun inside an allocation starts one daemon per node through srun; its ranks see the
  // daemon's step (fewer tasks than ranks). Only a single-rank world among several tasks is
  // the broken launch.
  if (world_size == 1 && n > 1) {
    std::ostringstream os;
    os << "MPI sees 1 rank but Slurm started " << n << " tasks: mart was started as " << n
       << " separate single-rank jobs. Use srun --mpi=pmix (or mpirun) so the ranks form one job.";
    return os.str();
  }
  return "";
}

int gpu_for_local_rank(int local_rank, int local_size, int devices) {
  MART_CHECK(local_rank >= 0 && local_rank < local_size, "local rank ", local_rank, " outside 0..", local_size - 1);
  if (devices <= 0)
    MART_CONFIG_ERROR("train.device = cuda but this node shows no GPU: ask Slurm for them (--gpus-per-node=G) "
                      "and check CUDA_VISIBLE_DEVICES, or train on --train.device cpu");
  if (local_size > devices)
    MART_CONFIG_ERROR(local_size, " ranks run on this node but it shows only ", devices, " GPU(s) (CUDA_VISIBLE_DEVICES=",
                      std::getenv("CUDA_VISIBLE_DEVICES") ? std::getenv("CUDA_VISIBLE_DEVICES") : "unset",
                      "): mart runs one rank per GPU. Start ", devices, " rank(s) per node (sbatch --ntasks-per-node=",
                      devices, " --gpus-per-node=", devices, ", or mpirun -np ", devices,
                      " on one node); with --gpus-per-task each rank sees one GPU and NCCL loses peer access");
  return local_rank;
}

std::string nccl_version_string(int code) {
  const bool old_code = code < 20900;  // NCCL < 2.9 packed minor and patch into one digit each
  const int major = old_code ? code / 1000 : code / 10000;
  const int minor = old_code ? code % 1000 / 100 : code % 10000 / 100;
  const int patch = code % 100;
  return std::to_string(major) + "." + std::to_string(minor) + "." + std::to_string(patch);
}

std::string nccl_version_mismatch(int built, int loaded) {
  if (built == loaded) return "";
  return "mart was built against NCCL " + nccl_version_string(built) + " but NCCL " + nccl_version_string(loaded) +
         " is loaded (another libnccl.so.2 comes first on LD_LIBRARY_PATH or in the binary's RUNPATH). "
         "Rebuild mart against the NCCL that LibTorch loads (cmake finds the one next to a pip-installed "
         "PyTorch: configure with -DTorch_DIR from python3 -c 'import torch;print(torch.utils.cmake_prefix_path)'), "
         "or put that NCCL's lib folder first on LD_LIBRARY_PATH";
}

void check_same_config(const World& world, uint64_t config_hash) {
  const auto all = world.all_gather(config_hash);
  std::ostringstream diff;
  bool differ = false;
  for (size_t r = 0; r < all.size(); ++r)
    if (all[r] != all[0]) {
      differ = true;
      diff << " rank " << r << " has " << hex64(all[r]) << ";";
    }
  if (differ)
    MART_CONFIG_ERROR("the ranks resolved different configurations (rank 0 has ", hex64(all[0]), ";",
                      diff.str(),
                      " give every rank the same --config file and flags, and make sure the file is "
                      "on a shared filesystem");
}

}  // namespace mart::dist
