// ambiseg._ambiseg — the C++ library for Python (nanobind). The public API is the Python
// package around it (python/ambiseg/__init__.py); this file only converts.
//
// Arrays: inputs are C-contiguous CPU arrays of the exact dtype (the Python layer converts,
// without a copy where the layout allows, DLPack included), read in place; outputs are new
// numpy arrays owning their buffers. The GIL is released while C++ computes. Errors keep
// the C++ message: shape, value and format errors (a hostile pickle, a wrong shape, a NaN)
// raise ValueError; a missing or unreadable file OSError; the rest RuntimeError.
#include <nanobind/nanobind.h>
#include <nanobind/ndarray.h>
#include <nanobind/stl/function.h>
#include <nanobind/stl/optional.h>
#include <nanobind/stl/pair.h>
#include <nanobind/stl/string.h>
#include <nanobind/stl/tuple.h>
#include <nanobind/stl/vector.h>

#include <cmath>
#include <cstdint>
#include <memory>
#include <optional>
#include <sstream>
#include <string>
#include <utility>
#include <variant>
#include <vector>

#include "ambiseg/ambiseg.hpp"
#include "ambiseg/data/all.hpp"
#include "ambiseg/metrics/evaluate.hpp"
#include "ambiseg/models/diffusion_policies.hpp"
#include "ambiseg/train/sampling.hpp"
#include "ambiseg_apps/eval_tool.hpp"
#include "ambiseg_apps/model_api.hpp"
#include "ambiseg_apps/results.hpp"
#include "ambiseg_apps/run_cli.hpp"

namespace nb = nanobind;
using namespace nb::literals;

namespace {

using namespace ambiseg;

template <class T, int Rank>
using input_array = nb::ndarray<const T, nb::ndim<Rank>, nb::c_contig, nb::device::cpu>;
template <class T>
using output_array = nb::ndarray<nb::numpy, T>;

// A numpy array that owns `values` (moved to the heap, freed with the array).
template <class T>
output_array<T> to_numpy(std::vector<T>&& values, std::vector<std::size_t> shape) {
  auto* owned = new std::vector<T>(std::move(values));
  nb::capsule free_it(owned, [](void* p) noexcept { delete static_cast<std::vector<T>*>(p); });
  return output_array<T>(owned->data(), shape.size(), shape.data(), free_it);
}
template <class T>
output_array<T> to_numpy(const tensor<T>& t) {
  std::vector<std::size_t> shape(t.shape().begin(), t.shape().end());
  return to_numpy(std::vector<T>(t.begin(), t.end()), std::move(shape));
}

// A C-contiguous CPU array of T, viewed in place.
template <class T, class Array>
tensor_view<const T> view_of(const Array& a) {
  std::vector<std::int64_t> extents(a.ndim());
  for (std::size_t k = 0; k < a.ndim(); ++k) extents[k] = static_cast<std::int64_t>(a.shape(k));
  return tensor_view<const T>(a.data(), shape::from_range(extents.begin(), extents.end()));
}

template <class Array>
void require_finite(const Array& a, const char* what) {
  const std::size_t n = a.size();
  for (std::size_t i = 0; i < n; ++i)
    throw_if<value_error>(!std::isfinite(a.data()[i]), what, " holds a non-finite value (", a.data()[i],
                          ") at flat index ", i);
}

// What with_model_sampling adjusts (a distilled student's fixed steps and grid).
struct sampling_settings {
  int steps = 10;
  models::sampler_kind sampler{};
  diffusion::time_spacing spacing{};
};

// A model loaded for sampling, on the CPU or (where built) a GPU.
class model_handle {
 public:
  model_handle(const std::string& path, const std::string& device, std::optional<bool> ema) : device_(device) {
    if (device == "cpu") {
      model_ = apps::load_for_sampling<cpu>(path, ema);
#if defined(AMBISEG_WITH_CUDA)
    } else if (device == "cuda") {
      context_ = std::make_unique<device_context<cuda>>();
      const device_context<cuda>::scope on(*context_);
      model_ = apps::load_for_sampling<cuda>(path, ema);
#endif
    } else {
      throw value_error("device '" + device + "': expected 'cpu'" +
#if defined(AMBISEG_WITH_CUDA)
                        std::string(" or 'cuda'")
#else
                        std::string(" (this ambiseg was built without CUDA)")
#endif
      );
    }
  }

  void close() {
    model_ = std::monostate{};
#if defined(AMBISEG_WITH_CUDA)
    context_.reset();
#endif
  }
  bool closed() const { return std::holds_alternative<std::monostate>(model_); }
  const std::string& device() const { return device_; }

  // f(the loaded model), whichever device holds it.
  template <class F>
  decltype(auto) visit(F&& f) {
    if (auto* m = std::get_if<apps::sampling_model<cpu>>(&model_)) return f(*m);
#if defined(AMBISEG_WITH_CUDA)
    if (auto* m = std::get_if<apps::sampling_model<cuda>>(&model_)) return f(*m);
#endif
    throw value_error("ambiseg.Model: the model is closed");
  }

  // images [B, C, H, W] encoded; init_noise [B, n, H, W] or none → masks, x̂0 [B, n, H, W].
  std::pair<tensor<std::uint8_t>, tensor<float>> sample(tensor_view<const float> images, int n, int steps,
                                                        const std::string& sampler, bool clip_x0, std::uint64_t seed,
                                                        tensor_view<const float> init_noise,
                                                        const std::string& spacing) {
    return visit([&](auto& m) {
      sampling_settings request;
      request.steps = steps;
      request.sampler = models::parse_sampler(sampler);
      request.spacing = diffusion::parse_spacing(spacing);
      std::ostringstream notes;
      request = apps::with_model_sampling(request, m, notes);
      rng g(seed);
      const apps::draw_options drawing{n, request.steps, request.sampler, clip_x0, request.spacing};
      auto run = [&] { return apps::draw_masks(m, images, drawing, g, init_noise); };
      train::sample_result r;
#if defined(AMBISEG_WITH_CUDA)
      if (context_) {
        const device_context<cuda>::scope on(*context_);
        r = run();
      } else {
        r = run();
      }
#else
      r = run();
#endif
      return std::pair{std::move(r.masks), std::move(r.x0_hat)};
    });
  }

  // grey [B, H, W] in [0, 1] → images [B, C, H, W] as the model was trained to see them.
  tensor<float> encode(tensor_view<const float> grey) {
    return visit([&](auto& m) {
      const data::image_encoding e = m.config.encoding;
      const std::int64_t b = grey.size(0), h = grey.size(1), w = grey.size(2), c = data::encoded_channels(e);
      tensor<float> out(shape{b, c, h, w});
      for (std::int64_t i = 0; i < b; ++i)
        data::encode_image(tensor_view<const float>(grey.data() + i * h * w, shape{1, h, w}), e,
                           tensor_view<float>(out.data() + i * c * h * w, shape{c, h, w}));
      return out;
    });
  }

  nlohmann::json info() {
    return visit([&](auto& m) {
      return nlohmann::json{{"config", nlohmann::json(m.config)},
                            {"step", m.step},
                            {"ema_weights", m.ema_weights},
                            {"kind", std::string(m.model->kind_name())},
                            {"parameters", m.model->parameters().count()},
                            {"image_channels", m.config.image_channels()},
                            {"size_divisor", m.model->inputs().size_divisor},
                            {"device", device_}};
    });
  }

 private:
  std::string device_;
#if defined(AMBISEG_WITH_CUDA)
  std::unique_ptr<device_context<cuda>> context_;
  std::variant<std::monostate, apps::sampling_model<cpu>, apps::sampling_model<cuda>> model_;
#else
  std::variant<std::monostate, apps::sampling_model<cpu>> model_;
#endif
};

// Masks as 0/1 bytes [B, k, H, W] from any numeric array (value > 0.5 is foreground).
apps::mask_batch masks_of(const nb::ndarray<nb::ndim<4>, nb::c_contig, nb::device::cpu>& a, const char* what) {
  apps::mask_batch b;
  b.images = static_cast<std::int64_t>(a.shape(0));
  b.count = static_cast<std::int64_t>(a.shape(1));
  b.height = static_cast<std::int64_t>(a.shape(2));
  b.width = static_cast<std::int64_t>(a.shape(3));
  throw_if<shape_error>(b.images < 1 || b.count < 1 || b.height < 1 || b.width < 1, what, " has an empty axis");
  const std::size_t n = a.size();
  b.data.resize(n);
  const apps::foreground_threshold fg;
  auto fill = [&]<class T>(const T* p) {
    for (std::size_t i = 0; i < n; ++i) b.data[i] = fg(p[i]);
  };
  const nb::dlpack::dtype t = a.dtype();
  try {
    if (t == nb::dtype<bool>()) fill(static_cast<const bool*>(a.data()));
    else if (t == nb::dtype<std::uint8_t>()) fill(static_cast<const std::uint8_t*>(a.data()));
    else if (t == nb::dtype<std::int8_t>()) fill(static_cast<const std::int8_t*>(a.data()));
    else if (t == nb::dtype<std::int32_t>()) fill(static_cast<const std::int32_t*>(a.data()));
    else if (t == nb::dtype<std::int64_t>()) fill(static_cast<const std::int64_t*>(a.data()));
    else if (t == nb::dtype<float>()) fill(static_cast<const float*>(a.data()));
    else if (t == nb::dtype<double>()) fill(static_cast<const double*>(a.data()));
    else throw nb::type_error((std::string(what) + ": dtype must be bool, (u)int8, int32, int64, float32 or float64").c_str());
  } catch (const value_error& e) {
    throw value_error(std::string(what) + ": " + e.what());
  }
  return b;
}

std::string evaluate(const nb::ndarray<nb::ndim<4>, nb::c_contig, nb::device::cpu>& samples,
                     const nb::ndarray<nb::ndim<4>, nb::c_contig, nb::device::cpu>& annotations,
                     std::optional<double> pp, bool unbiased, bool paper_protocol) {
  apps::mask_batch s = masks_of(samples, "samples"), a = masks_of(annotations, "annotations");
  nb::gil_scoped_release free_python;
  throw_if<shape_error>(s.images != a.images || s.height != a.height || s.width != a.width, "samples (",
                        s.images, ", ", s.count, ", ", s.height, ", ", s.width, ") and annotations (", a.images, ", ",
                        a.count, ", ", a.height, ", ", a.width, ") differ in images or size");
  metrics::evaluation_options options;
  if (paper_protocol) {
    throw_if<value_error>(unbiased, "protocol='paper' uses the all-pairs estimator; drop unbiased");
    throw_if<value_error>(pp.has_value(), "protocol='paper' post-processes with r = 0.5; drop pp");
    options = metrics::paper_protocol();  // all pairs, pp 0.5
    const std::int64_t keep = metrics::paper_protocol_samples, plane = s.height * s.width;
    throw_if<shape_error>(s.count < keep, "protocol='paper' scores ", keep, " samples per image; samples hold ",
                          s.count);
    std::vector<std::uint8_t> first(static_cast<std::size_t>(s.images * keep * plane));
    for (std::int64_t k = 0; k < s.images; ++k)
      std::copy_n(s.data.begin() + k * s.count * plane, keep * plane, first.begin() + k * keep * plane);
    s.data = std::move(first);
    s.count = keep;
  } else {
    if (pp) {
      throw_if<value_error>(!(*pp >= 0.0 && *pp <= 1.0), "pp = ", *pp, " must lie in [0, 1]");
      options.pp_ratio = *pp;
    }
    if (unbiased) options.estimator = metrics::ged_estimator::unbiased;
  }
  const std::vector<apps::eval_row> rows{{"samples", metrics::evaluate(s.view(), a.view(), options)}};
  return apps::format_results(rows, nlohmann::ordered_json{{"samples", "python"}, {"annotations", "python"}}).json;
}

struct python_case {
  std::string id;
  nb::object image;  // numpy [H, W] float32 grey
  nb::object masks;  // numpy [m, H, W] uint8
};

std::vector<python_case> cases_of(const data::case_set& set) {
  std::vector<python_case> out;
  out.reserve(set.size());
  for (std::size_t i = 0; i < set.size(); ++i) {
    const data::case_ref c = set[i];
    const auto h = static_cast<std::size_t>(c.height()), w = static_cast<std::size_t>(c.width());
    std::vector<float> image(c.image.data(), c.image.data() + h * w);
    std::vector<std::uint8_t> masks(c.masks.data(), c.masks.data() + c.masks.numel());
    out.push_back({std::string(c.id), nb::cast(to_numpy(std::move(image), {h, w})),
                   nb::cast(to_numpy(std::move(masks), {static_cast<std::size_t>(c.annotations()), h, w}))});
  }
  return out;
}

// The policy of a diffusion model by name, evaluated at given times.
class policy_handle {
 public:
  explicit policy_handle(const models::policy_choice& c) : d_(models::make_diffusion<cpu>(c)) {}
  std::string describe() const { return d_->describe(); }
  double log_snr(double t) const { return d_->log_snr(check_t(t)); }
  double alpha(double t) const { return std::sqrt(1.0 / (1.0 + std::exp(-log_snr(t)))); }
  double sigma(double t) const { return std::sqrt(1.0 / (1.0 + std::exp(log_snr(t)))); }
  double weight(double t) const { return d_->weight(check_t(t)); }
  std::vector<double> sampling_times(int steps, const std::string& spacing) const {
    throw_if<value_error>(steps < 1, "steps = ", steps, " must be >= 1");
    return d_->sampling_times(steps, diffusion::parse_spacing(spacing));
  }

 private:
  static double check_t(double t) {
    throw_if<value_error>(!(t >= 0.0 && t <= 1.0), "t = ", t, " must lie in [0, 1]");
    return t;
  }
  std::unique_ptr<models::diffusion_model<cpu>> d_;
};

// The tool, in-process: exit status, what it printed, and whether a Ctrl-C (or the
// callback's False, or its exception) stopped a training run.
struct cli_result {
  int code = 0;
  std::string out, err;
  bool interrupted = false;
};

cli_result run_cli(const std::vector<std::string>& args, std::optional<nb::callable> progress) {
  cli_result result;
  std::optional<nb::object> failure;  // an exception the callback raised, re-raised after
  apps::run_options ro;
  ro.rethrow_errors = true;
  ro.on_step = [&](const apps::step_progress& p) {
    nb::gil_scoped_acquire with_python;
    if (PyErr_CheckSignals() != 0) {  // Ctrl-C: stop at this step, checkpointed
      PyErr_Clear();
      result.interrupted = true;
      return false;
    }
    if (!progress) return true;
    try {
      nb::dict d;
      d["step"] = p.step;
      d["total_steps"] = p.total_steps;
      d["loss"] = p.loss;
      d["lr"] = p.lr;
      d["grad_norm"] = p.grad_norm;
      d["seconds"] = p.seconds;
      nb::object keep = (*progress)(d);
      return keep.is_none() || nb::cast<bool>(keep);
    } catch (nb::python_error& e) {
      if (e.matches(PyExc_KeyboardInterrupt)) result.interrupted = true;
      else failure = nb::borrow(e.value());
      return false;
    }
  };
  std::ostringstream out, err;
  {
    nb::gil_scoped_release free_python;
    result.code = apps::run_cli(args, out, err, ro);
  }
  result.out = out.str();
  result.err = err.str();
  if (failure) {
    PyErr_SetObject(reinterpret_cast<PyObject*>(Py_TYPE(failure->ptr())), failure->ptr());
    throw nb::python_error();
  }
  return result;
}

}  // namespace

NB_MODULE(_ambiseg, m) {
  m.doc() = "ambiseg's C++ library (see the ambiseg package for the documented API)";
  nb::register_exception_translator([](const std::exception_ptr& p, void*) {
    try {
      std::rethrow_exception(p);
    } catch (const ambiseg::format_error& e) {
      PyErr_SetString(PyExc_ValueError, e.what());
    } catch (const ambiseg::io_error& e) {
      PyErr_SetString(PyExc_OSError, e.what());
    } catch (const ambiseg::shape_error& e) {
      PyErr_SetString(PyExc_ValueError, e.what());
    } catch (const ambiseg::value_error& e) {
      PyErr_SetString(PyExc_ValueError, e.what());
    } catch (const ambiseg::error& e) {
      PyErr_SetString(PyExc_RuntimeError, e.what());
    }
  });

  m.attr("version") = ambiseg::version;
#if defined(AMBISEG_WITH_CUDA)
  m.attr("with_cuda") = true;
#else
  m.attr("with_cuda") = false;
#endif

  nb::class_<model_handle>(m, "Model")
      .def(nb::init<const std::string&, const std::string&, std::optional<bool>>(), "path"_a, "device"_a = "cpu",
           "ema"_a = nb::none())
      .def("close", &model_handle::close)
      .def_prop_ro("closed", &model_handle::closed)
      .def_prop_ro("device", &model_handle::device)
      .def("info_json", [](model_handle& h) { return h.info().dump(); })
      .def(
          "encode",
          [](model_handle& h, const input_array<float, 3>& grey) {
            require_finite(grey, "images");
            const auto v = view_of<float>(grey);
            nb::gil_scoped_release free_python;
            return to_numpy(h.encode(v));
          },
          "grey"_a)
      .def(
          "sample",
          [](model_handle& h, const input_array<float, 4>& images, int n, int steps, const std::string& sampler,
             bool clip_x0, std::uint64_t seed, std::optional<input_array<float, 4>> init_noise,
             const std::string& spacing) {
            require_finite(images, "images");
            if (init_noise) require_finite(*init_noise, "init_noise");
            throw_if<value_error>(n < 1 || steps < 1, "n = ", n, " and steps = ", steps, " must be >= 1");
            const auto v = view_of<float>(images);
            const tensor_view<const float> noise = init_noise ? view_of<float>(*init_noise) : tensor_view<const float>{};
            std::pair<tensor<std::uint8_t>, tensor<float>> r;
            {
              nb::gil_scoped_release free_python;
              r = h.sample(v, n, steps, sampler, clip_x0, seed, noise, spacing);
            }
            return std::make_pair(to_numpy(r.first), to_numpy(r.second));
          },
          "images"_a, "n"_a, "steps"_a, "sampler"_a, "clip_x0"_a, "seed"_a, "init_noise"_a = nb::none(),
          "spacing"_a = "uniform_t");

  m.def("evaluate", &evaluate, "samples"_a, "annotations"_a, "pp"_a = nb::none(), "unbiased"_a = false,
        "paper_protocol"_a = false);

  nb::class_<python_case>(m, "Case")
      .def_ro("id", &python_case::id)
      .def_ro("image", &python_case::image)
      .def_ro("masks", &python_case::masks)
      .def("__repr__", [](const python_case& c) { return "ambiseg.data.Case('" + c.id + "')"; });
  // The loading runs without the GIL; the numpy arrays are made with it.
  auto loader = [](data::case_set (*load)(const std::filesystem::path&)) {
    return [load](const std::string& path) {
      data::case_set set;
      {
        nb::gil_scoped_release free_python;
        set = load(path);
      }
      return cases_of(set);
    };
  };
  m.def("load_lidc_pickle", loader([](const std::filesystem::path& p) { return data::load_lidc_pickle(p); }),
        "path"_a);
  m.def("load_lidc_crops_png", loader(&data::load_lidc_crops_png), "root"_a);
  m.def("load_cimd_folder", loader(&data::load_cimd_folder), "path"_a);
  m.def(
      "synthetic_lesions",
      [](std::int64_t count, std::int64_t size, std::uint64_t seed, std::int64_t annotators, std::int64_t first) {
        throw_if<value_error>(count < 1 || first < 0, "count = ", count, " and first = ", first,
                              " must be >= 1 and >= 0");
        data::synthetic_config c;
        c.size = size;
        c.seed = seed;
        c.n_annotators = annotators;
        return cases_of(data::synthetic_lesions(c).make_cases(static_cast<std::uint64_t>(first),
                                                              static_cast<std::uint64_t>(count)));
      },
      "count"_a, "size"_a = 64, "seed"_a = 0, "annotators"_a = 4, "first"_a = 0);

  nb::class_<policy_handle>(m, "Policy")
      .def(
          "__init__",
          [](policy_handle* self, const std::string& schedule, double input_scale, const std::string& prediction,
             const std::string& weighting, double sigmoid_bias) {
            models::policy_choice c;
            c.schedule = schedule;
            c.input_scale = input_scale;
            c.prediction = prediction;
            c.weighting = weighting;
            c.sigmoid_bias = sigmoid_bias;
            new (self) policy_handle(c);
          },
          "schedule"_a = "cosine", "input_scale"_a = 0.1, "prediction"_a = "x", "weighting"_a = "snr_plus_one",
          "sigmoid_bias"_a = 0.0)
      .def("describe", &policy_handle::describe)
      .def("log_snr", &policy_handle::log_snr, "t"_a)
      .def("alpha", &policy_handle::alpha, "t"_a)
      .def("sigma", &policy_handle::sigma, "t"_a)
      .def("weight", &policy_handle::weight, "t"_a)
      .def("sampling_times", &policy_handle::sampling_times, "steps"_a, "spacing"_a = "uniform_t");
  m.def("sampler_names", [] { return models::sampler_names(); });
  m.def("model_kinds", [] { return apps::model_kinds(); });

  nb::class_<cli_result>(m, "CliResult")
      .def_ro("code", &cli_result::code)
      .def_ro("out", &cli_result::out)
      .def_ro("err", &cli_result::err)
      .def_ro("interrupted", &cli_result::interrupted);
  m.def("run_cli", &run_cli, "args"_a, "progress"_a = nb::none());
}
