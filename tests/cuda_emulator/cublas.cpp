// cuda_emulator/cublas.cpp — the cuBLAS subset ambiseg uses: handles and the strided-batched
// GEMM, column-major as cuBLAS defines it.
//
// C_i = α·op(A_i)·op(B_i) + β·C_i for i < batch, A_i = A + i·strideA (elements), op(A)
// [m, k], op(B) [k, n], C [m, n], column-major with leading dimensions lda, ldb, ldc. The
// products accumulate in the compute type (float for CUBLAS_COMPUTE_32F, double for 64F);
// CUBLAS_COMPUTE_32F_FAST_TF32 rounds both operands to TF32 (10-bit mantissa) first, as a
// tensor core does. β = 0 means C is not read (it may hold NaN), as in cuBLAS.
// Mixed precision as cuBLAS offers it: A and B bfloat16 (CUDA_R_16BF) or half (CUDA_R_16F),
// C float, compute 32F — the 16-bit operands are exact in float, the sums are float sums.
// Arguments are validated as cuBLAS does (CUBLAS_STATUS_INVALID_VALUE for a negative extent
// or a leading dimension below the rows it must span); operands outside live device memory
// are refused (CUBLAS_STATUS_EXECUTION_FAILED, with the range in the status string).
#include <cstring>
#include <mutex>
#include <set>
#include <vector>

#include "ambiseg/core/low_precision.hpp"
#include "cuda_emulator/emulator.hpp"

struct cublasContext {
  cudaStream_t stream = nullptr;
  cublasMath_t math = CUBLAS_DEFAULT_MATH;
};

namespace ambiseg_emu {
namespace {

std::mutex handles_mutex;
std::set<const cublasContext*> handles;

bool live(cublasHandle_t h) {
  std::lock_guard lock(handles_mutex);
  return handles.count(h) != 0;
}

cublasStatus_t fail(cublasStatus_t status, std::string detail) {
  set_failure_detail(cublas, status, std::move(detail));
  return status;
}

float to_tf32(float x) {
  std::uint32_t bits;
  std::memcpy(&bits, &x, 4);
  if ((bits & 0x7f800000u) != 0x7f800000u) {  // finite: round the low 13 bits to nearest even
    bits += 0x0fffu + ((bits >> 13) & 1u);
    bits &= 0xffffe000u;
  }
  std::memcpy(&x, &bits, 4);
  return x;
}

template <class T, class Acc>
void gemm(cublasOperation_t ta, cublasOperation_t tb, int m, int n, int k, Acc alpha,
          const T* a, int lda, long long sa, const T* b, int ldb, long long sb, Acc beta, T* c,
          int ldc, long long sc, int batch, bool tf32) {
  std::vector<Acc> row_a(static_cast<std::size_t>(k)), col_b(static_cast<std::size_t>(k));
  for (int bi = 0; bi < batch; ++bi) {
    const T* ab = a + bi * sa;
    const T* bb = b + bi * sb;
    T* cb = c + bi * sc;
    for (int j = 0; j < n; ++j) {
      for (int l = 0; l < k; ++l) {
        const T v = tb == CUBLAS_OP_N ? bb[l + static_cast<long long>(j) * ldb]
                                      : bb[j + static_cast<long long>(l) * ldb];
        col_b[l] = tf32 ? Acc(to_tf32(float(v))) : Acc(v);
      }
      for (int i = 0; i < m; ++i) {
        Acc sum = Acc(0);
        for (int l = 0; l < k; ++l) {
          const T v = ta == CUBLAS_OP_N ? ab[i + static_cast<long long>(l) * lda]
                                        : ab[l + static_cast<long long>(i) * lda];
          sum += (tf32 ? Acc(to_tf32(float(v))) : Acc(v)) * col_b[l];
        }
        T& out = cb[i + static_cast<long long>(j) * ldc];
        out = beta == Acc(0) ? T(alpha * sum) : T(alpha * sum + beta * Acc(out));
      }
    }
  }
}

// The bytes operand X spans: `cols` columns of `rows` elements, leading dimension ld, over
// the batch.
std::size_t span_bytes(int rows, int cols, int ld, long long stride, int batch, std::size_t elem) {
  if (rows == 0 || cols == 0 || batch == 0) return 0;
  const long long last = static_cast<long long>(cols - 1) * ld + (rows - 1) +
                         static_cast<long long>(batch - 1) * (stride > 0 ? stride : 0);
  return static_cast<std::size_t>(last + 1) * elem;
}

// The float values of `bytes / 2` 16-bit elements of `type`.
std::vector<float> widened(const void* p, std::size_t bytes, cudaDataType type) {
  std::vector<float> out(bytes / 2);
  const auto* h = static_cast<const std::uint16_t*>(p);
  for (std::size_t i = 0; i < out.size(); ++i)
    out[i] = type == CUDA_R_16BF ? ambiseg::bf16_float(h[i]) : ambiseg::half_float(h[i]);
  return out;
}

}  // namespace
}  // namespace ambiseg_emu

using namespace ambiseg_emu;

extern "C" {

cublasStatus_t cublasCreate_v2(cublasHandle_t* handle) {
  if (!handle) return CUBLAS_STATUS_INVALID_VALUE;
  *handle = new cublasContext{};
  std::lock_guard lock(handles_mutex);
  handles.insert(*handle);
  return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasDestroy_v2(cublasHandle_t handle) {
  std::lock_guard lock(handles_mutex);
  if (!handles.erase(handle)) return CUBLAS_STATUS_NOT_INITIALIZED;
  delete handle;
  return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasSetStream_v2(cublasHandle_t handle, cudaStream_t stream) {
  if (!live(handle)) return CUBLAS_STATUS_NOT_INITIALIZED;
  if (!valid_stream(stream)) return fail(CUBLAS_STATUS_INVALID_VALUE, "cublasSetStream: no such stream");
  handle->stream = stream;
  return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasSetMathMode(cublasHandle_t handle, cublasMath_t mode) {
  if (!live(handle)) return CUBLAS_STATUS_NOT_INITIALIZED;
  handle->math = mode;
  return CUBLAS_STATUS_SUCCESS;
}

const char* cublasGetStatusName(cublasStatus_t status) {
  switch (status) {
    case CUBLAS_STATUS_SUCCESS: return "CUBLAS_STATUS_SUCCESS";
    case CUBLAS_STATUS_NOT_INITIALIZED: return "CUBLAS_STATUS_NOT_INITIALIZED";
    case CUBLAS_STATUS_ALLOC_FAILED: return "CUBLAS_STATUS_ALLOC_FAILED";
    case CUBLAS_STATUS_INVALID_VALUE: return "CUBLAS_STATUS_INVALID_VALUE";
    case CUBLAS_STATUS_ARCH_MISMATCH: return "CUBLAS_STATUS_ARCH_MISMATCH";
    case CUBLAS_STATUS_MAPPING_ERROR: return "CUBLAS_STATUS_MAPPING_ERROR";
    case CUBLAS_STATUS_EXECUTION_FAILED: return "CUBLAS_STATUS_EXECUTION_FAILED";
    case CUBLAS_STATUS_INTERNAL_ERROR: return "CUBLAS_STATUS_INTERNAL_ERROR";
    case CUBLAS_STATUS_NOT_SUPPORTED: return "CUBLAS_STATUS_NOT_SUPPORTED";
    default: return "CUBLAS_STATUS_UNKNOWN";
  }
}
const char* cublasGetStatusString(cublasStatus_t status) {
  const char* text = "unknown error";
  switch (status) {
    case CUBLAS_STATUS_SUCCESS: text = "success"; break;
    case CUBLAS_STATUS_NOT_INITIALIZED: text = "the library was not initialized"; break;
    case CUBLAS_STATUS_ALLOC_FAILED: text = "the resource allocation failed"; break;
    case CUBLAS_STATUS_INVALID_VALUE: text = "an invalid numeric value was used as an argument"; break;
    case CUBLAS_STATUS_EXECUTION_FAILED: text = "the GPU program failed to execute"; break;
    case CUBLAS_STATUS_NOT_SUPPORTED: text = "the functionality requested is not supported"; break;
    default: break;
  }
  const std::string& detail = failure_detail(cublas, status);
  if (detail.empty()) return text;
  thread_local std::string message;
  message = std::string(text) + "; CUDA emulator: " + detail;
  return message.c_str();
}

cublasStatus_t cublasGemmStridedBatchedEx(cublasHandle_t handle, cublasOperation_t transa,
                                          cublasOperation_t transb, int m, int n, int k,
                                          const void* alpha, const void* A, cudaDataType Atype,
                                          int lda, long long int strideA, const void* B,
                                          cudaDataType Btype, int ldb, long long int strideB,
                                          const void* beta, void* C, cudaDataType Ctype, int ldc,
                                          long long int strideC, int batchCount,
                                          cublasComputeType_t computeType, cublasGemmAlgo_t) {
  ambiseg_emu::note_work();
  const char* api = "cublasGemmStridedBatchedEx";
  if (!live(handle)) return CUBLAS_STATUS_NOT_INITIALIZED;
  auto op_ok = [](cublasOperation_t op) { return op == CUBLAS_OP_N || op == CUBLAS_OP_T; };
  if (!op_ok(transa) || !op_ok(transb))
    return fail(CUBLAS_STATUS_INVALID_VALUE, std::string(api) + ": unsupported operation");
  const int rows_a = transa == CUBLAS_OP_N ? m : k, cols_a = transa == CUBLAS_OP_N ? k : m;
  const int rows_b = transb == CUBLAS_OP_N ? k : n, cols_b = transb == CUBLAS_OP_N ? n : k;
  if (m < 0 || n < 0 || k < 0 || batchCount < 0 || lda < std::max(1, rows_a) ||
      ldb < std::max(1, rows_b) || ldc < std::max(1, m))
    return fail(CUBLAS_STATUS_INVALID_VALUE,
                std::string(api) + ": m " + std::to_string(m) + ", n " + std::to_string(n) +
                    ", k " + std::to_string(k) + ", lda " + std::to_string(lda) + " (≥ " +
                    std::to_string(std::max(1, rows_a)) + "), ldb " + std::to_string(ldb) +
                    " (≥ " + std::to_string(std::max(1, rows_b)) + "), ldc " +
                    std::to_string(ldc) + " (≥ " + std::to_string(std::max(1, m)) +
                    "), batch " + std::to_string(batchCount));
  const bool is_float = computeType == CUBLAS_COMPUTE_32F ||
                        computeType == CUBLAS_COMPUTE_32F_FAST_TF32 ||
                        computeType == CUBLAS_COMPUTE_32F_PEDANTIC;
  const bool is_double = computeType == CUBLAS_COMPUTE_64F || computeType == CUBLAS_COMPUTE_64F_PEDANTIC;
  const cudaDataType want = is_float ? CUDA_R_32F : CUDA_R_64F;
  const bool sixteen = computeType == CUBLAS_COMPUTE_32F && Atype == Btype &&
                       (Atype == CUDA_R_16BF || Atype == CUDA_R_16F) && Ctype == CUDA_R_32F;
  if ((!is_float && !is_double) || (!sixteen && (Atype != want || Btype != want || Ctype != want)))
    return fail(CUBLAS_STATUS_NOT_SUPPORTED,
                std::string(api) + ": the emulator supports float and double real GEMMs with "
                                   "matching compute types, and bf16/half A and B with float C "
                                   "and compute 32F, only");
  if (!alpha || !beta) return fail(CUBLAS_STATUS_INVALID_VALUE, std::string(api) + ": null alpha/beta");
  if (m == 0 || n == 0 || batchCount == 0) return CUBLAS_STATUS_SUCCESS;
  const std::size_t elem = is_float ? 4 : 8, operand_elem = sixteen ? 2 : elem;
  struct operand {
    const char* name;
    const void* p;
    std::size_t bytes;
  };
  const bool reads_c_only = k == 0;
  const operand operands[3] = {
      {"A", A, reads_c_only ? 0 : span_bytes(rows_a, cols_a, lda, strideA, batchCount, operand_elem)},
      {"B", B, reads_c_only ? 0 : span_bytes(rows_b, cols_b, ldb, strideB, batchCount, operand_elem)},
      {"C", C, span_bytes(m, n, ldc, strideC, batchCount, elem)}};
  for (const operand& o : operands)
    if (o.bytes)
      if (auto problem = device_range_problem(o.p, o.bytes))
        return fail(CUBLAS_STATUS_EXECUTION_FAILED,
                    std::string(api) + ": operand " + o.name + " " + *problem);
  const bool tf32 = computeType == CUBLAS_COMPUTE_32F_FAST_TF32;
  if (sixteen) {
    const std::vector<float> a = widened(A, operands[0].bytes, Atype), b = widened(B, operands[1].bytes, Btype);
    gemm<float, float>(transa, transb, m, n, k, *static_cast<const float*>(alpha), a.data(), lda,
                       strideA, b.data(), ldb, strideB, *static_cast<const float*>(beta),
                       static_cast<float*>(C), ldc, strideC, batchCount, false);
  } else if (is_float)
    gemm<float, float>(transa, transb, m, n, k, *static_cast<const float*>(alpha),
                       static_cast<const float*>(A), lda, strideA, static_cast<const float*>(B), ldb,
                       strideB, *static_cast<const float*>(beta), static_cast<float*>(C), ldc,
                       strideC, batchCount, tf32);
  else
    gemm<double, double>(transa, transb, m, n, k, *static_cast<const double*>(alpha),
                         static_cast<const double*>(A), lda, strideA, static_cast<const double*>(B),
                         ldb, strideB, *static_cast<const double*>(beta), static_cast<double*>(C),
                         ldc, strideC, batchCount, false);
  return CUBLAS_STATUS_SUCCESS;
}

}  // extern "C"
