// CUDA core: device memory and explicit transfers. Skips cleanly without a GPU.
#include <catch2/catch.hpp>

#include <ambiseg/ambiseg.hpp>
#include <ambiseg/core/cuda_context.hpp>
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

TEST_CASE("device tensors come from the process-wide cache and outlive their context", "[cuda]") {
  AMBISEG_REQUIRE_GPU();
  auto& cache = cuda_tensor_cache();
  cache.release_cached();
  const auto before = cache.stats();
  auto host = tensor<float>::from({4}, {1, 2, 3, 4});
  {
    tensor<float, cuda> a(shape{1000});
    a.zero();
  }
  const auto after_free = cache.stats();
  CHECK(after_free.device_allocations == before.device_allocations + 1);
  CHECK(after_free.bytes_cached >= 4096);
  // the same class again: served from the cache once the memset that used it is done
  tensor<float, cuda> b(shape{900});
  CHECK(cache.stats().device_allocations == after_free.device_allocations);
  CHECK(cache.stats().cache_hits == after_free.cache_hits + 1);

  // a tensor made while a context was current, used on its stream, freed after the
  // context is gone: nothing belongs to the context
  tensor<float, cuda> survivor;
  {
    cuda_context ctx;
    cuda_context_scope scope(ctx);
    survivor = tensor<float, cuda>(shape{4});
    copy_to_device<float>(host.cview(), survivor.view());
  }
  tensor<float> back(shape{4});
  copy_to_host<float>(survivor.cview(), back.view());
  for (int i = 0; i < 4; ++i) CHECK(back[i] == host[i]);
}
