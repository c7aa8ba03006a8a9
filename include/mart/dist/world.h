#pragma once
// The MPI world as an RAII object: MPI_Init_thread in the constructor, MPI_Finalize in the
// destructor. Ranks, size and the node-local rank (from MPI_Comm_split_type) for GPU choice.
#include <mpi.h>

#include <cstdint>
#include <functional>
#include <string>
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

// Intra-op threads for one rank: `configured` when positive, else the node's cores shared by its
// ranks (at least 1). LibTorch starts with one thread whatever the machine, so stages set this.
int threads_per_rank(const World& world, int configured);

// Under Slurm, srun without an MPI plugin starts N separate single-rank jobs; each would
// silently train alone. Returns an error text for that case, empty when the launch is sound.
// `env` reads an environment variable (nullptr when unset), so tests can feed their own.
std::string check_slurm_launch(int world_size, const std::function<const char*(const char*)>& env);

// All ranks compare a hash of their resolved configuration; throws ConfigError on every rank
// (naming the ranks that differ) when they are not all equal.
void check_same_config(const World& world, uint64_t config_hash);

}  // namespace mart::dist
