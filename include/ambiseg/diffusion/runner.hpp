// ambiseg/diffusion/runner.hpp — diffusion_runner<Diffusion, T, D>: noising, the x-space
// loss with its exact gradient, and the sampling loop of a gaussian_diffusion, written once
// for every device (D = cpu or cuda). diffusion/cuda.hpp names the cuda forms.
//
// Shape legend: B batch (training) or B·n chains (sampling), P = elements per sample,
// Cc conditioning channels; tensors are tensor<·, D> unless they say host.
//
// The per-sample scalars (α, σ, x̂0 coefficients, weights, sampler steps) are computed on
// the host in double by the policies (gaussian_diffusion::level, x0_coeffs, weight), packed
// into one block and uploaded with one copy per call; the per-element maths runs in
// diffusion_kernels<D> (kernels.hpp), which evaluates the AMBISEG_HD functions of
// predictions.hpp and samplers.hpp in T with the coefficients rounded to T. The loss sums
// per element in double on every device. Every random number (training times, ε, x_1, the
// sampler's z) is drawn on the host from the caller's rng in one fixed order, so a seed
// gives the same draws on every device.
//
// A runner belongs to one context: its buffers are rewritten by copies ordered on the
// current context's stream, so one runner used under two contexts could overwrite a buffer
// the other stream still reads.
//
// A denoiser is any callable
//   void(tensor_view<const T, D> x_t,   // [B, ...]       noisy masks
//        std::span<const double> t,     // [B] (host)     per-sample time in [0, 1]
//        tensor_view<const T, D> cond,  // [B, Cc, H, W]  image rows aligned with x_t, or empty
//        tensor_view<T, D> f_out)       // [B, ...]       network output, shape of x_t
// The image reaches the network only through cond: sampling n masks per image repeats each
// image n times, so row b·n + j of cond belongs to chain j of image b.
#pragma once

#include <algorithm>
#include <array>
#include <cmath>
#include <concepts>
#include <cstdint>
#include <functional>
#include <span>
#include <utility>
#include <vector>

#include "ambiseg/core/device.hpp"
#include "ambiseg/core/device_context.hpp"
#include "ambiseg/diffusion/diffusion.hpp"
#include "ambiseg/diffusion/kernels.hpp"
#include "ambiseg/diffusion/multistep.hpp"
#if defined(AMBISEG_WITH_CUDA)
#include "ambiseg/core/cuda_memory.hpp"
#endif

namespace ambiseg::diffusion {

template <class F, class T, class D = cpu>
concept denoiser = std::invocable<F&, tensor_view<const T, D>, std::span<const double>,
                                  tensor_view<const T, D>, tensor_view<T, D>>;

namespace detail {
// host → device copy of a whole host tensor into a device buffer of the same shape,
// enqueued on the current context's stream (the host does not wait; see
// core/device_context.hpp). Every kernel that reads `dev` runs on that stream too, so the
// copy lands after the kernels queued before it and before those queued after it.
template <class T, class D>
void upload_to(tensor_view<const T> host, tensor_view<T, D> dev) {
  expect_shape("diffusion_runner: upload", "destination", dev, host.shape());
  enqueue_upload<D>(dev.data(), host.data(), sizeof(T) * static_cast<std::size_t>(host.numel()));
}
}  // namespace detail

// Buffers of one training step, sized on first use and then reused. t and eps may be set
// by the caller (fixed noise for tests) or by draw_training_noise().
template <class T, class D = cpu>
struct training_batch {
  std::vector<double> t;                // [B]  host
  tensor<T> eps_host;                   // [B, ...] host staging of ε (drawn on the host)
  tensor<T, D> eps;                     // [B, ...]
  tensor<T, D> x_t;                     // [B, ...]
  tensor<T, D> f;                       // [B, ...]  network output
  tensor<T, D> grad_f;                  // [B, ...]  dL/df
  std::vector<double> per_sample_loss;  // [B]  host, w(t_b)·mean_p (x0 − x̂0)² (training_loss
                                        //      fills it; training_loss_async reports on the device)
};

template <class Diffusion, class T = float, class D = cpu>
class diffusion_runner {
  using kernels = diffusion_kernels<D>;

 public:
  using host_type = Diffusion;
  using value_type = T;

  explicit diffusion_runner(Diffusion host) : host_(std::move(host)) {}
  const Diffusion& host() const { return host_; }
  // λ(t) of the schedule (what progressive_distillation asks of a diffusion).
  double log_snr(double t) const { return host_.level(t).log_snr; }

  // ---- (a) the forward process (device views; t on the host) ------------------------

  void add_noise(tensor_view<const T, D> x0, std::span<const double> t,
                 tensor_view<const T, D> eps, tensor_view<T, D> x_t) {
    const std::int64_t b = check_batch("add_noise", x0.shape(), t);
    auto k = upload<T>(b, 2, [&](std::int64_t i, T* row) {
      const noise_level lv = host_.level(t[static_cast<std::size_t>(i)]);
      row[0] = static_cast<T>(lv.alpha);
      row[1] = static_cast<T>(lv.sigma);
    });
    kernels::template noise<T>(x0, eps, k.row(0), k.row(1), x_t);
  }

  void target(tensor_view<const T, D> x0, std::span<const double> t,
              tensor_view<const T, D> eps, tensor_view<T, D> out) {
    const std::int64_t b = check_batch("target", x0.shape(), t);
    using P = typename Diffusion::prediction_type;
    auto k = upload<T>(b, 2, [&](std::int64_t i, T* row) {
      const noise_level lv = host_.level(t[static_cast<std::size_t>(i)]);
      const target_affine c = P::target_coeffs(lv.alpha, lv.sigma);
      row[0] = static_cast<T>(c.c_x0);
      row[1] = static_cast<T>(c.c_eps);
    });
    kernels::template target<T>(x0, eps, k.row(0), k.row(1), out);
  }

  void predict_x0(tensor_view<const T, D> x_t, std::span<const double> t,
                  tensor_view<const T, D> f, tensor_view<T, D> x0_hat) {
    const std::int64_t b = check_batch("predict_x0", x_t.shape(), t);
    auto k = upload<T>(b, 2, [&](std::int64_t i, T* row) {
      const affine c = host_.x0_coeffs(host_.level(t[static_cast<std::size_t>(i)]));
      row[0] = static_cast<T>(c.c_xt);
      row[1] = static_cast<T>(c.c_f);
    });
    kernels::template predicted_x0<T>(x_t, f, k.row(0), k.row(1), false, x0_hat);
  }

  void predict_eps(tensor_view<const T, D> x_t, std::span<const double> t,
                   tensor_view<const T, D> f, tensor_view<T, D> eps_hat) {
    const std::int64_t b = check_batch("predict_eps", x_t.shape(), t);
    auto k = upload<T>(b, 4, [&](std::int64_t i, T* row) {
      const noise_level lv = host_.level(t[static_cast<std::size_t>(i)]);
      throw_if<value_error>(!(lv.sigma > 0.0), "predict_eps: eps is undefined at t = ", lv.t,
                            " where sigma = 0");
      const affine c = host_.x0_coeffs(lv);
      row[0] = static_cast<T>(c.c_xt);
      row[1] = static_cast<T>(c.c_f);
      row[2] = static_cast<T>(lv.alpha);
      row[3] = static_cast<T>(1.0 / lv.sigma);
    });
    kernels::template predicted_eps<T>(x_t, f, k.row(0), k.row(1), k.row(2), k.row(3),
                                                  eps_hat);
  }

  // ---- (b) the loss ----------------------------------------------------------------------

  // The weighted x-space loss, enqueued: report [B + 1] (device) receives the
  // per-sample losses w_b·mean_p (x̂0 − x0)² and then the loss, computed on the device in
  // one fixed order of operations (diffusion::x0_loss_report); grad_f (optional) =
  // (2·w_b/(B·P))·c_f·(x̂0 − x0). Nothing is read back and nothing is checked: a NaN in
  // x0, x_t or f shows as a NaN in the report (which a training step's guard reads).
  void loss_async(tensor_view<const T, D> x0, tensor_view<const T, D> x_t,
                  std::span<const double> t, tensor_view<const T, D> f,
                  tensor_view<T, D> grad_f, tensor_view<double, D> report) {
    const std::int64_t b = check_loss(x0, x_t, t, f, grad_f);
    expect_shape("loss", "report", report, shape{b + 1});
    const double per = static_cast<double>(x0.numel() / b);
    auto k = upload<double>(b, 4, [&](std::int64_t i, double* row) {
      const double ti = t[static_cast<std::size_t>(i)];
      const affine c = host_.x0_coeffs(host_.level(ti));
      const double w = host_.weight(ti);
      row[0] = c.c_xt;
      row[1] = c.c_f;
      // grad_scale·c_f = 2·w/(B·P)·c_f, in this order on every device.
      row[2] = 2.0 * w / (static_cast<double>(b) * per) * c.c_f;
      row[3] = w;
    });
    if (!(sums_dev_.shape() == shape{b})) sums_dev_ = tensor<double, D>(shape{b});
    kernels::template x0_loss<T>(x0, x_t, f, k.row(0), k.row(1), k.row(2), grad_f,
                                 sums_dev_.view());
    kernels::loss_report(sums_dev_.cview(), k.row(3), per, report);
  }

  // The same, waiting for the result: returns the loss (a non-finite one throws) and fills
  // per_sample (optional, B entries).
  double loss(tensor_view<const T, D> x0, tensor_view<const T, D> x_t,
              std::span<const double> t, tensor_view<const T, D> f,
              tensor_view<T, D> grad_f = {}, std::span<double> per_sample = {}) {
    const std::int64_t b = check_loss(x0, x_t, t, f, grad_f);  // before touching the device
    throw_if<shape_error>(!per_sample.empty() && static_cast<std::int64_t>(per_sample.size()) != b,
                          "loss: per_sample has ", per_sample.size(), " entries for a batch of ", b);
    if (!(report_dev_.shape() == shape{b + 1})) report_dev_ = tensor<double, D>(shape{b + 1});
    loss_async(x0, x_t, t, f, grad_f, report_dev_.view());
    return read_report(per_sample);
  }

  // The training noise, drawn on the host in a fixed order (all t, then
  // ε row-major, on the host), ε copied to batch.eps.
  // Data parallel (global > 0): the draws are those of the whole global batch of `global`
  // rows, as one process makes them (a stratified t spans it), and only rows
  // [first, first + B) are kept and uploaded, B = x0_shape[0]: a run's noise does not depend
  // on its number of ranks.
  template <class TS = stratified_timesteps>
  void draw_training_noise(const ambiseg::shape& x0_shape, rng& g, training_batch<T, D>& batch,
                           const TS& ts = {}, std::int64_t first = 0, std::int64_t global = 0) const {
    static_assert(check_timestep_sampler<TS>());
    throw_if<shape_error>(x0_shape.rank() < 1 || x0_shape[0] < 1,
                          "draw_training_noise: x0 shape ", x0_shape.to_string(),
                          " has no batch axis");
    const std::int64_t b = x0_shape[0], rows = global > 0 ? global : b, per_row = x0_shape.numel() / b;
    throw_if<shape_error>(first < 0 || first + b > rows, "draw_training_noise: rows [", first, ", ", first + b,
                          ") are not inside the global batch of ", rows);
    batch.t.resize(static_cast<std::size_t>(rows));
    ts.draw(std::span<double>(batch.t), g);
    std::vector<std::int64_t> extents(x0_shape.begin(), x0_shape.end());
    extents[0] = rows;
    batch.eps_host.resize(ambiseg::shape::from_range(extents.begin(), extents.end()));
    for (T& e : batch.eps_host) e = static_cast<T>(g.normal());
    if (rows != b) {  // keep this rank's rows, at the front (resize keeps the buffer)
      batch.t.assign(batch.t.begin() + first, batch.t.begin() + first + b);
      std::copy_n(batch.eps_host.data() + first * per_row, b * per_row, batch.eps_host.data());
      batch.eps_host.resize(x0_shape);
    }
    if (!(batch.eps.shape() == x0_shape)) batch.eps = tensor<T, D>(x0_shape);
    detail::upload_to<T, D>(batch.eps_host.cview(), batch.eps.view());
  }

  // x_t from batch.t and batch.eps, f = net(x_t, t, cond), the loss into report [B + 1]
  // (as loss_async) and batch.grad_f — all enqueued, nothing read back.
  template <class Net>
  void training_loss_async(Net&& net, tensor_view<const T, D> x0, tensor_view<const T, D> cond,
                           training_batch<T, D>& batch, tensor_view<double, D> report) {
    static_assert(denoiser<Net, T, D>,
                  "diffusion_runner::training_loss: the network must be callable as "
                  "void(tensor_view<const T, D> x_t, std::span<const double> t, "
                  "tensor_view<const T, D> cond, tensor_view<T, D> f_out)");
    check_training(x0, cond, batch);
    for (tensor<T, D>* buf : {&batch.x_t, &batch.f, &batch.grad_f})
      if (!(buf->shape() == x0.shape())) *buf = tensor<T, D>(x0.shape());
    const std::span<const double> t(batch.t);
    add_noise(x0, t, batch.eps.cview(), batch.x_t.view());
    std::invoke(net, batch.x_t.cview(), t, cond, batch.f.view());
    loss_async(x0, batch.x_t.cview(), t, batch.f.cview(), batch.grad_f.view(), report);
  }

  // The same, waiting: returns the loss (a non-finite one throws) and fills
  // batch.per_sample_loss.
  template <class Net>
  double training_loss(Net&& net, tensor_view<const T, D> x0, tensor_view<const T, D> cond,
                       training_batch<T, D>& batch) {
    const std::int64_t n = check_training(x0, cond, batch);  // before touching the device
    if (!(report_dev_.shape() == shape{n + 1})) report_dev_ = tensor<double, D>(shape{n + 1});
    training_loss_async(std::forward<Net>(net), x0, cond, batch, report_dev_.view());
    batch.per_sample_loss.resize(static_cast<std::size_t>(n));
    return read_report(batch.per_sample_loss);
  }

  // ---- (c) sampling ----------------------------------------------------------------------

  // The reverse process: x [B, ...] holds x_1 on entry and x̂0
  // on return. z for a stochastic sampler is drawn on the host for all elements of a step,
  // in element order, and copied up once per step.
  template <class Net, class Smp>
  void sample_chains(Net&& net, const Smp& smp, tensor_view<T, D> x,
                     tensor_view<const T, D> cond, rng& g, const sampling_options& opts = {}) {
    if constexpr (multistep_sampler<Smp>) {
      sample_multistep(std::forward<Net>(net), smp, x, cond, g, opts);
      return;
    } else {
      sample_one_step(std::forward<Net>(net), smp, x, cond, g, opts);
    }
  }

 private:
  // One-step samplers (samplers.hpp): at the last grid point the result is x̂0 itself.
  template <class Net, class Smp>
  void sample_one_step(Net&& net, const Smp& smp, tensor_view<T, D> x,
                       tensor_view<const T, D> cond, rng& g, const sampling_options& opts) {
    static_assert(check_sampler<Smp>());
    static_assert(denoiser<Net, T, D>,
                  "diffusion_runner::sample_chains: the network must be callable as "
                  "void(tensor_view<const T, D> x_t, std::span<const double> t, "
                  "tensor_view<const T, D> cond, tensor_view<T, D> f_out)");
    throw_if<value_error>(opts.steps < 1, "sample: steps = ", opts.steps, " must be >= 1");
    throw_if<shape_error>(x.rank() < 1 || x.size(0) < 1, "sample: x has shape ",
                          x.shape().to_string(), ", expected [B, ...] with B >= 1");
    const std::int64_t chains = x.size(0);
    check_cond("sample", cond, chains);
    for (tensor<T, D>* buf : {&f_, &x0_hat_})
      if (!(buf->shape() == x.shape())) *buf = tensor<T, D>(x.shape());
    if constexpr (Smp::stochastic) {
      if (!(z_dev_.shape() == x.shape())) z_dev_ = tensor<T, D>(x.shape());
      z_host_.resize(x.shape());
    }
    std::vector<double> t_batch(static_cast<std::size_t>(chains));
    const std::vector<double> grid = sampling_times(host_.schedule(), opts.steps, opts.spacing);
    for (int i = opts.steps; i >= 1; --i) {
      const std::size_t point = static_cast<std::size_t>(opts.steps - i);
      const double t = grid[point], s = grid[point + 1];
      std::fill(t_batch.begin(), t_batch.end(), t);
      std::invoke(net, tensor_view<const T, D>(x), std::span<const double>(t_batch), cond,
                  f_.view());
      const noise_level lt = host_.level(t);
      const affine c = host_.x0_coeffs(lt);
      if (i == 1) {  // s = 0: the result is x̂0 itself
        auto k = upload<T>(chains, 2, [&](std::int64_t, T* row) {
          row[0] = static_cast<T>(c.c_xt);
          row[1] = static_cast<T>(c.c_f);
        });
        kernels::template predicted_x0<T>(x, f_.cview(), k.row(0), k.row(1), opts.clip_x0, x);
        break;
      }
      const step_coeffs sk = smp.coefficients(lt.log_snr, diffusion::log_snr(host_.schedule(), s));
      throw_if<value_error>(!std::isfinite(sk.c_xt) || !std::isfinite(sk.c_x0) ||
                                !std::isfinite(sk.c_noise),
                            "sample: ", Smp::name, " step from t = ", t, " to s = ", s,
                            " has non-finite coefficients (", sk.c_xt, ", ", sk.c_x0, ", ",
                            sk.c_noise, ")");
      auto k = upload<T>(chains, 5, [&](std::int64_t, T* row) {
        row[0] = static_cast<T>(c.c_xt);
        row[1] = static_cast<T>(c.c_f);
        row[2] = static_cast<T>(sk.c_xt);
        row[3] = static_cast<T>(sk.c_x0);
        row[4] = static_cast<T>(sk.c_noise);
      });
      kernels::template predicted_x0<T>(x, f_.cview(), k.row(0), k.row(1), opts.clip_x0,
                                                   x0_hat_.view());
      tensor_view<const T, D> z;
      if constexpr (Smp::stochastic) {
        for (T& v : z_host_) v = static_cast<T>(g.normal());
        detail::upload_to<T, D>(z_host_.cview(), z_dev_.view());
        z = z_dev_.cview();
      }
      kernels::template reverse_step<T>(x, x0_hat_.cview(), z, k.row(2), k.row(3),
                                                   k.row(4), x);
    }
  }

  // Multistep samplers (multistep.hpp): the network at points 0 … N−1, the result is the
  // state at t = 0. The combination x_{i+1} = c_x·x_i + c_prev·x_{i−1} + Σ_j c_j·m_{i−j} +
  // c_noise·z is applied term by term with the one-step kernel (x ← 1·x + c·term), so a
  // new sampler needs no kernel of its own; terms with a zero coefficient are skipped.
  template <class Net, class Smp>
  void sample_multistep(Net&& net, const Smp& smp, tensor_view<T, D> x, tensor_view<const T, D> cond, rng& g,
                        const sampling_options& opts) {
    static_assert(check_multistep_sampler<Smp>());
    static_assert(denoiser<Net, T, D>,
                  "diffusion_runner::sample_chains: the network must be callable as "
                  "void(tensor_view<const T, D> x_t, std::span<const double> t, "
                  "tensor_view<const T, D> cond, tensor_view<T, D> f_out)");
    throw_if<value_error>(opts.steps < 1, "sample: steps = ", opts.steps, " must be >= 1");
    throw_if<shape_error>(x.rank() < 1 || x.size(0) < 1, "sample: x has shape ", x.shape().to_string(),
                          ", expected [B, ...] with B >= 1");
    const std::int64_t chains = x.size(0);
    check_cond("sample", cond, chains);
    const bool stochastic = smp.is_stochastic(), corrects = sampler_corrects(smp);
    std::vector<tensor<T, D>*> buffers{&f_};
    for (auto& m : history_) buffers.push_back(&m);
    if (corrects) buffers.push_back(&prev_);
    if (stochastic) buffers.push_back(&z_dev_);
    for (tensor<T, D>* buf : buffers)
      if (!(buf->shape() == x.shape())) *buf = tensor<T, D>(x.shape());
    if (stochastic) z_host_.resize(x.shape());

    const std::vector<double> grid = sampling_times(host_.schedule(), opts.steps, opts.spacing);
    const std::vector<double> lambdas = log_snrs_at(host_.schedule(), grid);
    const std::span<const double> lam(lambdas);
    std::vector<double> t_batch(static_cast<std::size_t>(chains));
    auto m_at = [&](int point) -> tensor<T, D>& {
      return history_[static_cast<std::size_t>(point % multistep_history)];
    };
    // x ← c_x·x + c_prev·prev + Σ_j c_j·m_{i−j} (+ c_noise·z), coefficient rows from `first`.
    auto apply = [&](const linear_step& c, int i, const coeff_block<T>& k, int first, tensor_view<const T, D> z) {
      // x ← c_x·x + c_0·m_i + c_noise·z, then x ← 1·x + c·term for the other terms.
      kernels::template reverse_step<T>(x, m_at(i).cview(), z, k.row(first), k.row(first + 1), k.row(first + 2), x);
      int row = first + 3;
      if (c.c_prev != 0.0)
        kernels::template reverse_step<T>(x, prev_.cview(), {}, k.row(0), k.row(row), k.row(1), x);
      ++row;
      for (int j = 1; j < multistep_history; ++j, ++row)
        if (c.c_x0[static_cast<std::size_t>(j)] != 0.0) {
          throw_if<value_error>(i - j < 0, "sample: ", smp.sampler_name(), " uses x̂0 of point ", i - j,
                                " before the first");
          kernels::template reverse_step<T>(x, m_at(i - j).cview(), {}, k.row(0), k.row(row), k.row(1), x);
        }
    };
    auto check_finite = [&](const linear_step& c, int i, const char* what) {
      bool ok = std::isfinite(c.c_x) && std::isfinite(c.c_prev) && std::isfinite(c.c_noise);
      for (double v : c.c_x0) ok = ok && std::isfinite(v);
      throw_if<value_error>(!ok, "sample: ", smp.sampler_name(), " ", what, " at grid point ", i, " (t = ",
                            grid[static_cast<std::size_t>(i)], ") has non-finite coefficients");
    };
    // Rows: 1, 0, then (predictor) c_x, c_0, c_noise, c_prev, c_1 … c_3, then the same for
    // the corrector; and x̂0 = c_xt·x + c_f·f.
    constexpr int per_step = 3 + multistep_history;
    for (int i = 0; i < opts.steps; ++i) {
      const double t = grid[static_cast<std::size_t>(i)];
      std::fill(t_batch.begin(), t_batch.end(), t);
      std::invoke(net, tensor_view<const T, D>(x), std::span<const double>(t_batch), cond, f_.view());
      const affine c = host_.x0_coeffs(host_.level(t));
      const linear_step pred = smp.predict(lam, i);
      check_finite(pred, i, "step");
      throw_if<value_error>(i == 0 && pred.c_prev != 0.0, "sample: ", smp.sampler_name(),
                            " uses the state before the first grid point");
      linear_step corr;
      const bool correct_now = corrects && i >= 1;
      if constexpr (correcting_sampler<Smp>) {
        if (correct_now) {
          corr = smp.correct(lam, i);
          check_finite(corr, i, "correction");
        }
      }
      auto pack = [](const linear_step& s, T* row) {
        row[0] = static_cast<T>(s.c_x);
        row[1] = static_cast<T>(s.c_x0[0]);
        row[2] = static_cast<T>(s.c_noise);
        row[3] = static_cast<T>(s.c_prev);
        for (int j = 1; j < multistep_history; ++j) row[3 + j] = static_cast<T>(s.c_x0[static_cast<std::size_t>(j)]);
      };
      auto k = upload<T>(chains, 4 + 2 * per_step, [&](std::int64_t, T* row) {
        row[0] = T(1);
        row[1] = T(0);
        row[2] = static_cast<T>(c.c_xt);
        row[3] = static_cast<T>(c.c_f);
        pack(pred, row + 4);
        pack(correct_now ? corr : linear_step{}, row + 4 + per_step);
      });
      kernels::template predicted_x0<T>(x, f_.cview(), k.row(2), k.row(3), opts.clip_x0, m_at(i).view());
      if (correct_now) apply(corr, i, k, 4 + per_step, {});
      if (corrects)  // prev ← x (1·x + 0·x): the state this step starts from
        kernels::template reverse_step<T>(x, x, {}, k.row(0), k.row(1), k.row(1), prev_.view());
      tensor_view<const T, D> z;
      if (stochastic) {
        for (T& v : z_host_) v = static_cast<T>(g.normal());
        detail::upload_to<T, D>(z_host_.cview(), z_dev_.view());
        z = z_dev_.cview();
      }
      apply(pred, i, k, 4, z);
    }
    if (opts.clip_x0) {
      auto k = upload<T>(chains, 2, [&](std::int64_t, T* row) {
        row[0] = T(1);
        row[1] = T(0);
      });
      kernels::template predicted_x0<T>(x, f_.cview(), k.row(0), k.row(1), true, x);
    }
  }

 public:
  // n masks per image: images [B, Cc, H, W] → x [B·n, mask_channels, H, W] (x̂0 on return),
  // row b·n + j = chain j of image b. x_1 is drawn on the host from g unless init_noise
  // ([B·n, mask_channels, H, W]) is given; the images are repeated per chain on D. All B·n
  // chains run as one batch.
  template <class Net, class Smp>
  void sample(Net&& net, const Smp& smp, tensor_view<const T, D> images, int n_per_image, rng& g,
              const sampling_options& opts, tensor_view<T, D> x, tensor_view<const T, D> init_noise = {}) {
    expect_rank("sample", "images", images, 4);
    throw_if<value_error>(n_per_image < 1, "sample: n_per_image = ", n_per_image, " must be >= 1");
    throw_if<value_error>(opts.mask_channels < 1, "sample: mask_channels = ", opts.mask_channels,
                          " must be >= 1");
    const std::int64_t n_images = images.size(0), n = n_per_image;
    const ambiseg::shape chain_shape{n_images * n, opts.mask_channels, images.size(2), images.size(3)};
    expect_shape("sample", "x", x, chain_shape);
    if (init_noise.data() != nullptr) {
      expect_shape("sample", "init_noise", init_noise, chain_shape);
      device_memory<D>::copy(x.data(), init_noise.data(), sizeof(T) * static_cast<std::size_t>(x.numel()));
    } else {
      x_host_.resize(chain_shape);
      for (T& v : x_host_) v = static_cast<T>(g.normal());
      detail::upload_to<T, D>(x_host_.cview(), x);
    }
    const ambiseg::shape cond_shape{n_images * n, images.size(1), images.size(2), images.size(3)};
    if (!(cond_.shape() == cond_shape)) cond_ = tensor<T, D>(cond_shape);
    kernels::template repeat_rows<T>(images, n, cond_.view());
    sample_chains(std::forward<Net>(net), smp, x, cond_.cview(), g, opts);
  }

  // The same into a new tensor.
  template <class Net, class Smp>
  tensor<T, D> sample(Net&& net, const Smp& smp, tensor_view<const T, D> images, int n_per_image, rng& g,
                      const sampling_options& opts = {}, tensor_view<const T, D> init_noise = {}) {
    expect_rank("sample", "images", images, 4);
    throw_if<value_error>(n_per_image < 1 || opts.mask_channels < 1, "sample: n_per_image = ", n_per_image,
                          " and mask_channels = ", opts.mask_channels, " must be >= 1");
    tensor<T, D> x(ambiseg::shape{images.size(0) * n_per_image, opts.mask_channels, images.size(2),
                                  images.size(3)});
    sample(std::forward<Net>(net), smp, images, n_per_image, g, opts, x.view(), init_noise);
    return x;
  }

 private:
  // `rows` coefficient vectors of length b, filled on the host (fill(i, row) writes the
  // rows' entries for sample i) and uploaded with one copy; row(j) is a [b] device view.
  template <class U>
  struct coeff_block {
    tensor<U, D>* dev;
    std::int64_t b;
    tensor_view<const U, D> row(int j) const {
      return tensor_view<const U, D>(dev->data() + j * b, ambiseg::shape{b});
    }
  };
  template <class U, class Fill>
  coeff_block<U> upload(std::int64_t b, int rows, Fill&& fill) {
    auto& dev = coeff_dev<U>();
    auto& staging = coeff_host<U>();
    const ambiseg::shape s{rows, b};
    staging.resize(s);
    std::vector<U> entry(static_cast<std::size_t>(rows));
    for (std::int64_t i = 0; i < b; ++i) {
      fill(i, entry.data());
      for (int j = 0; j < rows; ++j) staging[j * b + i] = entry[static_cast<std::size_t>(j)];
    }
    // The previous block may still be read by queued kernels: the copy is enqueued on the
    // current context's stream, behind them, and the kernels that read this block run on
    // that stream after it (the host does not wait; staging is reusable at once).
    // Grown, never shrunk, so alternating block sizes (sampling's last step) reallocate nothing.
    if (dev.numel() < s.numel()) dev = tensor<U, D>(ambiseg::shape{s.numel()});
    enqueue_upload<D>(dev.data(), staging.data(), sizeof(U) * static_cast<std::size_t>(s.numel()));
    return {&dev, b};
  }
  template <class U>
  tensor<U, D>& coeff_dev() {
    if constexpr (std::same_as<U, double>) return coeff_dev_double_;
    else return coeff_dev_;
  }
  template <class U>
  tensor<U>& coeff_host() {
    if constexpr (std::same_as<U, double>) return coeff_host_double_;
    else return coeff_host_;
  }

  // Waits for report_dev_ [B + 1], copies its per-sample losses into per_sample (if given)
  // and returns the loss; a non-finite loss throws.
  double read_report(std::span<double> per_sample) {
    report_host_.resize(static_cast<std::size_t>(report_dev_.numel()));
    read_back<D>(report_host_.data(), report_dev_.data(), sizeof(double) * report_host_.size());
    std::copy_n(report_host_.begin(), per_sample.size(), per_sample.begin());
    const double result = report_host_.back();
    throw_if<value_error>(!std::isfinite(result), "loss: the loss is ", result,
                          " (a non-finite value in x0, x_t or the network output f)");
    return result;
  }

  static std::int64_t check_loss(tensor_view<const T, D> x0, tensor_view<const T, D> x_t,
                                 std::span<const double> t, tensor_view<const T, D> f,
                                 tensor_view<T, D> grad_f) {
    const std::int64_t b = check_batch("loss", x0.shape(), t);
    expect_shape("loss", "x_t", x_t, x0.shape());
    expect_shape("loss", "f", f, x0.shape());
    if (grad_f.data() != nullptr) expect_shape("loss", "grad_f", grad_f, x0.shape());
    return b;
  }
  static std::int64_t check_training(tensor_view<const T, D> x0, tensor_view<const T, D> cond,
                                     const training_batch<T, D>& batch) {
    const std::int64_t n = check_batch("training_loss", x0.shape(), batch.t);
    expect_shape("training_loss", "eps", batch.eps.cview(), x0.shape());
    check_cond("training_loss", cond, n);
    return n;
  }
  static std::int64_t check_batch(const char* op, const ambiseg::shape& x, std::span<const double> t) {
    throw_if<shape_error>(x.rank() < 1 || x[0] < 1 || x.numel() < 1, op, ": x has shape ",
                          x.to_string(), ", expected [B, ...] with B >= 1");
    throw_if<shape_error>(static_cast<std::int64_t>(t.size()) != x[0], op, ": ", t.size(),
                          " times for a batch of ", x[0]);
    return x[0];
  }
  static void check_cond(const char* op, tensor_view<const T, D> cond, std::int64_t batch) {
    if (cond.data() == nullptr) return;
    throw_if<shape_error>(cond.rank() < 1 || cond.size(0) != batch, op, ": cond has shape ",
                          cond.shape().to_string(), ", expected ", batch, " rows");
  }

  Diffusion host_;
  tensor<T> coeff_host_;
  tensor<T, D> coeff_dev_;
  tensor<double> coeff_host_double_;
  tensor<double, D> coeff_dev_double_;
  tensor<double, D> sums_dev_;
  tensor<double, D> report_dev_;    // [B + 1] of the waiting loss / training_loss
  std::vector<double> report_host_;  // its host copy
  tensor<T, D> f_, x0_hat_, z_dev_, cond_, prev_;
  std::array<tensor<T, D>, multistep_history> history_;  // m_i … m_{i−3}, by point mod 4
  tensor<T> z_host_, x_host_;
};

// The binary masks of sampled x̂0: x̂0 > 0 (SPEC §1), same shape, values 0/1, on the host.
template <class T, class D = cpu>
tensor<std::uint8_t> to_masks(tensor_view<const T, D> x0_hat) {
  tensor<T> host(x0_hat.shape());
  read_back<D>(host.data(), x0_hat.data(), sizeof(T) * static_cast<std::size_t>(host.numel()));
  tensor<std::uint8_t> masks(x0_hat.shape());
  for (std::int64_t i = 0; i < host.numel(); ++i) masks[i] = host[i] > T(0) ? 1 : 0;
  return masks;
}
template <class T, class D>
tensor<std::uint8_t> to_masks(const tensor<T, D>& x0_hat) {
  return to_masks<T, D>(x0_hat.cview());
}

}  // namespace ambiseg::diffusion
