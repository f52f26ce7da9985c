// The CUDA emulator's own tests: what the kernels rely on (barriers, full-warp shuffles,
// block_sum/block_max over several blocks and block sizes), the bugs it must report
// (uninitialised reads as NaN, copies outside an allocation, a barrier that cannot complete,
// a bad launch configuration), and its cuBLAS and cuDNN arithmetic against direct loops.
// Compiled only into test_cuda_emulated, with AMBISEG_CUDA_EMULATION defined.
#include <catch2/catch.hpp>

#include <ambiseg/core/cuda_context.hpp>
#include <ambiseg/core/cuda_memory.hpp>
#include <ambiseg/core/cuda/launch.cuh>
#include <ambiseg/core/cuda/reductions.cuh>

#include <cmath>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "cuda_emulator/emulator.hpp"

using namespace ambiseg;
using ambiseg_emu::emulation_error;
using Catch::Matchers::Contains;

namespace {

template <class T>
struct device_array {
  T* p = nullptr;
  std::size_t n = 0;
  explicit device_array(std::size_t count) : n(count) {
    REQUIRE(cudaMalloc(reinterpret_cast<void**>(&p), n * sizeof(T)) == cudaSuccess);
  }
  device_array(const device_array&) = delete;
  ~device_array() { (void)cudaFree(p); }
  std::vector<T> get() const {
    std::vector<T> h(n);
    REQUIRE(cudaMemcpy(h.data(), p, n * sizeof(T), cudaMemcpyDeviceToHost) == cudaSuccess);
    return h;
  }
  void set(const std::vector<T>& h) {
    REQUIRE(cudaMemcpy(p, h.data(), n * sizeof(T), cudaMemcpyHostToDevice) == cudaSuccess);
  }
};

// out[t] = the value thread t+1 wrote before the barrier: wrong without a real barrier.
__global__ void rotate_through_shared(int* out) {
  __shared__ int slots[1024];
  const int t = static_cast<int>(threadIdx.x), n = static_cast<int>(blockDim.x);
  slots[t] = 1000 * static_cast<int>(blockIdx.x) + t;
  __syncthreads();
  out[blockIdx.x * blockDim.x + threadIdx.x] = slots[(t + 1) % n];
}

__global__ void shuffles(int* down, int* xor8, int* bcast, int* up) {
  const int t = static_cast<int>(threadIdx.x);
  down[t] = __shfl_down_sync(0xffffffffu, t, 5);
  xor8[t] = __shfl_xor_sync(0xffffffffu, t, 3, 8);
  bcast[t] = __shfl_sync(0xffffffffu, t * 10, 7);
  up[t] = __shfl_up_sync(0xffffffffu, t, 2, 16);
}

template <class T>
__global__ void sums_and_maxima(const T* x, std::int64_t len, T* sums, T* maxima) {
  const T* row = x + static_cast<std::int64_t>(blockIdx.x) * len;
  T s = T(0), m = T(-INFINITY);
  for (std::int64_t j = threadIdx.x; j < len; j += blockDim.x) {
    s += row[j];
    m = fmax(m, row[j]);
  }
  s = gpu::block_sum(s);
  m = gpu::block_max(m);
  const T again = gpu::block_sum(T(1));  // a second call in the same kernel
  if (threadIdx.x == 0) {
    sums[blockIdx.x] = s;
    maxima[blockIdx.x] = m + (again - T(blockDim.x));
  }
}

__global__ void exits_before_barrier(int* out) {
  if (threadIdx.x >= 64) return;
  __syncthreads();
  out[threadIdx.x] = 1;
}
__global__ void half_warp_shuffle(int* out) {
  if (threadIdx.x % 32 >= 16) return;
  out[threadIdx.x] = __shfl_down_sync(0xffffffffu, 1, 1);
}
__global__ void partial_mask(int* out) { out[threadIdx.x] = __shfl_down_sync(0x0000ffffu, 1, 1); }
__global__ void copy_kernel(const float* in, float* out, std::int64_t n) {
  for (std::int64_t i = gpu::global_thread(); i < n; i += gpu::grid_stride()) out[i] = in[i];
}

}  // namespace

TEST_CASE("emulator: the device is present and named", "[cuda][emulator]") {
  CHECK(cuda_available());
  CHECK(cuda_device_name() == "ambiseg CUDA emulator (CPU)");
}

TEST_CASE("emulator: __syncthreads orders shared-memory writes before reads", "[cuda][emulator]") {
  for (unsigned threads : {32u, 256u, 1024u}) {
    device_array<int> out(3 * threads);
    AMBISEG_LAUNCH(3, threads, 0, nullptr, rotate_through_shared)(out.p);
    REQUIRE(cudaGetLastError() == cudaSuccess);
    const auto h = out.get();
    for (unsigned b = 0; b < 3; ++b)
      for (unsigned t = 0; t < threads; ++t)
        REQUIRE(h[b * threads + t] == int(1000 * b + (t + 1) % threads));
  }
}

TEST_CASE("emulator: warp shuffles exchange values as on a GPU", "[cuda][emulator]") {
  device_array<int> down(64), xor8(64), bcast(64), up(64);
  AMBISEG_LAUNCH(1, 64, 0, nullptr, shuffles)(down.p, xor8.p, bcast.p, up.p);
  const auto d = down.get(), x = xor8.get(), b = bcast.get(), u = up.get();
  for (int t = 0; t < 64; ++t) {
    const int lane = t % 32, warp = t - lane;
    CHECK(d[t] == (lane + 5 < 32 ? t + 5 : t));         // beyond the warp: own value
    CHECK(x[t] == warp + (lane ^ 3));                  // within segments of 8
    CHECK(b[t] == (warp + 7) * 10);                    // lane 7 of the own warp
    CHECK(u[t] == (lane % 16 >= 2 ? t - 2 : t));       // segments of 16
  }
}

TEMPLATE_TEST_CASE("emulator: block_sum and block_max over several blocks and block sizes",
                   "[cuda][emulator]", float, double) {
  using T = TestType;
  const std::int64_t rows = 5, len = 1000;
  std::mt19937 gen(3);
  std::uniform_real_distribution<double> dist(-1, 1);
  std::vector<T> x(rows * len);
  for (auto& v : x) v = static_cast<T>(dist(gen));
  device_array<T> xd(x.size()), sums(rows), maxima(rows);
  xd.set(x);
  for (unsigned threads : {32u, 64u, 256u, 1024u}) {
    AMBISEG_LAUNCH(rows, threads, 0, nullptr, sums_and_maxima<T>)(xd.p, len, sums.p, maxima.p);
    const auto s = sums.get(), m = maxima.get();
    for (std::int64_t r = 0; r < rows; ++r) {
      double ref = 0, mx = -INFINITY;
      for (std::int64_t j = 0; j < len; ++j) {
        ref += x[r * len + j];
        mx = std::max<double>(mx, x[r * len + j]);
      }
      CHECK(std::abs(s[r] - ref) <= 1e-4);
      CHECK(m[r] == static_cast<T>(mx));
    }
  }
}

TEST_CASE("emulator: barriers that cannot complete are reported, naming the kernel",
          "[cuda][emulator]") {
  device_array<int> out(256);
  CHECK_THROWS_WITH(AMBISEG_LAUNCH(1, 256, 0, nullptr, exits_before_barrier)(out.p),
                    Contains("exits_before_barrier") && Contains("__syncthreads") &&
                        Contains("have exited"));
  CHECK_THROWS_WITH(AMBISEG_LAUNCH(1, 64, 0, nullptr, half_warp_shuffle)(out.p),
                    Contains("half_warp_shuffle") && Contains("have exited"));
  CHECK_THROWS_WITH(AMBISEG_LAUNCH(1, 48, 0, nullptr, shuffles)(out.p, out.p, out.p, out.p),
                    Contains("only 16 threads"));
  CHECK_THROWS_AS(AMBISEG_LAUNCH(1, 32, 0, nullptr, partial_mask)(out.p), emulation_error);
  // The emulator is usable afterwards.
  AMBISEG_LAUNCH(2, 32, 0, nullptr, rotate_through_shared)(out.p);
  CHECK(out.get()[0] == 1);
}

TEST_CASE("emulator: a bad launch configuration is a launch error, not a run",
          "[cuda][emulator]") {
  device_array<float> a(4), b(4);
  (void)cudaGetLastError();
  AMBISEG_LAUNCH(1, 2048, 0, nullptr, copy_kernel)(a.p, b.p, 4);
  CHECK_THROWS_AS(gpu::check_launch("copy_kernel"), cuda_error);
  AMBISEG_LAUNCH(0, 32, 0, nullptr, copy_kernel)(a.p, b.p, 4);
  CHECK(cudaGetLastError() == cudaErrorInvalidConfiguration);
  CHECK(cudaGetLastError() == cudaSuccess);  // not sticky
}

TEST_CASE("emulator: a kernel given host or freed memory is refused at the launch",
          "[cuda][emulator]") {
  device_array<float> a(4);
  std::vector<float> host(4);
  CHECK_THROWS_WITH(AMBISEG_LAUNCH(1, 32, 0, nullptr, copy_kernel)(a.p, host.data(), 4),
                    Contains("copy_kernel") && Contains("pointer argument 1") &&
                        Contains("is not device memory"));
  float* gone = nullptr;
  {
    device_array<float> b(4);
    gone = b.p;
  }
  CHECK_THROWS_WITH(AMBISEG_LAUNCH(1, 32, 0, nullptr, copy_kernel)(gone, a.p, 4),
                    Contains("freed device allocation"));
  AMBISEG_LAUNCH(1, 32, 0, nullptr, copy_kernel)(a.p, a.p + 4, 0);  // one past the end: fine
}

TEST_CASE("emulator: uninitialised device memory reads as NaN", "[cuda][emulator]") {
  device_array<float> fresh(1000), out(1000);
  AMBISEG_LAUNCH(gpu::grid_for(1000), gpu::block_threads, 0, nullptr, copy_kernel)(fresh.p, out.p, 1000);
  for (float v : out.get()) REQUIRE(std::isnan(v));
  device_array<double> d(10);
  for (double v : d.get()) REQUIRE(std::isnan(v));
}

TEST_CASE("emulator: copies outside a live allocation are refused with the sizes",
          "[cuda][emulator]") {
  std::vector<char> host(4096);
  void* p = nullptr;
  REQUIRE(cudaMalloc(&p, 1024) == cudaSuccess);
  CHECK(cudaMemcpy(p, host.data(), 1024, cudaMemcpyHostToDevice) == cudaSuccess);
  CHECK(cudaMemcpy(p, host.data(), 1025, cudaMemcpyHostToDevice) == cudaErrorInvalidValue);
  CHECK_THAT(cudaGetErrorString(cudaErrorInvalidValue), Contains("overruns the allocation") &&
                                                             Contains("1024 bytes by 1 bytes"));
  CHECK(cudaGetLastError() == cudaErrorInvalidValue);
  CHECK(cudaMemset(static_cast<char*>(p) + 1000, 0, 100) == cudaErrorInvalidValue);
  CHECK(cudaMemcpy(host.data(), host.data() + 1, 8, cudaMemcpyDeviceToHost) == cudaErrorInvalidValue);
  CHECK_THAT(cudaGetErrorString(cudaErrorInvalidValue), Contains("is not device memory"));
  CHECK(cudaMemcpy(p, p, 8, cudaMemcpyHostToDevice) == cudaErrorInvalidValue);  // kind mismatch
  CHECK_THAT(cudaGetErrorString(cudaErrorInvalidValue), Contains("copy kind says it is host"));
  CHECK(cudaMemcpy2D(p, 16, host.data(), 32, 17, 4, cudaMemcpyHostToDevice) == cudaErrorInvalidPitchValue);
  REQUIRE(cudaFree(p) == cudaSuccess);
  CHECK(cudaMemcpy(host.data(), p, 8, cudaMemcpyDeviceToHost) == cudaErrorInvalidValue);
  CHECK_THAT(cudaGetErrorString(cudaErrorInvalidValue), Contains("use after free"));
  CHECK(cudaFree(p) == cudaErrorInvalidValue);  // freed twice
  (void)cudaGetLastError();
  // Through ambiseg: the check names the copy.
  tensor<float, cuda> t(shape{4});
  std::vector<float> big(8);
  CHECK_THROWS_WITH(device_memory<cuda>::copy_from_host(t.data(), big.data(), 8 * sizeof(float) + 4096),
                    Contains("copy h2d") && Contains("overruns"));
}

TEST_CASE("emulator: pinned memory, events, host functions and pointer attributes",
          "[cuda][emulator]") {
  void* pinned = nullptr;
  REQUIRE(cudaMallocHost(&pinned, 256) == cudaSuccess);
  void* dev = nullptr;
  REQUIRE(cudaMalloc(&dev, 256) == cudaSuccess);
  cudaPointerAttributes a{};
  REQUIRE(cudaPointerGetAttributes(&a, dev) == cudaSuccess);
  CHECK(a.type == cudaMemoryTypeDevice);
  REQUIRE(cudaPointerGetAttributes(&a, static_cast<char*>(pinned) + 10) == cudaSuccess);
  CHECK(a.type == cudaMemoryTypeHost);
  int local = 0;
  REQUIRE(cudaPointerGetAttributes(&a, &local) == cudaSuccess);
  CHECK(a.type == cudaMemoryTypeUnregistered);

  cudaStream_t s = nullptr;
  REQUIRE(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking) == cudaSuccess);
  cudaEvent_t e0 = nullptr, e1 = nullptr;
  REQUIRE(cudaEventCreate(&e0) == cudaSuccess);
  REQUIRE(cudaEventCreate(&e1) == cudaSuccess);
  CHECK(cudaEventRecord(e0, s) == cudaSuccess);
  std::memset(pinned, 7, 256);
  CHECK(cudaMemcpyAsync(dev, pinned, 256, cudaMemcpyDefault, s) == cudaSuccess);
  CHECK(cudaMemsetAsync(dev, 1, 16, s) == cudaSuccess);
  CHECK(cudaMemcpyAsync(pinned, dev, 256, cudaMemcpyDeviceToHost, s) == cudaSuccess);
  int calls = 0;
  CHECK(cudaLaunchHostFunc(s, [](void* c) { ++*static_cast<int*>(c); }, &calls) == cudaSuccess);
  CHECK(cudaEventRecord(e1, s) == cudaSuccess);
  CHECK(cudaStreamWaitEvent(cudaStreamLegacy, e1, 0) == cudaSuccess);
  CHECK(cudaEventQuery(e1) == cudaSuccess);
  CHECK(cudaEventSynchronize(e1) == cudaSuccess);
  float ms = -1;
  CHECK(cudaEventElapsedTime(&ms, e0, e1) == cudaSuccess);
  CHECK(ms >= 0);
  CHECK(calls == 1);
  CHECK(static_cast<unsigned char*>(pinned)[0] == 1);
  CHECK(static_cast<unsigned char*>(pinned)[16] == 7);
  CHECK(cudaDeviceSynchronize() == cudaSuccess);
  CHECK(cudaEventDestroy(e0) == cudaSuccess);
  CHECK(cudaEventDestroy(e1) == cudaSuccess);
  CHECK(cudaStreamDestroy(s) == cudaSuccess);
  CHECK(cudaStreamSynchronize(s) == cudaErrorInvalidResourceHandle);  // destroyed
  CHECK(cudaFreeHost(pinned) == cudaSuccess);
  CHECK(cudaFree(dev) == cudaSuccess);
  (void)cudaGetLastError();
}

TEST_CASE("emulator: cuBLAS GEMM honours transposes, leading dimensions, strides and beta",
          "[cuda][emulator]") {
  cublasHandle_t h = nullptr;
  REQUIRE(cublasCreate(&h) == CUBLAS_STATUS_SUCCESS);
  const int m = 3, n = 4, k = 5, batch = 2, lda = 7, ldb = 6, ldc = 5;
  const long long sa = lda * m + 1, sb = ldb * n + 2, sc = ldc * n + 3;  // opA = T, opB = N
  std::vector<double> a(sa * batch), b(sb * batch), c(sc * batch);
  std::mt19937 gen(5);
  std::uniform_real_distribution<double> dist(-1, 1);
  for (auto* v : {&a, &b, &c})
    for (auto& e : *v) e = dist(gen);
  device_array<double> ad(a.size()), bd(b.size()), cd(c.size());
  ad.set(a);
  bd.set(b);
  cd.set(c);
  const double alpha = 0.5, beta = 2.0;
  REQUIRE(cublasGemmStridedBatchedEx(h, CUBLAS_OP_T, CUBLAS_OP_N, m, n, k, &alpha, ad.p, CUDA_R_64F,
                                     lda, sa, bd.p, CUDA_R_64F, ldb, sb, &beta, cd.p, CUDA_R_64F,
                                     ldc, sc, batch, CUBLAS_COMPUTE_64F,
                                     CUBLAS_GEMM_DEFAULT) == CUBLAS_STATUS_SUCCESS);
  const auto got = cd.get();
  for (int bi = 0; bi < batch; ++bi)
    for (int i = 0; i < ldc; ++i)
      for (int j = 0; j < n; ++j) {
        const long long at = bi * sc + i + j * ldc;
        double ref = c[at];
        if (i < m) {
          double sum = 0;
          for (int l = 0; l < k; ++l) sum += a[bi * sa + l + i * lda] * b[bi * sb + l + j * ldb];
          ref = alpha * sum + beta * c[at];
        }
        CHECK(std::abs(got[at] - ref) <= 1e-12);  // rows i ≥ m untouched
      }
  // ld below the rows it must span: CUBLAS_STATUS_INVALID_VALUE, as cuBLAS.
  CHECK(cublasGemmStridedBatchedEx(h, CUBLAS_OP_T, CUBLAS_OP_N, m, n, k, &alpha, ad.p, CUDA_R_64F,
                                   k - 1, sa, bd.p, CUDA_R_64F, ldb, sb, &beta, cd.p, CUDA_R_64F,
                                   ldc, sc, batch, CUBLAS_COMPUTE_64F,
                                   CUBLAS_GEMM_DEFAULT) == CUBLAS_STATUS_INVALID_VALUE);
  // Operands past their allocation are refused, naming the operand.
  CHECK(cublasGemmStridedBatchedEx(h, CUBLAS_OP_T, CUBLAS_OP_N, m, n, k, &alpha, ad.p, CUDA_R_64F,
                                   lda, sa, bd.p, CUDA_R_64F, ldb, sb, &beta, cd.p, CUDA_R_64F,
                                   ldc, sc, batch + 1, CUBLAS_COMPUTE_64F,
                                   CUBLAS_GEMM_DEFAULT) == CUBLAS_STATUS_EXECUTION_FAILED);
  CHECK_THAT(cublasGetStatusString(CUBLAS_STATUS_EXECUTION_FAILED), Contains("operand A"));
  CHECK(cublasDestroy(h) == CUBLAS_STATUS_SUCCESS);
}
