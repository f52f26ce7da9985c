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
struct param_init {
  enum kind_type { uniform_fan_in, ones, zeros } kind = zeros;
  std::int64_t fan_in = 0;  // uniform_fan_in: U(−1/√fan_in, 1/√fan_in), PyTorch's default
};

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
    }
  }
  device_memory<D>::copy_from_host(flat.data(), host.data(), host.size() * sizeof(T));
}

}  // namespace ambiseg::nn
