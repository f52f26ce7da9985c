// ambiseg/nn/layers.hpp — parameter handles and registration for the network's layers.
//
// A layer is a set of indices into the model's parameter_store plus its static sizes;
// modules call ops with the views these indices name. Registration records, next to each
// parameter, how the reference initialises it (PyTorch defaults, GroupNorm 1/0, or zero
// for the reference's zero_module convs), so init() is one pass over the store.
#pragma once

#include <algorithm>

#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "ambiseg/core/parameters.hpp"
#include "ambiseg/core/random.hpp"
#include "ambiseg/core/tensor.hpp"
#include "ambiseg/nn/config.hpp"

namespace ambiseg::nn {

// How one parameter is initialised.
//   uniform_fan_in     U(−1/√fan_in, 1/√fan_in), PyTorch's default for convs and linears
//   normal             N(0, stddev²) (kaiming_normal: stddev = √(2/fan_in))
//   truncated_normal   N(0, stddev²) redrawn outside ±2·stddev
//   orthogonal         rows (or columns, whichever are fewer) of the [shape[0], rest]
//                      matrix orthonormal, from Gram-Schmidt on a Gaussian matrix (the
//                      distribution of PyTorch's orthogonal_ with gain 1)
struct param_init {
  enum kind_type { uniform_fan_in, ones, zeros, normal, truncated_normal, orthogonal } kind = zeros;
  std::int64_t fan_in = 0;
  double stddev = 0;

  static param_init kaiming_normal(std::int64_t fan_in) {
    return {normal, fan_in, std::sqrt(2.0 / static_cast<double>(fan_in))};
  }
};

namespace detail {
// An orthogonal [rows, cols] matrix (row-major) by modified Gram-Schmidt in double.
inline void orthogonal_matrix(std::int64_t rows, std::int64_t cols, rng& gen, std::vector<double>& out) {
  const bool by_rows = rows <= cols;  // orthonormalise the fewer, longer vectors
  const std::int64_t count = by_rows ? rows : cols, length = by_rows ? cols : rows;
  std::vector<double> v(static_cast<std::size_t>(count * length));
  for (auto& x : v) x = gen.normal();
  for (std::int64_t i = 0; i < count; ++i) {
    double* vi = v.data() + i * length;
    for (std::int64_t j = 0; j < i; ++j) {
      const double* vj = v.data() + j * length;
      double dot = 0;
      for (std::int64_t k = 0; k < length; ++k) dot += vi[k] * vj[k];
      for (std::int64_t k = 0; k < length; ++k) vi[k] -= dot * vj[k];
    }
    double norm = 0;
    for (std::int64_t k = 0; k < length; ++k) norm += vi[k] * vi[k];
    norm = std::sqrt(norm);
    throw_if(!(norm > 1e-12), "orthogonal init: a degenerate Gaussian draw");
    for (std::int64_t k = 0; k < length; ++k) vi[k] /= norm;
  }
  out.assign(static_cast<std::size_t>(rows * cols), 0.0);
  for (std::int64_t i = 0; i < count; ++i)
    for (std::int64_t k = 0; k < length; ++k)
      out[static_cast<std::size_t>(by_rows ? i * cols + k : k * cols + i)] = v[static_cast<std::size_t>(i * length + k)];
}
}  // namespace detail

// Registration context: the store plus the init rule of every parameter in store order.
template <class T, class D>
struct param_registry {
  parameter_store<T, D>& store;
  std::vector<param_init>& inits;

  std::size_t add(const std::string& name, shape s, param_init init) {
    const std::size_t index = store.add(name, s);
    inits.push_back(init);
    return index;
  }
};

// Conv2d (and the reference's 1×1 Conv1d, whose weight is stored [Co,Ci,1]).
struct conv_layer {
  std::size_t weight = 0, bias = 0;
  int in_channels = 0, out_channels = 0, kernel = 0, stride = 1;

  template <class T, class D>
  static conv_layer make(param_registry<T, D>& r, const std::string& prefix, int cin, int cout,
                         int kernel, int stride, bool zero_init, bool stored_as_conv1d = false) {
    conv_layer c;
    c.in_channels = cin;
    c.out_channels = cout;
    c.kernel = kernel;
    c.stride = stride;
    const std::int64_t fan_in = static_cast<std::int64_t>(cin) * kernel * kernel;
    const param_init init = zero_init ? param_init{param_init::zeros, 0}
                                      : param_init{param_init::uniform_fan_in, fan_in};
    const shape w = stored_as_conv1d ? shape{cout, cin, kernel} : shape{cout, cin, kernel, kernel};
    c.weight = r.add(prefix + ".weight", w, init);
    c.bias = r.add(prefix + ".bias", shape{cout}, init);
    return c;
  }
  // The weight as [Co,Ci,K,K] whatever its stored rank.
  shape weight_shape() const { return shape{out_channels, in_channels, kernel, kernel}; }
};

struct norm_layer {
  std::size_t weight = 0, bias = 0;
  int channels = 0, groups = 0;

  template <class T, class D>
  static norm_layer make(param_registry<T, D>& r, const std::string& prefix, int channels) {
    norm_layer n;
    n.channels = channels;
    n.groups = unet_config::groups_for(channels);
    n.weight = r.add(prefix + ".weight", shape{channels}, {param_init::ones, 0});
    n.bias = r.add(prefix + ".bias", shape{channels}, {param_init::zeros, 0});
    return n;
  }
};

struct linear_layer {
  std::size_t weight = 0, bias = 0;
  int in_features = 0, out_features = 0;

  template <class T, class D>
  static linear_layer make(param_registry<T, D>& r, const std::string& prefix, int in, int out) {
    linear_layer l;
    l.in_features = in;
    l.out_features = out;
    const param_init init{param_init::uniform_fan_in, in};
    l.weight = r.add(prefix + ".weight", shape{out, in}, init);
    l.bias = r.add(prefix + ".bias", shape{out}, init);
    return l;
  }
};

// Views of a layer's parameters and gradients.
template <class T, class D>
struct param_views {
  parameter_store<T, D>* store = nullptr;

  tensor_view<T, D> value(std::size_t i) const { return store->value(i); }
  tensor_view<T, D> grad(std::size_t i) const { return store->grad(i); }
  tensor_view<T, D> conv_weight(const conv_layer& c) const {
    return store->value(c.weight).reshaped(c.weight_shape());
  }
  tensor_view<T, D> conv_weight_grad(const conv_layer& c) const {
    return store->grad(c.weight).reshaped(c.weight_shape());
  }
};

// Draws every parameter from its init rule, in store order, from one seeded stream: the
// same seed gives the same network on every platform.
template <class T, class D>
void initialise_parameters(parameter_store<T, D>& store, const std::vector<param_init>& inits,
                           std::uint64_t seed) {
  throw_if(inits.size() != store.size(), "initialise_parameters: ", inits.size(),
           " init rules for ", store.size(), " parameters");
  rng gen(seed);
  // Drawn into one host copy of the flat buffer (padding slots stay zero) and copied to
  // the store in one transfer: one copy per network, not one per parameter.
  const auto flat = store.flat_values();
  std::vector<T> host(static_cast<std::size_t>(flat.numel()), T(0));
  for (std::size_t i = 0; i < store.size(); ++i) {
    const auto v = store.value(i);
    T* first = host.data() + (v.data() - flat.data());
    T* last = first + v.numel();
    const param_init& init = inits[i];
    if (init.kind == param_init::ones) {
      std::fill(first, last, T(1));
    } else if (init.kind == param_init::uniform_fan_in) {
      const double bound = 1.0 / std::sqrt(static_cast<double>(init.fan_in));
      for (T* x = first; x != last; ++x) *x = static_cast<T>((2.0 * gen.uniform() - 1.0) * bound);
    } else if (init.kind == param_init::normal) {
      for (T* x = first; x != last; ++x) *x = static_cast<T>(init.stddev * gen.normal());
    } else if (init.kind == param_init::truncated_normal) {
      for (T* x = first; x != last; ++x) {
        double z = gen.normal();
        while (!(std::abs(z) < 2.0)) z = gen.normal();
        *x = static_cast<T>(init.stddev * z);
      }
    } else if (init.kind == param_init::orthogonal) {
      const std::int64_t rows = v.size(0), cols = v.numel() / rows;
      std::vector<double> q;
      detail::orthogonal_matrix(rows, cols, gen, q);
      for (std::int64_t k = 0; k < v.numel(); ++k) first[k] = static_cast<T>(q[static_cast<std::size_t>(k)]);
    }
  }
  device_memory<D>::copy_from_host(flat.data(), host.data(), host.size() * sizeof(T));
}

}  // namespace ambiseg::nn
