// CUDA core: device memory and explicit transfers. Skips cleanly without a GPU.
#include <catch2/catch.hpp>

#include <ambiseg/ambiseg.hpp>
#include <ambiseg/core/cuda_memory.hpp>

#include <iostream>

using namespace ambiseg;

#define AMBISEG_REQUIRE_GPU()                                             \
  do {                                                                    \
    if (!cuda_available()) {                                              \
      WARN("no CUDA device present: CUDA test skipped");                  \
      return;                                                             \
    }                                                                     \
  } while (0)

TEST_CASE("device tensors round-trip through explicit copies", "[cuda]") {
  AMBISEG_REQUIRE_GPU();
  INFO("device: " << cuda_device_name());
  auto host = tensor<float>::from({2, 3}, {1, 2, 3, 4, 5, 6});
  tensor<float, cuda> dev(shape{2, 3});
  copy_to_device<float>(host.cview(), dev.view());
  tensor<float, cuda> dev2 = dev.clone();
  tensor<float> back(shape{2, 3});
  copy_to_host<float>(dev2.cview(), back.view());
  for (int i = 0; i < 6; ++i) CHECK(back[i] == host[i]);
  tensor<float> wrong(shape{3, 2});
  CHECK_THROWS_AS(copy_to_host<float>(dev.cview(), wrong.view()), shape_error);
}
