// The device-generic front ends on ambiseg::cuda: every op of ops/<op>.hpp, adamw, gradient
// clipping and the weight average, called with cuda tensors, against the very same front end
// called with cpu tensors on host copies of the data. Unlike test_cuda_ops.cpp (which calls
// ops/cuda/api.hpp directly) this checks the dispatch: that changing the device template
// argument is all a caller does. Parameter gradients start from non-zero values so "+=" is
// checked. The fused group norm + SiLU is also checked against the unfused ops on the GPU.
// GPU cases skip without a device; the validation case runs everywhere.
#include "cuda_test_util.hpp"

#include <ambiseg/core/parameters.hpp>
#include <ambiseg/ops/all.hpp>
#include <ambiseg/optim/adamw.hpp>
#include <ambiseg/optim/clip.hpp>
#include <ambiseg/optim/ema.hpp>

#include <limits>

using namespace ambiseg;
using namespace cuda_test;

TEMPLATE_TEST_CASE("front ends on cuda: elementwise, bias, upsample, concat, embedding",
                   "[cuda][front]", float, double) {
  AMBISEG_REQUIRE_GPU();
  using T = TestType;
  const auto tl = default_tol<T>();
  const shape s{2, 3, 6, 5};
  auto x = random_tensor<T>(s, 101, -6, 6);
  auto dy = random_tensor<T>(s, 102);
  auto xd = to_device(x), dyd = to_device(dy);
  tensor<T> y(s), dx(s);
  tensor<T, cuda> yd(s), dxd(s);

  ops::silu_forward(x.cview(), y.view());
  ops::silu_forward(xd.cview(), yd.view());
  require_close(yd, y, tl, "silu_forward");
  ops::silu_backward(x.cview(), dy.cview(), dx.view());
  ops::silu_backward(xd.cview(), dyd.cview(), dxd.view());
  require_close(dxd, dx, tl, "silu_backward");

  ops::tanh_forward(x.cview(), y.view());
  ops::tanh_forward(xd.cview(), yd.view());
  require_close(yd, y, tl, "tanh_forward");
  ops::tanh_backward(y.cview(), dy.cview(), dx.view());
  ops::tanh_backward(yd.cview(), dyd.cview(), dxd.view());
  require_close(dxd, dx, tl, "tanh_backward");

  ops::add_forward(x.cview(), dy.cview(), y.view());
  ops::add_forward(xd.cview(), dyd.cview(), yd.view());
  require_close(yd, y, {0, 0}, "add_forward");

  auto e = random_tensor<T>({2, 3}, 103);
  auto ed = to_device(e);
  ops::add_channel_bias_forward(y.view(), e.cview());
  ops::add_channel_bias_forward(yd.view(), ed.cview());
  require_close(yd, y, {0, 0}, "add_channel_bias_forward");
  tensor<T> de({2, 3});
  tensor<T, cuda> ded(shape{2, 3});
  ops::add_channel_bias_backward(y.cview(), de.view());
  ops::add_channel_bias_backward(yd.cview(), ded.view());
  require_close(ded, de, tl, "add_channel_bias_backward");

  const shape up{2, 3, 12, 10};
  tensor<T> yu(up), dxu(s);
  tensor<T, cuda> yud(up), dxud(s);
  ops::upsample_nearest2x_forward(x.cview(), yu.view());
  ops::upsample_nearest2x_forward(xd.cview(), yud.view());
  require_close(yud, yu, {0, 0}, "upsample forward");
  ops::upsample_nearest2x_backward(yu.cview(), dxu.view());
  ops::upsample_nearest2x_backward(yud.cview(), dxud.view());
  require_close(dxud, dxu, {0, 0}, "upsample backward");

  const shape cat{2, 6, 6, 5};
  tensor<T> yc(cat), da(s), db(s);
  tensor<T, cuda> ycd(cat), dad(s), dbd(s);
  ops::concat_channels_forward(x.cview(), dy.cview(), yc.view());
  ops::concat_channels_forward(xd.cview(), dyd.cview(), ycd.view());
  require_close(ycd, yc, {0, 0}, "concat forward");
  ops::concat_channels_backward(ycd.cview(), dad.view(), dbd.view());
  require_close(dad, x, {0, 0}, "concat backward da");
  require_close(dbd, dy, {0, 0}, "concat backward db");
  dbd.zero();
  ops::concat_channels_backward(ycd.cview(), tensor_view<T, cuda>{}, dbd.view());
  require_close(dbd, dy, {0, 0}, "concat backward, db only");

  auto t = tensor<T>::from({3}, {T(0), T(0.4), T(1)});
  auto td = to_device(t);
  tensor<T> emb({3, 17});
  tensor<T, cuda> embd(shape{3, 17});
  ops::timestep_embedding(t.cview(), 17, 10.0, emb.view());
  ops::timestep_embedding(td.cview(), 17, 10.0, embd.view());
  require_close(embd, emb, tl, "timestep_embedding");
}

TEMPLATE_TEST_CASE("front ends on cuda: group norm, plain and fused with SiLU", "[cuda][front]",
                   float, double) {
  AMBISEG_REQUIRE_GPU();
  using T = TestType;
  // float: fp32 block-tree sums on the GPU, float blocks with double partials on the CPU.
  const tol<T> tl = std::is_same_v<T, float> ? tol<T>{1e-4, 1e-4} : tol<T>{1e-11, 1e-11};
  for (const shape s : {shape{2, 8, 6, 7}, shape{3, 12, 40}, shape{2, 4, 33, 33}}) {
    const int groups = s[1] == 12 ? 3 : 4;
    INFO("x " << s.to_string() << ", groups " << groups);
    auto x = random_tensor<T>(s, 110, -2, 3);
    auto gamma = random_tensor<T>({s[1]}, 111, 0.5, 1.5);
    auto beta = random_tensor<T>({s[1]}, 112);
    auto dy = random_tensor<T>(s, 113);
    auto xd = to_device(x), gd = to_device(gamma), bd = to_device(beta), dyd = to_device(dy);
    const shape st{s[0], groups};

    for (const bool fused : {false, true}) {
      INFO((fused ? "group_norm_silu" : "group_norm"));
      tensor<T> y(s), mean(st), rstd(st), dx(s);
      tensor<T, cuda> yd(s), meand(st), rstdd(st), dxd(s);
      auto dgamma = random_tensor<T>({s[1]}, 114), dbeta = random_tensor<T>({s[1]}, 115);
      auto dgd = to_device(dgamma), dbd = to_device(dbeta);
      if (fused) {
        ops::group_norm_silu_forward(x.cview(), gamma.cview(), beta.cview(), groups, 1e-5,
                                     y.view(), mean.view(), rstd.view());
        ops::group_norm_silu_forward(xd.cview(), gd.cview(), bd.cview(), groups, 1e-5, yd.view(),
                                     meand.view(), rstdd.view());
        ops::group_norm_silu_backward(x.cview(), gamma.cview(), beta.cview(), mean.cview(),
                                      rstd.cview(), dy.cview(), groups, dx.view(), dgamma.view(),
                                      dbeta.view());
        ops::group_norm_silu_backward(xd.cview(), gd.cview(), bd.cview(), meand.cview(),
                                      rstdd.cview(), dyd.cview(), groups, dxd.view(), dgd.view(),
                                      dbd.view());
      } else {
        ops::group_norm_forward(x.cview(), gamma.cview(), beta.cview(), groups, 1e-5, y.view(),
                                mean.view(), rstd.view());
        ops::group_norm_forward(xd.cview(), gd.cview(), bd.cview(), groups, 1e-5, yd.view(),
                                meand.view(), rstdd.view());
        ops::group_norm_backward(x.cview(), gamma.cview(), mean.cview(), rstd.cview(),
                                 dy.cview(), groups, dx.view(), dgamma.view(), dbeta.view());
        ops::group_norm_backward(xd.cview(), gd.cview(), meand.cview(), rstdd.cview(),
                                 dyd.cview(), groups, dxd.view(), dgd.view(), dbd.view());
      }
      require_close(yd, y, tl, "y");
      require_close(meand, mean, tl, "mean");
      require_close(rstdd, rstd, tl, "rstd");
      require_close(dxd, dx, tl, "dx");
      require_close(dgd, dgamma, tl, "dgamma (+=)");
      require_close(dbd, dbeta, tl, "dbeta (+=)");
    }
  }
}

TEMPLATE_TEST_CASE("fused group norm + SiLU on cuda equals the two unfused ops on cuda",
                   "[cuda][front]", float, double) {
  AMBISEG_REQUIRE_GPU();
  using T = TestType;
  // The same maths in another kernel arrangement: only the normalised values' rounding
  // (γ·x̂ + β vs x·a + b) and the sums' order differ.
  const tol<T> tl = std::is_same_v<T, float> ? tol<T>{2e-5, 2e-5} : tol<T>{1e-12, 1e-12};
  const shape s{2, 6, 9, 10};
  const int groups = 3;
  auto x = to_device(random_tensor<T>(s, 120, -2, 2));
  auto gamma = to_device(random_tensor<T>({6}, 121, 0.5, 1.5));
  auto beta = to_device(random_tensor<T>({6}, 122));
  auto dy = to_device(random_tensor<T>(s, 123));
  const shape st{2, groups};
  tensor<T, cuda> z(s), y_ref(s), dz(s), dx_ref(s), mean(st), rstd(st);
  tensor<T, cuda> dg_ref = tensor<T, cuda>::zeros(shape{6}), db_ref = tensor<T, cuda>::zeros(shape{6});
  ops::group_norm_forward(x.cview(), gamma.cview(), beta.cview(), groups, 1e-5, z.view(),
                          mean.view(), rstd.view());
  ops::silu_forward(z.cview(), y_ref.view());
  ops::silu_backward(z.cview(), dy.cview(), dz.view());
  ops::group_norm_backward(x.cview(), gamma.cview(), mean.cview(), rstd.cview(), dz.cview(),
                           groups, dx_ref.view(), dg_ref.view(), db_ref.view());

  tensor<T, cuda> y(s), dx(s), mean_f(st), rstd_f(st);
  tensor<T, cuda> dg = tensor<T, cuda>::zeros(shape{6}), db = tensor<T, cuda>::zeros(shape{6});
  ops::group_norm_silu_forward(x.cview(), gamma.cview(), beta.cview(), groups, 1e-5, y.view(),
                               mean_f.view(), rstd_f.view());
  ops::group_norm_silu_backward(x.cview(), gamma.cview(), beta.cview(), mean_f.cview(),
                                rstd_f.cview(), dy.cview(), groups, dx.view(), dg.view(),
                                db.view());
  require_close(mean_f, to_host(mean), tl, "mean (same statistics code)");
  require_close(rstd_f, to_host(rstd), tl, "rstd (same statistics code)");
  require_close(y, to_host(y_ref), tl, "fused y vs silu(group_norm)");
  require_close(dx, to_host(dx_ref), tl, "fused dx vs unfused chain");
  require_close(dg, to_host(dg_ref), tl, "fused dgamma");
  require_close(db, to_host(db_ref), tl, "fused dbeta");
}

TEMPLATE_TEST_CASE("front ends on cuda: linear and attention", "[cuda][front]", float, double) {
  AMBISEG_REQUIRE_GPU();
  using T = TestType;
  {
    const auto tl = default_tol<T>();
    const std::int64_t n = 4, in = 29, out = 13;
    auto x = random_tensor<T>({n, in}, 130), w = random_tensor<T>({out, in}, 131);
    auto b = random_tensor<T>({out}, 132), dy = random_tensor<T>({n, out}, 133);
    auto xd = to_device(x), wd = to_device(w), bd = to_device(b), dyd = to_device(dy);
    tensor<T> y({n, out}), dx({n, in});
    tensor<T, cuda> yd(shape{n, out}), dxd(shape{n, in});
    ops::linear_forward(x.cview(), w.cview(), b.cview(), y.view());
    ops::linear_forward(xd.cview(), wd.cview(), bd.cview(), yd.view());
    require_close(yd, y, tl, "linear_forward");
    auto dw = random_tensor<T>({out, in}, 134), db = random_tensor<T>({out}, 135);
    auto dwd = to_device(dw), dbd = to_device(db);
    ops::linear_backward(x.cview(), w.cview(), dy.cview(), dx.view(), dw.view(), db.view());
    ops::linear_backward(xd.cview(), wd.cview(), dyd.cview(), dxd.view(), dwd.view(), dbd.view());
    require_close(dxd, dx, tl, "linear dx");
    require_close(dwd, dw, tl, "linear dw (+=)");
    require_close(dbd, db, tl, "linear db (+=)");
  }
  {
    const tol<T> tl = std::is_same_v<T, float> ? tol<T>{5e-5, 5e-5} : tol<T>{1e-11, 1e-11};
    const std::int64_t b = 2, c = 8, t = 64;
    const int heads = 2;
    auto qkv = random_tensor<T>({b, 3 * c, t}, 140, -2, 2);
    auto dy = random_tensor<T>({b, c, t}, 141);
    auto qkvd = to_device(qkv), dyd = to_device(dy);
    const shape ps{b * heads, t, t};
    tensor<T> y({b, c, t}), probs(ps), dqkv({b, 3 * c, t});
    tensor<T, cuda> yd(shape{b, c, t}), probsd(ps), dqkvd(shape{b, 3 * c, t});
    workspace<cpu> ws;
    workspace<cuda> wsd;
    ops::attention_forward(qkv.cview(), heads, y.view(), probs.view(), ws);
    ops::attention_forward(qkvd.cview(), heads, yd.view(), probsd.view(), wsd);
    require_close(probsd, probs, tl, "attention probs");
    require_close(yd, y, tl, "attention y");
    ops::attention_backward(qkv.cview(), probs.cview(), dy.cview(), heads, dqkv.view(), ws);
    ops::attention_backward(qkvd.cview(), probsd.cview(), dyd.cview(), heads, dqkvd.view(), wsd);
    require_close(dqkvd, dqkv, tl, "attention dqkv");
  }
}

TEST_CASE("front ends on cuda: conv2d (float)", "[cuda][front]") {
  AMBISEG_REQUIRE_GPU();
  cuda_context ctx;  // strict fp32: no TF32 engines
  cuda_context_scope scope(ctx);
  const tol<float> tl{1e-4, 1e-4};
  struct conv_case {
    shape x, w;
    ops::conv2d_params p;
  };
  const conv_case cases[] = {
      {{2, 4, 12, 12}, {6, 4, 3, 3}, {1, -1}},  // same 3x3
      {{1, 6, 12, 12}, {6, 6, 3, 3}, {2, 1}},   // stride-2 downsample
      {{2, 5, 7, 9}, {3, 5, 1, 1}, {1, -1}},    // 1x1
  };
  for (const auto& cc : cases) {
    INFO("x " << cc.x.to_string() << " w " << cc.w.to_string() << " stride " << cc.p.stride);
    const shape ys = ops::conv2d_output_shape(cc.x, cc.w, cc.p);
    auto x = random_tensor<float>(cc.x, 150), w = random_tensor<float>(cc.w, 151);
    auto b = random_tensor<float>({cc.w[0]}, 152), dy = random_tensor<float>(ys, 153);
    auto xd = to_device(x), wd = to_device(w), bd = to_device(b), dyd = to_device(dy);
    workspace<cpu> ws;
    workspace<cuda> wsd;
    tensor<float> y(ys), dx(cc.x);
    tensor<float, cuda> yd(ys), dxd(cc.x);
    ops::conv2d_forward(x.cview(), w.cview(), b.cview(), y.view(), cc.p, ws);
    ops::conv2d_forward(xd.cview(), wd.cview(), bd.cview(), yd.view(), cc.p, wsd);
    require_close(yd, y, tl, "conv2d_forward");
    auto dw = random_tensor<float>(cc.w, 154), db = random_tensor<float>({cc.w[0]}, 155);
    auto dwd = to_device(dw), dbd = to_device(db);
    ops::conv2d_backward(x.cview(), w.cview(), dy.cview(), dx.view(), dw.view(), db.view(), cc.p,
                         ws);
    ops::conv2d_backward(xd.cview(), wd.cview(), dyd.cview(), dxd.view(), dwd.view(), dbd.view(),
                         cc.p, wsd);
    require_close(dxd, dx, tl, "conv2d dx");
    require_close(dwd, dw, tl, "conv2d dw (+=)");
    require_close(dbd, db, tl, "conv2d db (+=)");
  }
}

TEMPLATE_TEST_CASE("adamw<T, cuda> follows adamw<T, cpu> over several steps", "[cuda][front]",
                   float, double) {
  AMBISEG_REQUIRE_GPU();
  using T = TestType;
  // Two parameters in one store: the padding slot between them must stay exactly zero.
  parameter_store<T> host;
  parameter_store<T, cuda> dev;
  host.add("a", shape{5, 7});
  host.add("b", shape{300});
  host.allocate();
  dev.add("a", shape{5, 7});
  dev.add("b", shape{300});
  dev.allocate();
  const std::int64_t flat = host.flat_values().numel();
  const std::int64_t pad_first = 35, pad_last = host.info(1).offset;  // [35, offset of "b")
  REQUIRE(dev.flat_values().numel() == flat);
  REQUIRE(pad_last > pad_first);
  auto init = random_tensor<T>({flat}, 160);
  for (std::int64_t i = pad_first; i < pad_last; ++i) init[i] = T(0);
  std::copy(init.begin(), init.end(), host.flat_values().data());
  copy_to_device<T>(init.cview(), dev.flat_values());

  optim::adamw_options o;
  o.lr = 1e-2;
  o.weight_decay = 0.1;
  optim::adamw<T> cpu_opt(host, o);
  optim::adamw<T, cuda> gpu_opt(dev, o);
  for (int step = 1; step <= 4; ++step) {
    auto g = random_tensor<T>({flat}, 160 + step);
    for (std::int64_t i = pad_first; i < pad_last; ++i) g[i] = T(0);
    std::copy(g.begin(), g.end(), host.flat_grads().data());
    copy_to_device<T>(g.cview(), dev.flat_grads());
    if (step == 3) {  // clipping through the same front end on both devices
      const double ncpu = optim::clip_grad_norm(host, 1.0);
      const double ngpu = optim::clip_grad_norm(dev, 1.0);
      CHECK(std::abs(ngpu - ncpu) <= 1e-12 * ncpu);
      CHECK(optim::global_grad_norm<T>(dev.flat_grads()) <= 1.0 + 1e-6);
    }
    cpu_opt.step(host);
    gpu_opt.step(dev);
  }
  CHECK(gpu_opt.steps() == 4);
  const tol<T> tl = std::is_same_v<T, float> ? tol<T>{1e-7, 1e-6} : tol<T>{1e-15, 1e-14};
  tensor<T> values({flat}), m({flat}), v({flat});
  std::copy(host.flat_values().begin(), host.flat_values().end(), values.begin());
  m.copy_from(cpu_opt.exp_avg());
  v.copy_from(cpu_opt.exp_avg_sq());
  tensor<T, cuda> dev_values(shape{flat});
  dev_values.copy_from(dev.flat_values());
  require_close(dev_values, values, tl, "parameters");
  tensor<T, cuda> dm(shape{flat}), dv(shape{flat});
  dm.copy_from(gpu_opt.exp_avg());
  dv.copy_from(gpu_opt.exp_avg_sq());
  require_close(dm, m, tl, "exp_avg");
  require_close(dv, v, tl, "exp_avg_sq");
  const auto back = to_host(dev_values);
  for (std::int64_t i = pad_first; i < pad_last; ++i) CHECK(back[i] == T(0));

  // The non-finite policy of the front end holds on the device too.
  auto bad = random_tensor<T>({flat}, 170);
  bad[3] = std::numeric_limits<T>::infinity();
  copy_to_device<T>(bad.cview(), dev.flat_grads());
  CHECK_THROWS_AS(optim::clip_grad_norm(dev, 1.0), value_error);
  CHECK(std::isinf(optim::clip_grad_norm(dev, 1.0, optim::nonfinite_policy::report)));
}

TEMPLATE_TEST_CASE("ema<T, cuda> follows ema<T, cpu>", "[cuda][front]", float, double) {
  AMBISEG_REQUIRE_GPU();
  using T = TestType;
  parameter_store<T> host;
  parameter_store<T, cuda> dev;
  host.add("w", shape{1000});
  host.allocate();
  dev.add("w", shape{1000});
  dev.allocate();
  auto w0 = random_tensor<T>({1000}, 180);
  std::copy(w0.begin(), w0.end(), host.flat_values().data());
  copy_to_device<T>(w0.cview(), dev.flat_values());
  optim::ema<T> cpu_avg(host, 0.9);
  optim::ema<T, cuda> gpu_avg(dev, 0.9);
  for (int k = 1; k <= 3; ++k) {
    auto w = random_tensor<T>({1000}, 180 + k);
    std::copy(w.begin(), w.end(), host.flat_values().data());
    copy_to_device<T>(w.cview(), dev.flat_values());
    cpu_avg.update(host);
    gpu_avg.update(dev);
  }
  CHECK(gpu_avg.updates() == 3);
  const tol<T> tl = std::is_same_v<T, float> ? tol<T>{1e-7, 1e-6} : tol<T>{1e-15, 1e-14};
  tensor<T> shadow({1000});
  shadow.copy_from(cpu_avg.shadow());
  tensor<T, cuda> dshadow(shape{1000});
  dshadow.copy_from(gpu_avg.shadow());
  require_close(dshadow, shadow, tl, "shadow");

  // swap_with exchanges the buffers; copy_to copies the average in.
  tensor<T> live({1000});
  std::copy(host.flat_values().begin(), host.flat_values().end(), live.begin());
  gpu_avg.swap_with(dev);
  tensor<T, cuda> now(shape{1000});
  now.copy_from(dev.flat_values());
  require_close(now, shadow, tl, "weights after swap_with");
  dshadow.copy_from(gpu_avg.shadow());
  require_close(dshadow, live, {0, 0}, "shadow after swap_with");
  gpu_avg.swap_with(dev);
  gpu_avg.copy_to(dev);
  now.copy_from(dev.flat_values());
  require_close(now, shadow, tl, "weights after copy_to");
}

TEST_CASE("front ends on cuda validate before touching the device", "[cuda][front]") {
  // Runs without a GPU: each call throws in the front end's own checks. The views carry a
  // non-null placeholder pointer (never dereferenced) so that they count as present.
  static float placeholder[4];
  auto v = [](shape s, int k = 0) { return tensor_view<float, cuda>(placeholder + k, s); };
  auto c = [](shape s, int k = 0) { return tensor_view<const float, cuda>(placeholder + k, s); };
  workspace<cuda> ws;
  CHECK_THROWS_AS(ops::silu_forward(c({2, 3}), v({3, 2})), shape_error);
  CHECK_THROWS_AS(ops::tanh_backward(c({2, 3}), c({2, 3}), v({2, 4})), shape_error);
  CHECK_THROWS_AS(ops::add_channel_bias_forward(v({2, 3, 4, 4}), c({2, 4})), shape_error);
  CHECK_THROWS_AS(ops::upsample_nearest2x_forward(c({1, 2, 3, 3}), v({1, 2, 6, 5})), shape_error);
  CHECK_THROWS_AS(ops::concat_channels_forward(c({1, 2, 3, 3}), c({1, 2, 3, 4}), v({1, 4, 3, 3})),
                  shape_error);
  CHECK_THROWS_AS(ops::timestep_embedding(c({4}), 8, -1.0, v({4, 8})), value_error);
  CHECK_THROWS_AS(ops::linear_forward(c({2, 5}), c({3, 4}), {}, v({2, 3})), shape_error);
  CHECK_THROWS_AS(ops::attention_forward(c({1, 12, 9}), 5, v({1, 4, 9}), v({5, 9, 9}), ws),
                  shape_error);
  CHECK_THROWS_AS(ops::conv2d_forward(c({1, 4, 8, 8}), c({8, 4, 3, 3}), {}, v({1, 8, 8, 8}),
                                      ops::conv2d_params{0, -1}, ws),
                  value_error);
  CHECK_THROWS_AS(ops::group_norm_forward(c({2, 6, 4}), c({6}), c({6}), 4, 1e-5, v({2, 6, 4}),
                                          v({2, 4}), v({2, 4})),
                  value_error);
  CHECK_THROWS_AS(ops::group_norm_silu_forward(c({2, 6, 4}), c({6}), c({6}), 3, 0.0,
                                               v({2, 6, 4}), v({2, 3}), v({2, 3})),
                  value_error);
  // The fused backward keeps dz in dx: dx aliasing dy is refused, in the front end and in
  // the CUDA function itself.
  CHECK_THROWS_AS(ops::group_norm_silu_backward(c({2, 6, 4}), c({6}), c({6}), c({2, 3}),
                                                c({2, 3}), c({2, 6, 4}, 1), 3, v({2, 6, 4}, 1),
                                                {}, {}),
                  value_error);
  CHECK_THROWS_AS(ops::cuda_kernels::group_norm_silu_backward<float>(
                      c({2, 6, 4}), c({6}), c({6}), c({2, 3}), c({2, 3}), c({2, 6, 4}, 1), 3,
                      v({2, 6, 4}, 1), {}, {}),
                  value_error);
  CHECK_THROWS_AS(ops::cuda_kernels::group_norm_silu_forward<float>(
                      c({2, 6, 4}), c({6}), c({5}), 3, 1e-5, v({2, 6, 4}), v({2, 3}), v({2, 3})),
                  shape_error);
  CHECK_THROWS_AS(optim::cuda_kernels::ema_update<float>(v({10}), c({9}), 0.9), shape_error);
  CHECK_THROWS_AS(optim::cuda_kernels::ema_update<float>(v({10}), c({10}), 1.5), value_error);
  CHECK_THROWS_AS(optim::cuda_kernels::swap_contents<float>(v({10}), v({9})), shape_error);
}
