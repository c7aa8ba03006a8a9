#pragma once
// The MPI world as an RAII object: MPI_Init_thread in the constructor, MPI_Finalize in the
// destructor. Ranks, size and the node-local rank (from MPI_Comm_split_type) for GPU choice.
#include <mpi.h>

#include <cstdint>
#include <cstring>
#include <functional>
#include <string>
#include <type_traits>
#include <vector>

namespace mart::dist {

class World {
 public:
  World(int* argc, char*** argv);
  ~World();
  World(const World&) = delete;
  World& operator=(const World&) = delete;

  int rank() const { return rank_; }
  int size() const { return size_; }
  int local_rank() const { return local_rank_; }
  int local_size() const { return local_size_; }
  bool is_root() const { return rank_ == 0; }
  MPI_Comm comm() const { return MPI_COMM_WORLD; }

  void barrier() const;
  // True on every rank when `flag` is true on any rank: a decision all ranks take together.
  bool any(bool flag) const;
  std::vector<uint64_t> all_gather(uint64_t v) const;
  // Every rank's bytes (any length), in rank order, on every rank.
  std::vector<std::string> all_gather_bytes(const std::string& mine) const;
  // The same; above `max_message` bytes in all (MPI counts are int: 2 GiB) every rank's bytes go
  // out as broadcasts of at most min(max_message, 1 GiB). Tests pass a small limit.
  std::vector<std::string> all_gather_bytes(const std::string& mine, uint64_t max_message) const;
  // Ends every rank of the job with `code`: the way out of an error that only one rank saw.
  [[noreturn]] void abort(int code) const;

 private:
  int rank_ = 0, size_ = 1, local_rank_ = 0, local_size_ = 1;
  MPI_Comm node_comm_ = MPI_COMM_NULL;
  bool owns_mpi_ = false;  // finalize only what we initialized
};

// Every rank's `mine`, concatenated in rank order, on every rank. T is trivially copyable (plain
// numbers and structs of them): its bytes travel.
template <typename T>
std::vector<T> all_gather_values(const World& world, const std::vector<T>& mine) {
  static_assert(std::is_trivially_copyable_v<T>, "all_gather_values sends bytes: T must be trivially copyable");
  std::string bytes(mine.size() * sizeof(T), '\0');
  if (!mine.empty()) std::memcpy(bytes.data(), mine.data(), bytes.size());
  std::vector<T> all;
  for (const std::string& part : world.all_gather_bytes(bytes)) {
    const size_t at = all.size();
    all.resize(at + part.size() / sizeof(T));
    if (!part.empty()) std::memcpy(static_cast<void*>(all.data() + at), part.data(), part.size());
  }
  return all;
}

// Intra-op threads for one rank: `configured` when positive, else the node's cores shared by its
// ranks (at least 1). LibTorch starts with one thread whatever the machine, so stages set this.
int threads_per_rank(const World& world, int configured);

// Under Slurm, srun without an MPI plugin starts N separate single-rank jobs; each would
// silently train alone. Returns an error text for that case, empty when the launch is sound.
// `env` reads an environment variable (nullptr when unset), so tests can feed their own.
std::string check_slurm_launch(int world_size, const std::function<const char*(const char*)>& env);

// The GPU that rank `local_rank` of the node's `local_size` ranks drives, with `devices` GPUs
// visible: its local rank. Throws ConfigError when the node shows no GPU, or more ranks than
// GPUs (two ranks on one GPU end in NCCL's "Duplicate GPU detected"), naming the Slurm/mpirun fix.
int gpu_for_local_rank(int local_rank, int local_size, int devices);

// Empty when the NCCL version mart was compiled against (`built`, NCCL_VERSION_CODE) equals the
// one loaded at run time (`loaded`, ncclGetVersion); otherwise the error text with both versions.
std::string nccl_version_mismatch(int built, int loaded);
// "2.21.5" for NCCL's version code (major*10000 + minor*100 + patch; major*1000 + ... before 2.9).
std::string nccl_version_string(int code);

// All ranks compare a hash of their resolved configuration; throws ConfigError on every rank
// (naming the ranks that differ) when they are not all equal.
void check_same_config(const World& world, uint64_t config_hash);

}  // namespace mart::dist
