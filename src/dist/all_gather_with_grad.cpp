#include "mart/dist/all_gather_with_grad.h"

#include <cstdint>

#include "mart/core/error.h"

namespace mart::dist {

namespace {
// The communicator travels through the autograd context as an integer: saved_data holds
// IValues, and a raw pointer is not one. The communicator outlives the step by contract.
constexpr const char* kComm = "comm";

Communicator* comm_of(torch::autograd::AutogradContext* ctx) {
  return reinterpret_cast<Communicator*>(static_cast<intptr_t>(ctx->saved_data[kComm].toInt()));
}
}  // namespace

torch::Tensor AllGatherWithGrad::forward(torch::autograd::AutogradContext* ctx,
                                         const torch::Tensor& x, Communicator* comm) {
  MART_CHECK(comm != nullptr, "AllGatherWithGrad: no communicator");
  MART_CHECK(x.dim() >= 1, "AllGatherWithGrad: x must have a batch dimension");
  ctx->saved_data[kComm] = static_cast<int64_t>(reinterpret_cast<intptr_t>(comm));
  return comm->all_gather(x);
}

torch::autograd::variable_list AllGatherWithGrad::backward(torch::autograd::AutogradContext* ctx,
                                                           torch::autograd::variable_list grads) {
  // Each rank holds d(its loss)/d(all rows); the owner of rows r needs the sum over ranks.
  torch::Tensor grad_x = comm_of(ctx)->reduce_scatter(grads[0].contiguous());
  return {grad_x, torch::Tensor()};
}

torch::Tensor all_gather_with_grad(const torch::Tensor& x, Communicator& comm) {
  return AllGatherWithGrad::apply(x, &comm);
}

}  // namespace mart::dist
