// ambiseg/train/checkpoint.hpp — a training run in one safetensors file: the weights (by
// name, io/checkpoint.hpp), each state component's flat tensors, and metadata.
//
//   <name>                     weights
//   <prefix><state>.<name>     a component's flat state per parameter, e.g. optim.m.<name>,
//                              optim.v.<name> (AdamW), ema.<name> (the EMA)
//   __metadata__               format, step, rng, config (JSON), dtype, one JSON entry per
//                              component (optimizer, ema), user keys
//
// A component is anything that exposes its state as named flat tensors laid out like the
// parameters plus scalar JSON (checkpoint_component below): AdamW and the EMA do, and the
// file is written and read without knowing either. Loading checks every name, shape and
// metadata entry before touching the model or a component (an I/O error in the reads that
// follow — a file truncated meanwhile — can still leave them partly loaded).
#pragma once

#include <bit>
#include <concepts>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

#include <nlohmann/json.hpp>

#include "ambiseg/core/error.hpp"
#include "ambiseg/core/parameters.hpp"
#include "ambiseg/core/random.hpp"
#include "ambiseg/io/checkpoint.hpp"
#include "ambiseg/optim/adamw.hpp"
#include "ambiseg/optim/ema.hpp"

namespace ambiseg::train {

inline constexpr std::string_view training_checkpoint_format = "ambiseg.training_checkpoint.v1";

struct training_state {
  std::int64_t step = 0;  // completed training iterations
  rng::state_type rng_state{};
  nlohmann::json config = nlohmann::json::object();  // the model/training configuration
  std::map<std::string, std::string> extra;          // free-form (e.g. a git hash)
};

template <class C, class T, class D>
concept checkpoint_component = requires(C& c, const C& cc, const nlohmann::json& j) {
  { C::checkpoint_key } -> std::convertible_to<std::string_view>;     // metadata key
  { C::checkpoint_prefix } -> std::convertible_to<std::string_view>;  // tensor name prefix
  { c.state_tensors() } -> std::same_as<std::vector<named_flat_state<T, D>>>;
  { cc.state_json() } -> std::same_as<nlohmann::json>;
  cc.check_state_json(j);  // throws value_error if the scalars would be refused
  c.load_state_json(j);    // applies them (after check_state_json)
};

// A component seen through type erasure, so that save/load take any number of them.
template <class T, class D>
struct state_section {
  std::string key, prefix;
  std::vector<named_flat_state<T, D>> tensors;
  std::function<nlohmann::json()> state_json;
  std::function<void(const nlohmann::json&)> check_state_json, load_state_json;
};

template <class T, class D, class C>
  requires checkpoint_component<C, T, D>
state_section<T, D> section(C& component) {
  return {std::string(C::checkpoint_key), std::string(C::checkpoint_prefix), component.state_tensors(),
          [&component] { return component.state_json(); },
          [&component](const nlohmann::json& j) { component.check_state_json(j); },
          [&component](const nlohmann::json& j) { component.load_state_json(j); }};
}

// A model's buffers (models::model_with_buffers) as a section: tensors "buffers.<name>",
// laid out by their own store, and no scalars.
template <class T, class D>
state_section<T, D> buffers_section(parameter_store<T, D>& buffers) {
  auto no_scalars = [](const nlohmann::json& j) {
    throw_if<value_error>(!j.is_object() || !j.empty(), "expected {}, got ", j.dump());
  };
  return {"buffers", "buffers.", {{"", buffers.flat_values(), "model buffers", &buffers}},
          [] { return nlohmann::json::object(); }, no_scalars, no_scalars};
}

namespace checkpoint_detail {

inline const std::vector<std::string>& fixed_metadata_keys() {
  static const std::vector<std::string> keys = {"format", "step", "rng", "config", "dtype", "state_prefixes"};
  return keys;
}

inline nlohmann::json rng_to_json(const rng::state_type& s) {
  return {{"s", {s.s[0], s.s[1], s.s[2], s.s[3]}},
          {"cached_normal_bits", std::bit_cast<std::uint64_t>(s.cached_normal)},
          {"has_cached_normal", s.has_cached_normal}};
}

inline std::string tensor_prefix(const std::string& prefix, const std::string& state) {
  return state.empty() ? prefix : prefix + state + ".";
}

}  // namespace checkpoint_detail

template <class T, class D>
void save_training_checkpoint(const std::filesystem::path& path, const parameter_store<T, D>& params,
                              const training_state& state, const std::vector<state_section<T, D>>& sections) {
  std::map<std::string, std::string> meta;
  for (const auto& s : sections) {
    for (const auto& t : s.tensors) {
      const std::int64_t flat = (t.layout ? *t.layout : params).flat_values().numel();
      throw_if<shape_error>(t.flat.numel() != flat, "save_training_checkpoint: ", s.key, " state '", t.name,
                            "' holds ", t.flat.numel(), " elements, its layout ", flat);
    }
    meta[s.key] = s.state_json().dump();
  }
  for (const auto& [k, v] : state.extra) {
    bool reserved = meta.count(k) != 0;
    for (const auto& r : checkpoint_detail::fixed_metadata_keys()) reserved = reserved || k == r;
    throw_if<value_error>(reserved, "save_training_checkpoint: extra metadata key '", k, "' is reserved");
    meta[k] = v;
  }
  meta["format"] = std::string(training_checkpoint_format);
  meta["step"] = std::to_string(state.step);
  meta["rng"] = checkpoint_detail::rng_to_json(state.rng_state).dump();
  meta["config"] = state.config.dump();
  meta["dtype"] = std::string(io::dtype_name(io::dtype_of<T>()));
  // Lets a reader that restores fewer components (the weights alone, no EMA) tell state
  // tensors from weights.
  nlohmann::json prefixes = nlohmann::json::array();
  for (const auto& s : sections) prefixes.push_back(s.prefix);
  meta["state_prefixes"] = prefixes.dump();

  std::vector<io::flat_section<T, D>> flats{{"", params.flat_values()}};
  for (const auto& s : sections)
    for (const auto& t : s.tensors)
      flats.push_back({checkpoint_detail::tensor_prefix(s.prefix, t.name), tensor_view<const T, D>(t.flat), t.layout});
  io::save_flat_sections(path, params, flats, meta);
}

// Restores the weights and every section (tensors and scalars). Returns step, rng state,
// config and the user's extra metadata.
template <class T, class D>
training_state load_training_checkpoint(const std::filesystem::path& path, parameter_store<T, D>& params,
                                        const std::vector<state_section<T, D>>& sections) {
  const auto file = io::safetensors_file::open(path);
  const io::metadata_reader md{file, "load_training_checkpoint"};
  md.check(md.text("format") == training_checkpoint_format, "not a training checkpoint (format '",
           md.text("format"), "', expected '", training_checkpoint_format, "')");
  // Parse and check everything first: a failure leaves the model and the components as
  // they were.
  training_state state;
  const std::string& step_text = md.text("step");
  md.check(!step_text.empty() && step_text.size() < 19 &&
               step_text.find_first_not_of("0123456789") == std::string::npos,
           "metadata 'step' is not a non-negative integer: '", step_text, "'");
  state.step = std::stoll(step_text);

  const auto r = md.json("rng");
  md.check(r.is_object() && r.contains("s") && r["s"].is_array() && r["s"].size() == 4,
           "metadata 'rng' lacks the four state words \"s\"");
  for (std::size_t i = 0; i < 4; ++i) {
    md.check(r["s"][i].is_number_unsigned(), "metadata 'rng': state word ", i, " is not an unsigned integer");
    state.rng_state.s[i] = r["s"][i].get<std::uint64_t>();
  }
  state.rng_state.cached_normal = std::bit_cast<double>(md.field<std::uint64_t>(r, "rng", "cached_normal_bits"));
  state.rng_state.has_cached_normal = md.field<bool>(r, "rng", "has_cached_normal");
  state.config = md.json("config");

  std::vector<nlohmann::json> scalars;
  for (const auto& s : sections) {
    for (const auto& t : s.tensors) {
      const std::int64_t flat = (t.layout ? *t.layout : params).flat_values().numel();
      md.check(t.flat.numel() == flat, s.key, " state '", t.name, "' holds ", t.flat.numel(),
               " elements, its layout ", flat);
    }
    scalars.push_back(md.json(s.key));
    try {
      s.check_state_json(scalars.back());
    } catch (const ambiseg::error& e) {
      md.check(false, "metadata '", s.key, "': ", e.what());
    }
  }
  for (const auto& [k, v] : file.metadata()) {
    bool known = false;
    for (const auto& key : checkpoint_detail::fixed_metadata_keys()) known = known || k == key;
    for (const auto& s : sections) known = known || k == s.key;
    if (!known) state.extra[k] = v;
  }

  // Every section strict: the weights ignore every component's tensors, those asked for
  // and those the file holds besides (files without "state_prefixes" hold AdamW's and the
  // EMA's at most).
  std::vector<std::string> prefixes;
  for (const auto& s : sections) prefixes.push_back(s.prefix);
  if (file.metadata().count("state_prefixes") != 0) {
    const auto listed = md.json("state_prefixes");
    md.check(listed.is_array(), "metadata 'state_prefixes' is not a list");
    for (const auto& p : listed) {
      md.check(p.is_string() && !p.get<std::string>().empty(), "metadata 'state_prefixes' holds ", p.dump());
      prefixes.push_back(p.get<std::string>());
    }
  } else {
    prefixes.insert(prefixes.end(), {"optim.", "ema."});
  }
  std::vector<io::flat_section<T, D>> targets;
  std::vector<std::string> names{"weights"};
  for (const auto& s : sections)
    for (const auto& t : s.tensors) names.push_back(!t.description.empty() ? t.description : s.key + " " + (t.name.empty() ? "weights" : t.name));
  const auto weights = io::detail::plan_load(params, file, {.prefix = "", .ignore_prefixes = prefixes});
  io::detail::throw_if_incomplete<T>(weights, file, "load_training_checkpoint: weights");
  std::vector<io::detail::load_plan> plans;
  std::size_t n = 1;
  for (const auto& s : sections)
    for (const auto& t : s.tensors) {
      plans.push_back(io::detail::plan_load(t.layout ? *t.layout : params, file,
                                            {.prefix = checkpoint_detail::tensor_prefix(s.prefix, t.name),
                                             .ignore_prefixes = {}}));
      io::detail::throw_if_incomplete<T>(plans.back(), file, "load_training_checkpoint: " + names[n++]);
    }

  // The flat buffers' padding is zero everywhere; loading into zeros keeps it so.
  io::detail::load_flat(weights, params, file, "", params.flat_values());
  std::size_t p = 0;
  for (std::size_t i = 0; i < sections.size(); ++i) {
    for (const auto& t : sections[i].tensors) {
      io::detail::load_flat(plans[p], t.layout ? *t.layout : params, file,
                            checkpoint_detail::tensor_prefix(sections[i].prefix, t.name), t.flat);
      ++p;
    }
    sections[i].load_state_json(scalars[i]);
  }
  return state;
}

// The usual run: AdamW and, when given, an EMA (the sections above, spelled out).
template <class T, class D>
void save_training_checkpoint(const std::filesystem::path& path, const parameter_store<T, D>& params,
                              const optim::adamw<T, D>& opt, const training_state& state,
                              const std::type_identity_t<optim::ema<T, D>>* ema = nullptr) {
  // Saving reads the components; section() takes them mutable because loading writes them.
  std::vector<state_section<T, D>> s{section<T, D>(const_cast<optim::adamw<T, D>&>(opt))};
  if (ema) s.push_back(section<T, D>(const_cast<optim::ema<T, D>&>(*ema)));
  save_training_checkpoint(path, params, state, s);
}
template <class T, class D>
training_state load_training_checkpoint(const std::filesystem::path& path, parameter_store<T, D>& params,
                                        optim::adamw<T, D>& opt,
                                        std::type_identity_t<optim::ema<T, D>>* ema = nullptr) {
  std::vector<state_section<T, D>> s{section<T, D>(opt)};
  if (ema) s.push_back(section<T, D>(*ema));
  return load_training_checkpoint(path, params, s);
}

// The config JSON a checkpoint (training or weights-only, written by the trainer) carries.
inline nlohmann::json read_checkpoint_config(const std::filesystem::path& path) {
  const auto file = io::safetensors_file::open(path);
  const io::metadata_reader md{file, "read_checkpoint_config"};
  md.check(file.metadata().count("config") != 0, "no 'config' metadata (not an ambiseg checkpoint)");
  return md.json("config");
}

}  // namespace ambiseg::train
