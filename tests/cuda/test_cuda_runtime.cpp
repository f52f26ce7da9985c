// CUDA runtime pieces: the block caches (scratch, pinned staging), contexts, the AdamW kernel and the gradient
// norm against the CPU optimiser, and the diffusion elementwise kernels. GPU cases skip
// without a device (the caches' bookkeeping is tested everywhere in tests/core).
#include "cuda_test_util.hpp"

#include <ambiseg/core/cuda_context.hpp>
#include <ambiseg/diffusion/cuda/api.hpp>
#include <ambiseg/ops/cuda/api.hpp>
#include <ambiseg/optim/cuda/api.hpp>
#include <ambiseg/optim/adamw.hpp>
#include <ambiseg/optim/clip.hpp>

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

using namespace ambiseg;
using namespace cuda_test;
namespace ck = ambiseg::ops::cuda_kernels;
namespace diffusion_ck = ambiseg::diffusion::cuda_kernels;
namespace optim_ck = ambiseg::optim::cuda_kernels;

TEST_CASE("context scratch is reused on its stream at once; an upload through pinned staging "
          "delivers the bytes the host had at the call", "[cuda]") {
  AMBISEG_REQUIRE_GPU();
  cuda_context ctx;
  const auto before = cuda_tensor_cache().stats();
  void* first = nullptr;
  {
    cuda_buffer a = ctx.scratch(1000);
    CHECK(a.data() != nullptr);
    CHECK(a.bytes() == 1000);
    first = a.data();
  }
  {
    cuda_buffer b = ctx.scratch(600);  // same class, same stream: the same block at once
    CHECK(b.data() == first);
  }
  CHECK(cuda_tensor_cache().stats().stream_reuses == before.stream_reuses + 1);

  // An upload copies the host buffer into pinned staging: overwriting the source right
  // after the call does not change what arrives. (On the emulator, which copies at the
  // call, this checks the bytes and the staging round trip, not the asynchrony.)
  std::vector<float> host(4096);
  for (std::size_t i = 0; i < host.size(); ++i) host[i] = static_cast<float>(i) * 0.5f;
  const std::vector<float> sent = host;
  tensor<float, cuda> dev(shape{4096});
  ctx.upload(dev.data(), host.data(), sizeof(float) * host.size());
  std::fill(host.begin(), host.end(), -1.0f);
  std::vector<float> back(host.size());
  ctx.download(back.data(), dev.data(), sizeof(float) * back.size());
  CHECK(back == sent);
  // The staging block went back to its cache (reused after its event).
  CHECK(cuda_pinned_staging().live_blocks() == 0);
}

TEST_CASE("context scopes nest and ops run on the current context's stream", "[cuda]") {
  AMBISEG_REQUIRE_GPU();
  cuda_context outer, inner;
  {
    cuda_context_scope a(outer);
    CHECK(&current_cuda_context() == &outer);
    {
      cuda_context_scope b(inner);
      CHECK(&current_cuda_context() == &inner);
    }
    CHECK(&current_cuda_context() == &outer);
  }
  CHECK(&current_cuda_context() != &outer);  // the thread's default context
  // Group-norm backward draws its scratch from the block cache on the context's stream:
  // after the first call, repeating it allocates nothing new.
  cuda_context_scope a(outer);
  const shape s{2, 8, 16, 16};
  auto x = to_device(random_tensor<float>(s, 1)), dy = to_device(random_tensor<float>(s, 2));
  auto gamma = to_device(random_tensor<float>({8}, 3));
  tensor<float, cuda> mean(shape{2, 4}), rstd(shape{2, 4}), dx(s), dg(shape{8}), db(shape{8});
  dg.zero();
  db.zero();
  ck::group_norm_forward(x.cview(), gamma.cview(), gamma.cview(), 4, 1e-5, dx.view(), mean.view(),
                         rstd.view());
  ck::group_norm_backward(x.cview(), gamma.cview(), mean.cview(), rstd.cview(), dy.cview(), 4,
                          dx.view(), dg.view(), db.view());
  const auto first = cuda_tensor_cache().stats().device_allocations;
  for (int i = 0; i < 3; ++i)
    ck::group_norm_backward(x.cview(), gamma.cview(), mean.cview(), rstd.cview(), dy.cview(), 4,
                            dx.view(), dg.view(), db.view());
  outer.synchronize();
  CHECK(cuda_tensor_cache().stats().device_allocations == first);
}

TEMPLATE_TEST_CASE("CUDA AdamW kernel follows the CPU AdamW step for step", "[cuda]", float,
                   double) {
  AMBISEG_REQUIRE_GPU();
  using T = TestType;
  const std::int64_t n = 10007;
  optim::adamw_options opt;
  opt.lr = 1e-2;  // large enough that the steps move the parameters visibly
  optim::adamw<T> cpu_opt(n, opt);
  auto p = random_tensor<T>({n}, 60);
  auto pd = to_device(p);
  tensor<T, cuda> m = tensor<T, cuda>::zeros(shape{n}), v = tensor<T, cuda>::zeros(shape{n});
  for (int step = 1; step <= 5; ++step) {
    auto g = random_tensor<T>({n}, 60 + step);
    auto gd = to_device(g);
    cpu_opt.step(p.view(), g.cview());
    optim_ck::adamw_step(pd.view(), gd.cview(), m.view(), v.view(),
                   optim::adamw_step_scalars<T>::make(opt, step));
  }
  // The same operations in the same order; only FMA contraction may differ.
  const tol<T> tl = std::is_same_v<T, float> ? tol<T>{1e-7, 1e-6} : tol<T>{1e-15, 1e-14};
  require_close(pd, p, tl, "AdamW parameters");
  tensor<T> m_cpu({n}), v_cpu({n});
  m_cpu.copy_from(cpu_opt.exp_avg());
  v_cpu.copy_from(cpu_opt.exp_avg_sq());
  require_close(m, m_cpu, tl, "AdamW exp_avg");
  require_close(v, v_cpu, tl, "AdamW exp_avg_sq");
}

TEMPLATE_TEST_CASE("CUDA gradient norm and clipping match the CPU and are deterministic",
                   "[cuda]", float, double) {
  AMBISEG_REQUIRE_GPU();
  using T = TestType;
  for (std::int64_t n : {std::int64_t(1), std::int64_t(511), std::int64_t(1'000'003)}) {
    INFO("n = " << n);
    auto g = random_tensor<T>({n}, 70);
    auto gd = to_device(g);
    const double cpu_norm = optim::global_grad_norm<T>(g.cview());
    const double gpu_norm = optim_ck::global_grad_norm<T>(gd.cview());
    CHECK(std::abs(gpu_norm - cpu_norm) <= 1e-12 * cpu_norm);
    CHECK(optim_ck::global_grad_norm<T>(gd.cview()) == gpu_norm);  // bit-identical repeat

    const double max_norm = cpu_norm / 3;  // forces a scale of about 1/3
    const double clipped_cpu = optim::clip_grad_norm<T>(g.view(), max_norm);
    const double clipped_gpu = optim_ck::clip_grad_norm<T>(gd.view(), max_norm);
    CHECK(std::abs(clipped_gpu - clipped_cpu) <= 1e-12 * clipped_cpu);
    require_close(gd, g, default_tol<T>(), "clipped gradients");
  }
  SECTION("a non-finite gradient throws, or is reported, and leaves the gradients alone") {
    auto g = random_tensor<T>({1000}, 71);
    g[17] = std::numeric_limits<T>::quiet_NaN();
    auto gd = to_device(g);
    CHECK_THROWS_AS(optim_ck::clip_grad_norm<T>(gd.view(), 1.0), value_error);
    CHECK(std::isnan(optim_ck::clip_grad_norm<T>(gd.view(), 1.0, /*report_nonfinite=*/true)));
    auto back = to_host(gd);
    for (std::int64_t i = 0; i < 1000; ++i)
      if (i != 17) CHECK(back[i] == g[i]);
  }
}

TEMPLATE_TEST_CASE("CUDA diffusion maths: noising, x0 from f, reverse step", "[cuda]", float,
                   double) {
  AMBISEG_REQUIRE_GPU();
  using T = TestType;
  const std::int64_t n = 3, e = 50;
  auto x0 = random_tensor<T>({n, 1, 5, 10}, 80), eps = random_tensor<T>({n, 1, 5, 10}, 81);
  auto a = tensor<T>::from({n}, {T(0.9), T(0.5), T(0.1)});
  auto s = tensor<T>::from({n}, {T(0.2), T(0.8), T(-1.5)});  // any coefficients, not only α/σ
  auto c = tensor<T>::from({n}, {T(0.0), T(0.3), T(2.0)});
  auto x0d = to_device(x0), epsd = to_device(eps), ad = to_device(a), sd = to_device(s),
       cd = to_device(c);
  tensor<T, cuda> out(x0.shape());
  const auto tl = default_tol<T>();
  tensor<T> ref(x0.shape());

  diffusion_ck::diffusion_noise(x0d.cview(), epsd.cview(), ad.cview(), sd.cview(), out.view());
  for (std::int64_t i = 0; i < n * e; ++i) ref[i] = a[i / e] * x0[i] + s[i / e] * eps[i];
  require_close(out, ref, tl, "x_t = αx0 + σε");

  diffusion_ck::diffusion_predicted_x0(x0d.cview(), epsd.cview(), ad.cview(), cd.cview(), true,
                                       out.view());
  for (std::int64_t i = 0; i < n * e; ++i)
    ref[i] = std::clamp(a[i / e] * x0[i] + c[i / e] * eps[i], T(-1), T(1));
  require_close(out, ref, tl, "x̂0 = c_xt·x_t + c_f·f, clipped");

  auto z = random_tensor<T>(x0.shape(), 82);
  auto zd = to_device(z);
  diffusion_ck::diffusion_reverse_step(x0d.cview(), epsd.cview(), zd.cview(), ad.cview(),
                                       sd.cview(), cd.cview(), out.view());
  for (std::int64_t i = 0; i < n * e; ++i)
    ref[i] = a[i / e] * x0[i] + s[i / e] * eps[i] + c[i / e] * z[i];
  require_close(out, ref, tl, "x_s = a·x_t + b·x̂0 + c·z");

  diffusion_ck::diffusion_reverse_step(x0d.cview(), epsd.cview(), tensor_view<const T, cuda>{},
                                       ad.cview(), sd.cview(), cd.cview(), out.view());
  for (std::int64_t i = 0; i < n * e; ++i) ref[i] = a[i / e] * x0[i] + s[i / e] * eps[i];
  require_close(out, ref, tl, "x_s without noise");
}
