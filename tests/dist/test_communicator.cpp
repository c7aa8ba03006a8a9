// The MPI backend's collectives on 2 ranks: values, shapes, dtypes, and the factory's choice.
#include <gtest/gtest.h>

#include "mart/core/error.h"
#include "mart/dist/communicator.h"
#include "mart/dist/mpi_communicator.h"

namespace {

using mart::dist::Communicator;

struct Comm : ::testing::Test {
  int argc = 0;
  char** argv = nullptr;
  mart::dist::World world{&argc, &argv};  // adopts the MPI that mpi_main started
  std::unique_ptr<Communicator> comm = mart::dist::make_communicator(world, torch::kCPU);
  int r = world.rank();
};

TEST_F(Comm, FactoryPicksMpiForCpu) {
  ASSERT_EQ(comm->backend(), mart::dist::Backend::kMpi);
  EXPECT_EQ(comm->size(), 2);
  EXPECT_EQ(comm->rank(), r);
  EXPECT_EQ(comm->device(), torch::Device(torch::kCPU));
}

TEST_F(Comm, AllReduceSumsInPlaceForEachDtype) {
  for (auto dtype : {torch::kFloat32, torch::kFloat64, torch::kInt64}) {
    torch::Tensor t = torch::arange(6, torch::TensorOptions().dtype(dtype)).reshape({2, 3}) * (r + 1);
    comm->all_reduce(t);
    // rank 0 holds arange, rank 1 holds 2*arange: the sum is 3*arange on both.
    EXPECT_TRUE(torch::equal(t, torch::arange(6, t.options()).reshape({2, 3}) * 3)) << dtype;
  }
}

TEST_F(Comm, AllReduceAsyncSumsAfterWait) {
  torch::Tensor t = torch::full({1000}, static_cast<double>(r + 1), torch::kFloat64);
  auto work = comm->all_reduce_async(t);
  work->wait();
  EXPECT_TRUE(torch::equal(t, torch::full({1000}, 3.0, torch::kFloat64)));
}

TEST_F(Comm, AllGatherConcatenatesInRankOrder) {
  torch::Tensor t = torch::full({2, 3}, static_cast<float>(10 * r));
  const torch::Tensor g = comm->all_gather(t);
  ASSERT_EQ(g.sizes(), (std::vector<int64_t>{4, 3}));
  EXPECT_TRUE(torch::equal(g.narrow(0, 0, 2), torch::zeros({2, 3})));
  EXPECT_TRUE(torch::equal(g.narrow(0, 2, 2), torch::full({2, 3}, 10.0f)));
}

TEST_F(Comm, AllGatherTakesNonContiguousInput) {
  const torch::Tensor t = (torch::arange(6, torch::kFloat32).reshape({2, 3}) + 100 * r).t();
  const torch::Tensor g = comm->all_gather(t);
  const torch::Tensor base = torch::arange(6, torch::kFloat32).reshape({2, 3}).t();
  EXPECT_TRUE(torch::equal(g, torch::cat({base, base + 100})));
}

TEST_F(Comm, AllGatherVHandlesDifferentRowCounts) {
  // rank 0 sends 1 row, rank 1 sends 3 rows.
  const int64_t rows = r == 0 ? 1 : 3;
  const torch::Tensor t = torch::full({rows, 2}, static_cast<int64_t>(r + 7), torch::kInt64);
  const torch::Tensor g = comm->all_gather_v(t);
  const torch::Tensor want = torch::cat({torch::full({1, 2}, int64_t{7}, torch::kInt64),
                                         torch::full({3, 2}, int64_t{8}, torch::kInt64)});
  EXPECT_TRUE(torch::equal(g, want));
}

TEST_F(Comm, ReduceScatterSumsAndKeepsOwnChunk) {
  // Both ranks send [4, 2] = rows 0..3 times (r+1); the sum is 3 * rows, rank r keeps rows 2r, 2r+1.
  const torch::Tensor t = torch::arange(8, torch::kFloat32).reshape({4, 2}) * (r + 1);
  const torch::Tensor out = comm->reduce_scatter(t);
  const torch::Tensor want = (torch::arange(8, torch::kFloat32).reshape({4, 2}) * 3).narrow(0, 2 * r, 2);
  EXPECT_TRUE(torch::equal(out, want));
}

TEST_F(Comm, ReduceScatterRejectsUnevenRows) {
  EXPECT_THROW(comm->reduce_scatter(torch::ones({3, 2})), mart::Error);
}

TEST_F(Comm, BroadcastCopiesRootToEveryRank) {
  for (int root : {0, 1}) {
    torch::Tensor t = torch::full({5}, static_cast<float>(r + 1));
    comm->broadcast(t, root);
    EXPECT_TRUE(torch::equal(t, torch::full({5}, static_cast<float>(root + 1))));
  }
  torch::Tensor flags = torch::tensor({r == 0, r == 1}, torch::kBool);  // any dtype: bytes
  comm->broadcast(flags, 0);
  EXPECT_TRUE(torch::equal(flags, torch::tensor({true, false}, torch::kBool)));
}

TEST_F(Comm, RejectsWrongDtypeAndLayout) {
  torch::Tensor half = torch::ones({4}, torch::kFloat16);
  EXPECT_THROW(comm->all_reduce(half), mart::Error);
  torch::Tensor strided = torch::ones({4, 4}).t();
  EXPECT_THROW(comm->all_reduce(strided), mart::Error);
  comm->barrier();
}

TEST_F(Comm, DeviceWithNoBackendIsAConfigError) {
  EXPECT_THROW(mart::dist::make_communicator(world, torch::Device(torch::kMeta)), mart::ConfigError);
}

TEST_F(Comm, CudaDeviceWithoutNcclIsAClearConfigError) {
  if (mart::dist::nccl_available()) GTEST_SKIP() << "built with NCCL; the error path is not taken";
  try {
    mart::dist::make_communicator(world, torch::Device(torch::kCUDA, 0));
    ADD_FAILURE() << "a CUDA communicator was made without NCCL";
  } catch (const mart::ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("without NCCL"), std::string::npos) << e.what();
  }
}

}  // namespace
