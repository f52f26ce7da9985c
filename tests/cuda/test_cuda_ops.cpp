// CUDA op layer: CPU/GPU parity for every op forward and backward. Each case runs the CPU
// op (ops/<op>.hpp with D = cpu) on host data and the CUDA function (ops/cuda/api.hpp) on
// device copies of the same data, then compares with the tolerance stated in the case.
// Parameter gradients start from non-zero values so that "+=" is checked, not just "=".
// Skips without a GPU, except the shape-validation case, which never touches the device.
#include "cuda_test_util.hpp"

#include <ambiseg/ops/all.hpp>
#include <ambiseg/diffusion/cuda/api.hpp>
#include <ambiseg/ops/cuda/api.hpp>
#include <ambiseg/optim/cuda/api.hpp>

#include <cmath>
#include <vector>

using namespace ambiseg;
using namespace cuda_test;
namespace ck = ambiseg::ops::cuda_kernels;
namespace diffusion_ck = ambiseg::diffusion::cuda_kernels;
namespace optim_ck = ambiseg::optim::cuda_kernels;

TEMPLATE_TEST_CASE("CUDA elementwise ops match the CPU ops", "[cuda]", float, double) {
  AMBISEG_REQUIRE_GPU();
  using T = TestType;
  const auto tl = default_tol<T>();
  const shape s{2, 3, 5, 7};
  auto x = random_tensor<T>(s, 1, -6, 6);  // wide enough to reach SiLU/tanh saturation
  auto dy = random_tensor<T>(s, 2);
  auto xd = to_device(x), dyd = to_device(dy);

  tensor<T> y(s), dx(s);
  tensor<T, cuda> yd(s), dxd(s);

  ops::silu_forward(x.cview(), y.view());
  ck::silu_forward(xd.cview(), yd.view());
  require_close(yd, y, tl, "silu forward");
  ops::silu_backward(x.cview(), dy.cview(), dx.view());
  ck::silu_backward(xd.cview(), dyd.cview(), dxd.view());
  require_close(dxd, dx, tl, "silu backward");

  ops::tanh_forward(x.cview(), y.view());
  ck::tanh_forward(xd.cview(), yd.view());
  require_close(yd, y, tl, "tanh forward");
  auto yd_saved = to_device(y);
  ops::tanh_backward(y.cview(), dy.cview(), dx.view());
  ck::tanh_backward(yd_saved.cview(), dyd.cview(), dxd.view());
  require_close(dxd, dx, tl, "tanh backward");

  ops::add_forward(x.cview(), dy.cview(), y.view());
  ck::add_forward(xd.cview(), dyd.cview(), yd.view());
  require_close(yd, y, {0, 0}, "add");  // one rounding, identical on both
}

TEMPLATE_TEST_CASE("CUDA channel bias, upsample and concat match the CPU ops", "[cuda]", float,
                   double) {
  AMBISEG_REQUIRE_GPU();
  using T = TestType;
  const auto tl = default_tol<T>();
  SECTION("channel bias forward (in place) and backward") {
    auto h = random_tensor<T>({3, 4, 6, 5}, 3);
    auto e = random_tensor<T>({3, 4}, 4);
    auto hd = to_device(h), ed = to_device(e);
    ops::add_channel_bias_forward(h.view(), e.cview());
    ck::add_channel_bias_forward(hd.view(), ed.cview());
    require_close(hd, h, {0, 0}, "channel bias forward");
    tensor<T> de({3, 4});
    tensor<T, cuda> ded(shape{3, 4});
    ops::add_channel_bias_backward(h.cview(), de.view());
    ck::add_channel_bias_backward(hd.cview(), ded.view());
    require_close(ded, de, tl, "channel bias backward");
  }
  SECTION("nearest 2x upsample forward and backward") {
    auto x = random_tensor<T>({2, 3, 5, 4}, 5);
    auto dy = random_tensor<T>({2, 3, 10, 8}, 6);
    auto xd = to_device(x), dyd = to_device(dy);
    tensor<T> y({2, 3, 10, 8}), dx({2, 3, 5, 4});
    tensor<T, cuda> yd(shape{2, 3, 10, 8}), dxd(shape{2, 3, 5, 4});
    ops::upsample_nearest2x_forward(x.cview(), y.view());
    ck::upsample_nearest2x_forward(xd.cview(), yd.view());
    require_close(yd, y, {0, 0}, "upsample forward");
    ops::upsample_nearest2x_backward(dy.cview(), dx.view());
    ck::upsample_nearest2x_backward(dyd.cview(), dxd.view());
    require_close(dxd, dx, {0, 0}, "upsample backward");  // same summation order
  }
  SECTION("channel concat forward and backward, both and one-sided") {
    auto a = random_tensor<T>({2, 3, 4, 5}, 7);
    auto b = random_tensor<T>({2, 2, 4, 5}, 8);
    auto ad = to_device(a), bd = to_device(b);
    tensor<T> y({2, 5, 4, 5});
    tensor<T, cuda> yd(shape{2, 5, 4, 5});
    ops::concat_channels_forward(a.cview(), b.cview(), y.view());
    ck::concat_channels_forward(ad.cview(), bd.cview(), yd.view());
    require_close(yd, y, {0, 0}, "concat forward");
    tensor<T, cuda> da(shape{2, 3, 4, 5}), db(shape{2, 2, 4, 5});
    ck::concat_channels_backward(yd.cview(), da.view(), db.view());
    require_close(da, a, {0, 0}, "concat backward da");
    require_close(db, b, {0, 0}, "concat backward db");
    tensor<T, cuda> db_only(shape{2, 2, 4, 5});
    ck::concat_channels_backward(yd.cview(), tensor_view<T, cuda>{}, db_only.view());
    require_close(db_only, b, {0, 0}, "concat backward db only");
  }
  SECTION("sinusoidal time embedding, odd dim") {
    auto t = tensor<T>::from({4}, {T(0), T(0.25), T(0.7), T(1)});
    auto td = to_device(t);
    tensor<T> emb({4, 33});
    tensor<T, cuda> embd(shape{4, 33});
    ops::timestep_embedding(t.cview(), 33, 10.0, emb.view());
    ck::timestep_embedding(td.cview(), 33, 10.0, embd.view());
    require_close(embd, emb, tl, "timestep embedding");
  }
}

TEMPLATE_TEST_CASE("CUDA group norm matches the CPU op", "[cuda]", float, double) {
  AMBISEG_REQUIRE_GPU();
  using T = TestType;
  // float: fp32 statistics on the GPU vs double statistics on the CPU.
  const tol<T> tl = std::is_same_v<T, float> ? tol<T>{1e-4, 1e-4} : tol<T>{1e-11, 1e-11};
  for (const shape s : {shape{2, 8, 6, 7}, shape{3, 12, 40}, shape{2, 4, 33, 33}}) {
    const int groups = s[1] == 12 ? 3 : 4;
    INFO("x " << s.to_string() << ", groups " << groups);
    auto x = random_tensor<T>(s, 10, -2, 3);  // a non-zero mean
    auto gamma = random_tensor<T>({s[1]}, 11, 0.5, 1.5);
    auto beta = random_tensor<T>({s[1]}, 12);
    auto dy = random_tensor<T>(s, 13);
    auto xd = to_device(x), gd = to_device(gamma), bd = to_device(beta), dyd = to_device(dy);
    const shape st{s[0], groups};
    tensor<T> y(s), mean(st), rstd(st);
    tensor<T, cuda> yd(s), meand(st), rstdd(st);
    ops::group_norm_forward(x.cview(), gamma.cview(), beta.cview(), groups, 1e-5, y.view(),
                            mean.view(), rstd.view());
    ck::group_norm_forward(xd.cview(), gd.cview(), bd.cview(), groups, 1e-5, yd.view(),
                           meand.view(), rstdd.view());
    require_close(yd, y, tl, "group norm y");
    require_close(meand, mean, tl, "group norm mean");
    require_close(rstdd, rstd, tl, "group norm rstd");

    tensor<T> dx(s);
    tensor<T, cuda> dxd(s);
    auto dgamma = random_tensor<T>({s[1]}, 14), dbeta = random_tensor<T>({s[1]}, 15);
    auto dgd = to_device(dgamma), dbd = to_device(dbeta);
    ops::group_norm_backward(x.cview(), gamma.cview(), mean.cview(), rstd.cview(), dy.cview(),
                             groups, dx.view(), dgamma.view(), dbeta.view());
    ck::group_norm_backward(xd.cview(), gd.cview(), meand.cview(), rstdd.cview(), dyd.cview(),
                            groups, dxd.view(), dgd.view(), dbd.view());
    require_close(dxd, dx, tl, "group norm dx");
    require_close(dgd, dgamma, tl, "group norm dgamma (+=)");
    require_close(dbd, dbeta, tl, "group norm dbeta (+=)");
  }
}

TEMPLATE_TEST_CASE("CUDA linear layer matches the CPU op", "[cuda]", float, double) {
  AMBISEG_REQUIRE_GPU();
  using T = TestType;
  const auto tl = default_tol<T>();
  const std::int64_t n = 5, in = 37, out = 19;
  auto x = random_tensor<T>({n, in}, 20), w = random_tensor<T>({out, in}, 21);
  auto b = random_tensor<T>({out}, 22), dy = random_tensor<T>({n, out}, 23);
  auto xd = to_device(x), wd = to_device(w), bd = to_device(b), dyd = to_device(dy);
  tensor<T> y({n, out});
  tensor<T, cuda> yd(shape{n, out});
  ops::linear_forward(x.cview(), w.cview(), b.cview(), y.view());
  ck::linear_forward(xd.cview(), wd.cview(), bd.cview(), yd.view());
  require_close(yd, y, tl, "linear forward");

  tensor<T> dx({n, in});
  tensor<T, cuda> dxd(shape{n, in});
  auto dw = random_tensor<T>({out, in}, 24), db = random_tensor<T>({out}, 25);
  auto dwd = to_device(dw), dbd = to_device(db);
  ops::linear_backward(x.cview(), w.cview(), dy.cview(), dx.view(), dw.view(), db.view());
  ck::linear_backward(xd.cview(), wd.cview(), dyd.cview(), dxd.view(), dwd.view(), dbd.view());
  require_close(dxd, dx, tl, "linear dx");
  require_close(dwd, dw, tl, "linear dw (+=)");
  require_close(dbd, db, tl, "linear db (+=)");
}

TEMPLATE_TEST_CASE("CUDA legacy attention matches the CPU op", "[cuda]", float, double) {
  AMBISEG_REQUIRE_GPU();
  using T = TestType;
  const tol<T> tl = std::is_same_v<T, float> ? tol<T>{5e-5, 5e-5} : tol<T>{1e-11, 1e-11};
  const std::int64_t b = 2, c = 12, t = 300;  // t > 256: rows longer than one block
  const int heads = 3;
  auto qkv = random_tensor<T>({b, 3 * c, t}, 30, -2, 2);
  auto dy = random_tensor<T>({b, c, t}, 31);
  auto qkvd = to_device(qkv), dyd = to_device(dy);
  const shape ps{b * heads, t, t};
  tensor<T> y({b, c, t}), probs(ps), dqkv({b, 3 * c, t});
  tensor<T, cuda> yd(shape{b, c, t}), probsd(ps), dqkvd(shape{b, 3 * c, t});
  workspace<cpu> ws;
  workspace<cuda> wsd;
  ops::attention_forward(qkv.cview(), heads, y.view(), probs.view(), ws);
  ck::attention_forward(qkvd.cview(), heads, yd.view(), probsd.view(), wsd);
  require_close(probsd, probs, tl, "attention probs");
  require_close(yd, y, tl, "attention y");
  ops::attention_backward(qkv.cview(), probs.cview(), dy.cview(), heads, dqkv.view(), ws);
  ck::attention_backward(qkvd.cview(), probsd.cview(), dyd.cview(), heads, dqkvd.view(), wsd);
  require_close(dqkvd, dqkv, tl, "attention dqkv");
}

TEST_CASE("CUDA row softmax matches a direct double evaluation", "[cuda]") {
  AMBISEG_REQUIRE_GPU();
  const std::int64_t rows = 3, len = 1000;
  auto x = random_tensor<float>({rows, len}, 40, -30, 30);
  auto dy = random_tensor<float>({rows, len}, 41);
  auto xd = to_device(x), dyd = to_device(dy);
  tensor<float, cuda> yd(shape{rows, len}), dxd(shape{rows, len});
  ck::softmax_rows_forward(xd.cview(), yd.view());
  ck::softmax_rows_backward(yd.cview(), dyd.cview(), dxd.view());
  tensor<float> y_ref({rows, len}), dx_ref({rows, len});
  for (std::int64_t r = 0; r < rows; ++r) {
    double mx = -INFINITY, sum = 0, dot = 0;
    for (std::int64_t j = 0; j < len; ++j) mx = std::max(mx, double(x[r * len + j]));
    std::vector<double> p(len);
    for (std::int64_t j = 0; j < len; ++j) sum += p[j] = std::exp(double(x[r * len + j]) - mx);
    for (std::int64_t j = 0; j < len; ++j) {
      p[j] /= sum;
      dot += p[j] * dy[r * len + j];
    }
    for (std::int64_t j = 0; j < len; ++j) {
      y_ref[r * len + j] = static_cast<float>(p[j]);
      dx_ref[r * len + j] = static_cast<float>(p[j] * (dy[r * len + j] - dot));
    }
  }
  require_close(yd, y_ref, {1e-7, 1e-5}, "softmax");
  require_close(dxd, dx_ref, {1e-7, 1e-4}, "softmax backward");
}

namespace {
struct conv_case {
  shape x, w;
  int stride, padding;
};
}  // namespace

TEST_CASE("CUDA conv2d (cuDNN graph API; 1x1 through cuBLAS or cuDNN) matches the CPU op", "[cuda]") {
  AMBISEG_REQUIRE_GPU();
  const auto path = GENERATE(conv1x1_path::cublas, conv1x1_path::cudnn);
  INFO("1x1 path " << (path == conv1x1_path::cublas ? "cublas" : "cudnn"));
  cuda_context ctx({.pointwise = path});  // strict fp32: no TF32 engines
  cuda_context_scope scope(ctx);
  const tol<float> tl{1e-4, 1e-4};
  const conv_case cases[] = {
      {{2, 4, 16, 16}, {8, 4, 3, 3}, 1, -1},   // ResBlock conv3x3
      {{2, 8, 16, 16}, {8, 8, 3, 3}, 2, 1},    // Downsample, stride 2
      {{3, 6, 9, 11}, {5, 6, 1, 1}, 1, -1},    // skip / qkv 1x1, odd extents
      {{1, 3, 7, 7}, {4, 3, 3, 3}, 1, 0},      // "valid" padding
      {{2, 6, 8, 8}, {4, 6, 1, 1}, 2, 0},      // 1x1 with stride 2: always a cuDNN plan
  };
  for (const auto& cc : cases) {
    const ops::conv2d_params p{cc.stride, cc.padding};
    const shape ys = ops::conv2d_output_shape(cc.x, cc.w, p);
    INFO("x " << cc.x.to_string() << " w " << cc.w.to_string() << " stride " << cc.stride);
    auto x = random_tensor<float>(cc.x, 50), w = random_tensor<float>(cc.w, 51);
    auto b = random_tensor<float>({cc.w[0]}, 52), dy = random_tensor<float>(ys, 53);
    auto xd = to_device(x), wd = to_device(w), bd = to_device(b), dyd = to_device(dy);
    workspace<cpu> ws;
    workspace<cuda> wsd;
    tensor<float> y(ys);
    tensor<float, cuda> yd(ys);
    ops::conv2d_forward(x.cview(), w.cview(), b.cview(), y.view(), p, ws);
    ck::conv2d_forward(xd.cview(), wd.cview(), bd.cview(), yd.view(), p.stride, p.padding, wsd);
    require_close(yd, y, tl, "conv forward");

    tensor<float> dx(cc.x);
    tensor<float, cuda> dxd(cc.x);
    auto dw = random_tensor<float>(cc.w, 54), db = random_tensor<float>({cc.w[0]}, 55);
    auto dwd = to_device(dw), dbd = to_device(db);
    ops::conv2d_backward(x.cview(), w.cview(), dy.cview(), dx.view(), dw.view(), db.view(), p, ws);
    ck::conv2d_backward(xd.cview(), wd.cview(), dyd.cview(), dxd.view(), dwd.view(), dbd.view(),
                        p.stride, p.padding, wsd);
    require_close(dxd, dx, tl, "conv dx");
    require_close(dwd, dw, tl, "conv dw (+=)");
    require_close(dbd, db, tl, "conv db (+=)");

    // Without dx (the stem): dw accumulates once more, nothing else is touched.
    ops::conv2d_backward(x.cview(), w.cview(), dy.cview(), tensor_view<float>{}, dw.view(),
                         tensor_view<float>{}, p, ws);
    ck::conv2d_backward(xd.cview(), wd.cview(), dyd.cview(), tensor_view<float, cuda>{},
                        dwd.view(), tensor_view<float, cuda>{}, p.stride, p.padding, wsd);
    require_close(dwd, dw, tl, "conv dw, second accumulation");
  }
  // Every (kind, shape) that cuDNN runs was planned once (the stride-1 1x1 case is no plan
  // on the cuBLAS path); the repeated weight-gradient call hit the cache.
  const auto stats = ctx.plan_stats();
  const int planned = path == conv1x1_path::cublas ? 4 : 5;
  CHECK(stats.builds == static_cast<std::uint64_t>(planned * 3));
  CHECK(stats.hits >= static_cast<std::uint64_t>(planned));
}

TEST_CASE("CUDA front functions validate shapes before touching the device", "[cuda]") {
  // Runs without a GPU: every call below throws before any CUDA call. The views carry a
  // non-null placeholder pointer (never dereferenced) so that they count as present.
  static float placeholder[1];
  auto v = [](shape s) { return tensor_view<float, cuda>(placeholder, s); };
  auto c = [](shape s) { return tensor_view<const float, cuda>(placeholder, s); };
  workspace<cuda> ws;
  CHECK_THROWS_AS(ck::silu_forward(c({2, 3}), v({3, 2})), shape_error);
  CHECK_THROWS_AS(ck::add_forward(c({2, 3}), c({2, 4}), v({2, 3})), shape_error);
  CHECK_THROWS_AS(ck::conv2d_forward(c({1, 4, 8, 8}), c({8, 3, 3, 3}), {}, v({1, 8, 8, 8}), 1, -1, ws),
                  shape_error);
  CHECK_THROWS_AS(ck::conv2d_forward(c({1, 4, 8, 8}), c({8, 4, 3, 3}), {}, v({1, 8, 7, 8}), 1, -1, ws),
                  shape_error);
  CHECK_THROWS_AS(ck::conv2d_forward(c({1, 4, 8, 8}), c({8, 4, 3, 3}), {}, v({1, 8, 8, 8}), 0, -1, ws),
                  value_error);
  CHECK_THROWS_AS(ck::group_norm_forward(c({2, 6, 4}), c({6}), c({6}), 4, 1e-5, v({2, 6, 4}),
                                         v({2, 4}), v({2, 4})),
                  value_error);
  CHECK_THROWS_AS(ck::linear_forward(c({2, 5}), c({3, 4}), {}, v({2, 3})), shape_error);
  CHECK_THROWS_AS(ck::attention_forward(c({1, 12, 9}), 5, v({1, 4, 9}), v({5, 9, 9}), ws),
                  shape_error);
  CHECK_THROWS_AS(ck::concat_channels_backward(c({1, 5, 2, 2}), v({1, 6, 2, 2}), {}), shape_error);
  CHECK_THROWS_AS(ck::timestep_embedding(c({4}), 0, 10.0, v({4, 0})), value_error);
  CHECK_THROWS_AS(diffusion_ck::diffusion_noise(c({2, 8}), c({2, 8}), c({3}), c({2}), v({2, 8})),
                  shape_error);
  optim::adamw_step_scalars<float> s{};
  CHECK_THROWS_AS(optim_ck::adamw_step(v({10}), c({10}), v({9}), v({10}), s), shape_error);
}
