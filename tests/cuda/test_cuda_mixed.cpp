// Mixed precision on a bf16/fp16 context (core/cuda_context.hpp, ops/cuda/mixed.cuh): the
// float GEMMs and convolutions multiply 16-bit roundings of their operands and sum in float.
// References: the CPU ops in double on the operands rounded by core/low_precision.hpp,
// so what is checked is the arithmetic, not a tolerance wide enough to hide a missing
// rounding:
//   cuBLAS paths (linear, attention, 1x1 conv)  float out: |Δ| ≤ 1e-5·(1 + |ref|), and
//     the result differs from the unrounded-operand product (the rounding did happen)
//   cuDNN paths (3x3, strided conv)             16-bit out, widened: every value is a
//     16-bit value, within one 16-bit step (+ 1e-5 for float sums near 0) of the
//     reference on rounded operands
#include "cuda_unet_util.hpp"

#include <ambiseg/core/low_precision.hpp>
#include <ambiseg/ops/all.hpp>
#include <ambiseg/ops/cuda/api.hpp>

#include <cmath>

using namespace ambiseg;
using namespace cuda_test;
namespace ck = ambiseg::ops::cuda_kernels;

namespace {

float round16(cuda_precision p, float v) {
  return p == cuda_precision::bf16 ? bf16_float(bf16_bits(v)) : half_float(half_bits(v));
}
// The spacing of 16-bit values at |v| (mantissa bits: 8 for bfloat16, 11 for half).
double step16(cuda_precision p, double v) {
  const int bits = p == cuda_precision::bf16 ? 8 : 11;
  const double floor_step = p == cuda_precision::bf16 ? 0x1p-133 : 0x1p-24;
  return std::max(floor_step, std::ldexp(1.0, std::ilogb(std::max(std::abs(v), 1e-30)) - bits + 1));
}

tensor<double> rounded(cuda_precision p, const tensor<float>& t) {
  tensor<double> out(t.shape());
  for (std::int64_t i = 0; i < t.numel(); ++i) out[i] = round16(p, t[i]);
  return out;
}
tensor<double> widened(const tensor<float>& t) {
  tensor<double> out(t.shape());
  for (std::int64_t i = 0; i < t.numel(); ++i) out[i] = t[i];
  return out;
}

// cuBLAS paths: float sums of exact products of rounded operands.
void require_float_sum(const tensor<float>& got, const tensor<double>& ref,
                       const tensor<double>& unrounded, const char* what) {
  REQUIRE(got.shape() == ref.shape());
  int bad = 0;
  double from_unrounded = 0;
  for (std::int64_t i = 0; i < ref.numel(); ++i) {
    bad += !(std::abs(got[i] - ref[i]) <= 1e-5 * (1 + std::abs(ref[i])));
    from_unrounded = std::max(from_unrounded, std::abs(got[i] - unrounded[i]));
  }
  INFO(what << ": " << bad << " of " << ref.numel() << " outside float summation error; largest "
            << "difference from the unrounded product " << from_unrounded);
  CHECK(bad == 0);
  CHECK(from_unrounded > 1e-4);
}

// cuDNN paths: a 16-bit value within one 16-bit step of the rounded reference `ref`,
// after `base` (a float gradient the result was added to) is taken away.
void require_sixteen_bit(cuda_precision p, const tensor<float>& got, const tensor<double>& ref,
                         const tensor<double>* base, const char* what) {
  REQUIRE(got.shape() == ref.shape());
  int off_grid = 0, far = 0;
  for (std::int64_t i = 0; i < ref.numel(); ++i) {
    const double v = base ? double(got[i]) - (*base)[i] : double(got[i]);
    if (!base) off_grid += round16(p, got[i]) != got[i];
    // one 16-bit step, plus the float sums' own error where the value is near 0
    far += !(std::abs(v - ref[i]) <= step16(p, ref[i]) + 1e-5 + (base ? 1e-6 * std::abs((*base)[i]) : 0.0));
  }
  INFO(what << ": " << off_grid << " values not 16-bit, " << far << " of " << ref.numel()
            << " farther than one 16-bit step");
  CHECK(off_grid == 0);
  CHECK(far == 0);
}

// A context of the given precision, current for the test case.
struct context_at {
  explicit context_at(cuda_precision p) : ctx({.precision = p}), scope(ctx) {}
  cuda_context ctx;
  cuda_context_scope scope;
};

}  // namespace

TEST_CASE("bf16/fp16 contexts: linear and attention multiply 16-bit operands, sum and return float",
          "[cuda][mixed]") {
  AMBISEG_REQUIRE_GPU();
  const auto precision = GENERATE(cuda_precision::bf16, cuda_precision::fp16);
  INFO(precision_name(precision));
  const context_at on(precision);

  const std::int64_t n = 6, in = 40, out = 21;
  const auto x = random_tensor<float>({n, in}, 1), w = random_tensor<float>({out, in}, 2);
  const auto dy = random_tensor<float>({n, out}, 3);
  tensor<float, cuda> yd(shape{n, out}), dxd(shape{n, in}), dwd(shape{out, in});
  dwd.zero();
  ck::linear_forward(to_device(x).cview(), to_device(w).cview(), tensor_view<const float, cuda>{}, yd.view());
  ck::linear_backward(to_device(x).cview(), to_device(w).cview(), to_device(dy).cview(), dxd.view(),
                      dwd.view(), tensor_view<float, cuda>{});
  tensor<double> y_ref({n, out}), y_plain({n, out}), dx_ref({n, in}), dx_plain({n, in}),
      dw_ref({out, in}), dw_plain({out, in});
  dw_ref.zero();
  dw_plain.zero();
  const auto xr = rounded(precision, x), wr = rounded(precision, w), dyr = rounded(precision, dy);
  ops::linear_forward(xr.cview(), wr.cview(), tensor_view<const double>{}, y_ref.view());
  ops::linear_forward(widened(x).cview(), widened(w).cview(), tensor_view<const double>{}, y_plain.view());
  ops::linear_backward(xr.cview(), wr.cview(), dyr.cview(), dx_ref.view(), dw_ref.view(), tensor_view<double>{});
  ops::linear_backward(widened(x).cview(), widened(w).cview(), widened(dy).cview(), dx_plain.view(),
                       dw_plain.view(), tensor_view<double>{});
  require_float_sum(to_host(yd), y_ref, y_plain, "linear y");
  require_float_sum(to_host(dxd), dx_ref, dx_plain, "linear dx");
  require_float_sum(to_host(dwd), dw_ref, dw_plain, "linear dw");

  // Attention: QᵀK and V·Pᵀ (forward); the probabilities are float (softmax in float), so
  // P is rounded again as the second product's operand.
  const std::int64_t b = 2, c = 8, t = 24;
  const int heads = 2;
  const auto qkv = random_tensor<float>({b, 3 * c, t}, 4, -2, 2);
  tensor<float, cuda> ad(shape{b, c, t}), probsd(shape{b * heads, t, t});
  workspace<cuda> wsd;
  ck::attention_forward(to_device(qkv).cview(), heads, ad.view(), probsd.view(), wsd);
  const tensor<float> probs = to_host(probsd);
  // The reference from the device's own probabilities: y = V·Pᵀ on rounded operands.
  tensor<double> a_ref({b, c, t}), a_plain({b, c, t});
  const std::int64_t ch = c / heads;
  for (std::int64_t bh = 0; bh < b * heads; ++bh)
    for (std::int64_t i = 0; i < ch; ++i)
      for (std::int64_t q = 0; q < t; ++q) {
        double sr = 0, sp = 0;
        for (std::int64_t k = 0; k < t; ++k) {
          const float v = qkv[bh * 3 * ch * t + 2 * ch * t + i * t + k];
          const float pr = probs[(bh * t + q) * t + k];
          sr += double(round16(precision, v)) * round16(precision, pr);
          sp += double(v) * pr;
        }
        a_ref[bh * ch * t + i * t + q] = sr;
        a_plain[bh * ch * t + i * t + q] = sp;
      }
  require_float_sum(to_host(ad), a_ref, a_plain, "attention y");
}

TEST_CASE("bf16/fp16 contexts: convolutions run on 16-bit tensors with float accumulation",
          "[cuda][mixed]") {
  AMBISEG_REQUIRE_GPU();
  const auto precision = GENERATE(cuda_precision::bf16, cuda_precision::fp16);
  INFO(precision_name(precision));
  const context_at on(precision);
  struct conv_case {
    shape x, w;
    int stride, padding;
    bool cudnn;  // a cuDNN plan (16-bit output) rather than a cuBLAS GEMM (float output)
  };
  const conv_case cases[] = {
      {{2, 6, 10, 10}, {8, 6, 3, 3}, 1, -1, true},
      {{2, 8, 9, 9}, {4, 8, 3, 3}, 2, 1, true},
      {{2, 6, 7, 5}, {5, 6, 1, 1}, 1, -1, false},
  };
  for (const conv_case& cc : cases) {
    INFO("x " << cc.x.to_string() << " w " << cc.w.to_string() << " stride " << cc.stride);
    const ops::conv2d_params p{cc.stride, cc.padding};
    const shape ys = ops::conv2d_output_shape(cc.x, cc.w, p);
    const auto x = random_tensor<float>(cc.x, 10), w = random_tensor<float>(cc.w, 11);
    const auto dy = random_tensor<float>(ys, 12), dw0 = random_tensor<float>(cc.w, 13);
    const auto b = random_tensor<float>({cc.w[0]}, 14);
    workspace<cuda> wsd;
    workspace<cpu> ws;
    tensor<float, cuda> yd(ys), dxd(cc.x);
    auto dwd = to_device(dw0);
    tensor<float, cuda> dbd(shape{cc.w[0]});
    dbd.zero();
    ck::conv2d_forward(to_device(x).cview(), to_device(w).cview(), tensor_view<const float, cuda>{},
                       yd.view(), p.stride, p.padding, wsd);
    ck::conv2d_backward(to_device(x).cview(), to_device(w).cview(), to_device(dy).cview(), dxd.view(),
                        dwd.view(), dbd.view(), p.stride, p.padding, wsd);
    const auto xr = rounded(precision, x), wr = rounded(precision, w), dyr = rounded(precision, dy);
    tensor<double> y_ref(ys), y_plain(ys), dx_ref(cc.x), dx_plain(cc.x), dw_ref(cc.w), dw_plain(cc.w),
        db_ref(shape{cc.w[0]});
    dw_ref.zero();
    dw_plain.zero();
    db_ref.zero();
    ops::conv2d_forward(xr.cview(), wr.cview(), tensor_view<const double>{}, y_ref.view(), p, ws);
    ops::conv2d_backward(xr.cview(), wr.cview(), dyr.cview(), dx_ref.view(), dw_ref.view(),
                         tensor_view<double>{}, p, ws);
    const tensor<float> dw = to_host(dwd);
    if (cc.cudnn) {
      require_sixteen_bit(precision, to_host(yd), y_ref, nullptr, "conv y");
      require_sixteen_bit(precision, to_host(dxd), dx_ref, nullptr, "conv dx");
      const tensor<double> base = widened(dw0);
      require_sixteen_bit(precision, dw, dw_ref, &base, "conv dw (+=)");
    } else {
      ops::conv2d_forward(widened(x).cview(), widened(w).cview(), tensor_view<const double>{},
                          y_plain.view(), p, ws);
      ops::conv2d_backward(widened(x).cview(), widened(w).cview(), widened(dy).cview(),
                           dx_plain.view(), dw_plain.view(), tensor_view<double>{}, p, ws);
      require_float_sum(to_host(yd), y_ref, y_plain, "1x1 conv y");
      require_float_sum(to_host(dxd), dx_ref, dx_plain, "1x1 conv dx");
      tensor<float> dw_delta(cc.w);
      for (std::int64_t i = 0; i < dw.numel(); ++i) dw_delta[i] = dw[i] - dw0[i];
      require_float_sum(dw_delta, dw_ref, dw_plain, "1x1 conv dw (+=)");
    }
    // The bias gradient is a float sum of float dy: no rounding.
    ops::conv2d_backward(widened(x).cview(), widened(w).cview(), widened(dy).cview(),
                         tensor_view<double>{}, tensor_view<double>{}, db_ref.view(), p, ws);
    const tensor<float> db = to_host(dbd);
    for (std::int64_t i = 0; i < db.numel(); ++i) CHECK(std::abs(db[i] - db_ref[i]) <= 1e-5 * (1 + std::abs(db_ref[i])));
    // With a bias: y = the same 16-bit result + b in float.
    tensor<float, cuda> ybd(ys);
    ck::conv2d_forward(to_device(x).cview(), to_device(w).cview(), to_device(b).cview(), ybd.view(),
                       p.stride, p.padding, wsd);
    const tensor<float> y = to_host(yd), yb = to_host(ybd);
    int bias_off = 0;
    const std::int64_t plane = ys[2] * ys[3];
    for (std::int64_t i = 0; i < y.numel(); ++i) bias_off += yb[i] != y[i] + b[(i / plane) % ys[1]];
    CHECK(bias_off == 0);
  }
}

// The whole UNet on a bf16/fp16 context against the CPU in float: the forward and every
// parameter gradient stay close to the fp32 result, with the error of 16-bit operands
// (measured on the emulator: forward error 1.6e-2 (bf16) and 1.2e-3 (fp16) of the output's
// peak, 8× apart as the 3 mantissa bits between the formats say; gradients within about
// 1e-2 and 1e-3 of each tensor's peak). The bounds are 3× those; a wrong kernel is off by
// O(1) of the tensor's scale.
TEST_CASE("unet<float, cuda> on bf16/fp16 contexts: forward and gradients near the fp32 CPU result",
          "[cuda][mixed]") {
  AMBISEG_REQUIRE_GPU();
  const auto precision = GENERATE(cuda_precision::bf16, cuda_precision::fp16);
  INFO(precision_name(precision));
  const context_at on(precision);
  const auto cfg = nn::unet_config::tiny();
  const std::int64_t n = 2, hw = 16;
  nn::unet<float> cpu_net(cfg, 5);
  nn::unet<float, cuda> gpu_net(cfg, 5);
  perturb_and_mirror(cpu_net, gpu_net, 6);
  const auto x = random_tensor<float>(shape{n, cfg.out_channels, hw, hw}, 7);
  const auto img = random_tensor<float>(shape{n, cfg.image_channels(), hw, hw}, 8);
  const auto t = random_tensor<float>(shape{n}, 9, 0.0, 1.0);
  const auto df = random_tensor<float>(shape{n, cfg.out_channels, hw, hw}, 10);
  const auto xd = to_dev<cuda>(x), imgd = to_dev<cuda>(img), td = to_dev<cuda>(t), dfd = to_dev<cuda>(df);
  const auto f_cpu = host_copy<float, cpu>(cpu_net.forward(x.cview(), img.cview(), t.cview(), nn::pass::training));
  const auto f_gpu = host_copy<float, cuda>(gpu_net.forward(xd.cview(), imgd.cview(), td.cview(), nn::pass::training));
  const bool bf16 = precision == cuda_precision::bf16;
  const double fwd = scaled_error(f_gpu, f_cpu, 1.0, 0.0);
  INFO("forward error / output peak " << fwd);
  CHECK(fwd <= (bf16 ? 5e-2 : 4e-3));
  CHECK(fwd > 1e-5);  // the 16-bit path was taken: fp32 agrees to ~1e-6
  cpu_net.parameters().zero_grad();
  gpu_net.parameters().zero_grad();
  cpu_net.backward(df.cview());
  gpu_net.backward(dfd.cview());
  require_params_close(cpu_net.parameters(), gpu_net.parameters(), true, bf16 ? 3e-2 : 4e-3,
                       bf16 ? 6e-3 : 8e-4);
}
