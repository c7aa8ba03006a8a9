#include "mart/dist/communicator.h"

#include "mart/core/error.h"
#include "mart/dist/mpi_communicator.h"
#if defined(MART_HAVE_NCCL)
#include "mart/dist/nccl_communicator.h"
#endif

namespace mart::dist {

const char* backend_name(Backend b) { return b == Backend::kNccl ? "nccl" : "mpi"; }

bool nccl_available() {
#if defined(MART_HAVE_NCCL)
  return true;
#else
  return false;
#endif
}

std::unique_ptr<Communicator> make_communicator(const World& world, const torch::Device& device) {
  if (device.is_cpu()) return std::make_unique<MpiCommunicator>(world.comm());
  if (!device.is_cuda())
    MART_CONFIG_ERROR("no communicator for device ", device, ": mart communicates CPU tensors over "
                      "MPI and CUDA tensors over NCCL");
#if defined(MART_HAVE_NCCL)
  return std::make_unique<NcclCommunicator>(world);
#else
  MART_CONFIG_ERROR("device ", device, " needs the NCCL backend, but this mart was built without "
                    "NCCL: rebuild with CUDA and NCCL installed (-DMART_WITH_CUDA=ON, NCCL_HOME "
                    "pointing at NCCL), or train on --device cpu");
#endif
}

}  // namespace mart::dist
