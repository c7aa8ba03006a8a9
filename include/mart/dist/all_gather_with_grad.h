#pragma once
// All-gather with a gradient: the contrastive loss sees every rank's embeddings (the global
// batch, B = sum of local batches) and the gradient flows back to the rank that owns each row.
//
// forward:  x [b, d] on every rank -> [K*b, d], rank order (K = comm.size()).
// backward: the incoming gradient [K*b, d] is summed over ranks and rank r keeps rows
//           [r*b, (r+1)*b) (a reduce-scatter): every rank's loss that used rank r's rows sends
//           its share back to rank r.
// With the gradient reducer's average over ranks this makes K ranks of batch b exact to one rank
// of batch K*b, whether each rank's loss is the global loss or the mean over its own anchors
// (see docs/dist.md). Every rank's b must be equal.
#include <torch/torch.h>

#include "mart/dist/communicator.h"

namespace mart::dist {

struct AllGatherWithGrad : public torch::autograd::Function<AllGatherWithGrad> {
  static torch::Tensor forward(torch::autograd::AutogradContext* ctx, const torch::Tensor& x,
                               Communicator* comm);
  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads);
};

// all_gather_with_grad(x, comm) == AllGatherWithGrad::apply(x, &comm).
torch::Tensor all_gather_with_grad(const torch::Tensor& x, Communicator& comm);

}  // namespace mart::dist
