// The double-precision host loops of the diffusion process, kept as an independent
// reference for diffusion_runner (the library's one loop for every device): every element
// is evaluated in double, written plainly, with no coefficient block or kernel table.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <functional>
#include <span>
#include <type_traits>
#include <vector>

#include <ambiseg/diffusion/runner.hpp>

namespace ambiseg::diffusion::reference {

template <class X>
using element_t = typename std::remove_cvref_t<X>::value_type;
template <class X>
concept host_tensor_input = requires { typename std::remove_cvref_t<X>::value_type; } &&
                            std::convertible_to<const X&, tensor_view<const element_t<X>>>;
template <class X>
concept host_tensor_output = requires { typename std::remove_cvref_t<X>::value_type; } &&
                             std::convertible_to<X&, tensor_view<element_t<X>>>;
template <class T>
using in_view = std::type_identity_t<tensor_view<const T>>;
template <class T>
using out_view = std::type_identity_t<tensor_view<T>>;

template <class T>
struct host_training_batch {
  std::vector<double> t;
  tensor<T> eps, x_t, f, grad_f;
  std::vector<double> per_sample_loss;
};

template <class Diffusion>
class reference_diffusion : public Diffusion {
 public:
  using Diffusion::Diffusion;
  explicit reference_diffusion(const Diffusion& d) : Diffusion(d) {}
  using Prediction = typename Diffusion::prediction_type;
  using Weighting = typename Diffusion::weighting_type;
  using Diffusion::level;
  using Diffusion::x0_coeffs;
  using Diffusion::weight;
  using Diffusion::schedule;

  // ---- (a) the forward process -------------------------------------------------------

  // x_t[b] = α(t_b)·x0[b] + σ(t_b)·eps[b].
  template <host_tensor_input X0, class T = element_t<X0>>
  void add_noise(const X0& x0_in, std::span<const double> t, in_view<T> eps,
                 out_view<T> x_t) const {
    const tensor_view<const T> x0 = x0_in;
    const std::int64_t batch = check_batch("add_noise", x0, t);
    expect_shape("add_noise", "eps", eps, x0.shape());
    expect_shape("add_noise", "x_t", x_t, x0.shape());
    const std::int64_t per = x0.numel() / batch;
    for (std::int64_t b = 0; b < batch; ++b) {
      const noise_level lv = level(t[b]);
      for (std::int64_t p = b * per; p < (b + 1) * per; ++p)
        x_t[p] = static_cast<T>(noised<double>(lv.alpha, lv.sigma, x0[p], eps[p]));
    }
  }

  // The network's regression target (x0, ε or v) — for logging or a target-space loss.
  template <host_tensor_input X0, class T = element_t<X0>>
  void target(const X0& x0_in, std::span<const double> t, in_view<T> eps, out_view<T> out) const {
    const tensor_view<const T> x0 = x0_in;
    const std::int64_t batch = check_batch("target", x0, t);
    expect_shape("target", "eps", eps, x0.shape());
    expect_shape("target", "out", out, x0.shape());
    const std::int64_t per = x0.numel() / batch;
    for (std::int64_t b = 0; b < batch; ++b) {
      const noise_level lv = level(t[b]);
      const target_affine c = Prediction::target_coeffs(lv.alpha, lv.sigma);
      for (std::int64_t p = b * per; p < (b + 1) * per; ++p)
        out[p] = static_cast<T>(regression_target<double>(c.c_x0, c.c_eps, x0[p], eps[p]));
    }
  }

  // x̂0 and ε̂ from the network output.
  template <host_tensor_input Xt, class T = element_t<Xt>>
  void predict_x0(const Xt& x_t_in, std::span<const double> t, in_view<T> f,
                  out_view<T> x0_hat) const {
    const tensor_view<const T> x_t = x_t_in;
    const std::int64_t batch = check_batch("predict_x0", x_t, t);
    expect_shape("predict_x0", "f", f, x_t.shape());
    expect_shape("predict_x0", "x0_hat", x0_hat, x_t.shape());
    const std::int64_t per = x_t.numel() / batch;
    for (std::int64_t b = 0; b < batch; ++b) {
      const affine c = x0_coeffs(level(t[b]));
      for (std::int64_t p = b * per; p < (b + 1) * per; ++p)
        x0_hat[p] = static_cast<T>(predicted_x0<double>(c.c_xt, c.c_f, x_t[p], f[p]));
    }
  }
  template <host_tensor_input Xt, class T = element_t<Xt>>
  void predict_eps(const Xt& x_t_in, std::span<const double> t, in_view<T> f,
                   out_view<T> eps_hat) const {
    const tensor_view<const T> x_t = x_t_in;
    const std::int64_t batch = check_batch("predict_eps", x_t, t);
    expect_shape("predict_eps", "f", f, x_t.shape());
    expect_shape("predict_eps", "eps_hat", eps_hat, x_t.shape());
    const std::int64_t per = x_t.numel() / batch;
    for (std::int64_t b = 0; b < batch; ++b) {
      const noise_level lv = level(t[b]);
      throw_if<value_error>(!(lv.sigma > 0.0), "predict_eps: eps is undefined at t = ", lv.t,
                            " where sigma = 0");
      const affine c = x0_coeffs(lv);
      for (std::int64_t p = b * per; p < (b + 1) * per; ++p) {
        const double x0h = predicted_x0<double>(c.c_xt, c.c_f, x_t[p], f[p]);
        eps_hat[p] = static_cast<T>(predicted_eps<double>(lv.alpha, 1.0 / lv.sigma, x_t[p], x0h));
      }
    }
  }

  // ---- (b) the loss ----------------------------------------------------------------------

  // L = (1/B)·Σ_b w(t_b)·(1/P)·Σ_p (x0 − x̂0)², x̂0 from f through the parameterisation.
  // grad_f (optional, may be empty) receives dL/df = (2·w_b/(B·P))·(x̂0 − x0)·∂x̂0/∂f;
  // per_sample (optional, size B) receives w(t_b)·mean_p (x0 − x̂0)².
  template <host_tensor_input X0, class T = element_t<X0>>
  double loss(const X0& x0_in, in_view<T> x_t, std::span<const double> t, in_view<T> f,
              out_view<T> grad_f = {}, std::span<double> per_sample = {}) const {
    const tensor_view<const T> x0 = x0_in;
    const std::int64_t batch = check_batch("loss", x0, t);
    expect_shape("loss", "x_t", x_t, x0.shape());
    expect_shape("loss", "f", f, x0.shape());
    const bool want_grad = grad_f.data() != nullptr;
    if (want_grad) expect_shape("loss", "grad_f", grad_f, x0.shape());
    throw_if<shape_error>(!per_sample.empty() && static_cast<std::int64_t>(per_sample.size()) != batch,
                          "loss: per_sample has ", per_sample.size(), " entries for a batch of ",
                          batch);
    const std::int64_t per = x0.numel() / batch;
    double total = 0.0;
    for (std::int64_t b = 0; b < batch; ++b) {
      const noise_level lv = level(t[b]);
      const affine c = x0_coeffs(lv);
      const double w = weight(t[b]);
      const double grad_scale = 2.0 * w / (static_cast<double>(batch) * static_cast<double>(per));
      double squared = 0.0;
      for (std::int64_t p = b * per; p < (b + 1) * per; ++p) {
        const double diff = predicted_x0<double>(c.c_xt, c.c_f, x_t[p], f[p]) - x0[p];
        squared += diff * diff;
        if (want_grad) grad_f[p] = static_cast<T>(grad_scale * c.c_f * diff);
      }
      const double sample_loss = w * squared / static_cast<double>(per);
      if (!per_sample.empty()) per_sample[b] = sample_loss;
      total += sample_loss;
    }
    const double result = total / static_cast<double>(batch);
    throw_if<value_error>(!std::isfinite(result), "loss: the loss is ", result,
                          " (a non-finite value in x0, x_t or the network output f)");
    return result;
  }

  // Fills batch.t with `ts` and batch.eps with N(0, 1) for masks shaped like x0, in a
  // fixed order (all t, then eps row-major), so a seed reproduces a step.
  template <class T, class TS = stratified_timesteps>
  void draw_training_noise(const ambiseg::shape& x0_shape, rng& g, host_training_batch<T>& batch,
                           const TS& ts = {}) const {
    static_assert(check_timestep_sampler<TS>());
    throw_if<shape_error>(x0_shape.rank() < 1 || x0_shape[0] < 1,
                          "draw_training_noise: x0 shape ", x0_shape.to_string(),
                          " has no batch axis");
    batch.t.resize(static_cast<std::size_t>(x0_shape[0]));
    ts.draw(std::span<double>(batch.t), g);
    batch.eps.resize(x0_shape);
    for (T& e : batch.eps) e = static_cast<T>(g.normal());
  }

  // One training loss: x_t from batch.t and batch.eps, f = net(x_t, t, cond), the loss and
  // batch.grad_f = dL/df. The caller then backpropagates batch.grad_f through its network.
  template <class T, class Net>
  double training_loss(Net&& net, in_view<T> x0, in_view<T> cond,
                       host_training_batch<T>& batch) const {
    static_assert(denoiser<Net, T, cpu>,
                  "gaussian_diffusion::training_loss: the network must be callable as "
                  "void(tensor_view<const T> x_t, std::span<const double> t, "
                  "tensor_view<const T> cond, tensor_view<T> f_out)");
    const std::int64_t n = check_batch("training_loss", x0, batch.t);
    expect_shape("training_loss", "eps", batch.eps.cview(), x0.shape());
    check_cond("training_loss", cond, n);
    batch.x_t.resize(x0.shape());
    batch.f.resize(x0.shape());
    batch.grad_f.resize(x0.shape());
    batch.per_sample_loss.resize(static_cast<std::size_t>(n));
    const std::span<const double> t(batch.t);
    add_noise(x0, t, batch.eps.cview(), batch.x_t.view());
    std::invoke(net, batch.x_t.cview(), t, cond, batch.f.view());
    return loss(x0, batch.x_t.cview(), t, batch.f.cview(), batch.grad_f.view(),
                std::span<double>(batch.per_sample_loss));
  }

  // ---- (c) sampling ----------------------------------------------------------------------

  // Runs the reverse process on the chains in x ([B, ...], holding x_1 on entry; x̂0 on
  // return), cond row-aligned with x or empty. N = opts.steps network evaluations.
  template <class Net, class Smp, host_tensor_output X, class T = element_t<X>>
  void sample_chains(Net&& net, const Smp& smp, X&& x_out, in_view<T> cond, rng& g,
                     const sampling_options& opts = {}) const {
    const tensor_view<T> x = x_out;
    static_assert(check_sampler<Smp>());
    static_assert(denoiser<Net, T, cpu>,
                  "gaussian_diffusion::sample_chains: the network must be callable as "
                  "void(tensor_view<const T> x_t, std::span<const double> t, "
                  "tensor_view<const T> cond, tensor_view<T> f_out)");
    throw_if<value_error>(opts.steps < 1, "sample: steps = ", opts.steps, " must be >= 1");
    throw_if<shape_error>(x.rank() < 1 || x.size(0) < 1, "sample: x has shape ",
                          x.shape().to_string(), ", expected [B, ...] with B >= 1");
    const std::int64_t chains = x.size(0), per = x.numel() / chains;
    check_cond("sample", cond, chains);
    tensor<T> f(x.shape());
    std::vector<double> t_batch(static_cast<std::size_t>(chains));
    const double steps = static_cast<double>(opts.steps);
    for (int i = opts.steps; i >= 1; --i) {
      const double t = static_cast<double>(i) / steps, s = static_cast<double>(i - 1) / steps;
      std::fill(t_batch.begin(), t_batch.end(), t);
      std::invoke(net, tensor_view<const T>(x), std::span<const double>(t_batch), cond, f.view());
      const noise_level lt = level(t);
      const affine c = x0_coeffs(lt);
      if (i == 1) {  // s = 0: the result is x̂0 itself
        for (std::int64_t p = 0; p < chains * per; ++p)
          x[p] = static_cast<T>(finish_x0(predicted_x0<double>(c.c_xt, c.c_f, x[p], f[p]), opts));
        break;
      }
      const step_coeffs k = smp.coefficients(lt.log_snr, log_snr(this->schedule(), s));
      throw_if<value_error>(!std::isfinite(k.c_xt) || !std::isfinite(k.c_x0) ||
                                !std::isfinite(k.c_noise),
                            "sample: ", Smp::name, " step from t = ", t, " to s = ", s,
                            " has non-finite coefficients (", k.c_xt, ", ", k.c_x0, ", ",
                            k.c_noise, ")");
      for (std::int64_t p = 0; p < chains * per; ++p) {
        const double x0h = finish_x0(predicted_x0<double>(c.c_xt, c.c_f, x[p], f[p]), opts);
        const double z = Smp::stochastic ? g.normal() : 0.0;
        x[p] = static_cast<T>(reverse_step<double>(k.c_xt, k.c_x0, k.c_noise, x[p], x0h, z));
      }
    }
  }

  // n masks per image: images [B, Cc, H, W] → x̂0 [B·n, mask_channels, H, W], row b·n + j
  // is chain j of image b. x_1 is drawn from g unless init_noise ([B·n, mask_channels, H,
  // W]) is given. All B·n chains run as one batch.
  template <class Net, class Smp, host_tensor_input Img, class T = element_t<Img>>
  tensor<T> sample(Net&& net, const Smp& smp, const Img& images_in, int n_per_image, rng& g,
                   const sampling_options& opts = {}, in_view<T> init_noise = {}) const {
    const tensor_view<const T> images = images_in;
    expect_rank("sample", "images", images, 4);
    throw_if<value_error>(n_per_image < 1, "sample: n_per_image = ", n_per_image,
                          " must be >= 1");
    throw_if<value_error>(opts.mask_channels < 1, "sample: mask_channels = ",
                          opts.mask_channels, " must be >= 1");
    const std::int64_t n_images = images.size(0), n = n_per_image;
    const ambiseg::shape chain_shape{n_images * n, opts.mask_channels, images.size(2),
                                     images.size(3)};
    tensor<T> x(chain_shape);
    if (init_noise.data() != nullptr) {
      expect_shape("sample", "init_noise", init_noise, chain_shape);
      x.copy_from(init_noise);
    } else {
      for (T& v : x) v = static_cast<T>(g.normal());
    }
    tensor<T> cond({n_images * n, images.size(1), images.size(2), images.size(3)});
    const std::int64_t image_size = images.numel() / std::max<std::int64_t>(n_images, 1);
    for (std::int64_t b = 0; b < n_images; ++b)
      for (std::int64_t j = 0; j < n; ++j)
        std::copy(images.data() + b * image_size, images.data() + (b + 1) * image_size,
                  cond.data() + (b * n + j) * image_size);
    sample_chains(std::forward<Net>(net), smp, x.view(), cond.cview(), g, opts);
    return x;
  }

 private:
  template <class V>
  static std::int64_t check_batch(const char* op, const V& x, std::span<const double> t) {
    throw_if<shape_error>(x.rank() < 1 || x.size(0) < 1 || x.numel() < 1, op, ": x has shape ",
                          x.shape().to_string(), ", expected [B, ...] with B >= 1");
    throw_if<shape_error>(static_cast<std::int64_t>(t.size()) != x.size(0), op, ": ", t.size(),
                          " times for a batch of ", x.size(0));
    return x.size(0);
  }
  template <class T>
  static void check_cond(const char* op, tensor_view<const T> cond, std::int64_t batch) {
    if (cond.data() == nullptr) return;
    throw_if<shape_error>(cond.rank() < 1 || cond.size(0) != batch, op, ": cond has shape ",
                          cond.shape().to_string(), ", expected ", batch, " rows");
  }
  static double finish_x0(double x0_hat, const sampling_options& opts) {
    return opts.clip_x0 ? clip_unit(x0_hat) : x0_hat;
  }

};

// The exact posterior-mean denoiser of pixels with P(x0 = +1) = p, p read from the first
// pixel of each cond row: x_t | x0 ~ N(α x0, σ²) gives E[x0 | x_t] = tanh(α x_t/σ² +
// artanh(2p − 1)), returned as the output f of the model's prediction.
template <class Model>
auto binary_denoiser(const Model& model) {
  return [&model](tensor_view<const double> x_t, std::span<const double> t, tensor_view<const double> cond,
                  tensor_view<double> f_out) {
    const std::int64_t per = x_t.numel() / x_t.size(0);
    for (std::int64_t b = 0; b < x_t.size(0); ++b) {
      const noise_level lv = model.level(t[static_cast<std::size_t>(b)]);
      const affine c = model.x0_coeffs(lv);
      const double prior = std::atanh(2 * cond[b * per] - 1);
      for (std::int64_t i = b * per; i < (b + 1) * per; ++i)
        f_out[i] = output_for_x0(c.c_xt, c.c_f, x_t[i], std::tanh(lv.alpha * x_t[i] / (lv.sigma * lv.sigma) + prior));
    }
  };
}

}  // namespace ambiseg::diffusion::reference
