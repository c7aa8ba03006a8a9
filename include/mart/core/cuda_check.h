#pragma once
// CUDA_CHECK / NCCL_CHECK: only for sources built when CUDA and NCCL are found.
#include <cuda_runtime.h>
#include <nccl.h>

#include "mart/core/error.h"

#define CUDA_CHECK(call)                                                                     \
  do {                                                                                       \
    cudaError_t mart_cuda_rc_ = (call);                                                      \
    if (mart_cuda_rc_ != cudaSuccess)                                                        \
      ::mart::throw_error("CUDA call failed: " #call, cudaGetErrorString(mart_cuda_rc_),     \
                          __FILE__, __LINE__, "is a GPU visible (CUDA_VISIBLE_DEVICES, --gpus-per-node)?"); \
  } while (0)

#define NCCL_CHECK(call)                                                                     \
  do {                                                                                       \
    ncclResult_t mart_nccl_rc_ = (call);                                                     \
    if (mart_nccl_rc_ != ncclSuccess)                                                        \
      ::mart::throw_error("NCCL call failed: " #call, ncclGetErrorString(mart_nccl_rc_),     \
                          __FILE__, __LINE__, "run with NCCL_DEBUG=INFO for NCCL's own account"); \
  } while (0)
