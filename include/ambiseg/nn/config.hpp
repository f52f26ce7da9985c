// ambiseg/nn/config.hpp — the hyper-parameters of the diffusion UNet (SPEC.md §6).
//
// The defaults are the reference implementation's (6,891,905 parameters). The config is
// stored in every checkpoint as JSON, so a checkpoint rebuilds its own network.
#pragma once

#include <algorithm>
#include <cstdint>
#include <set>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "ambiseg/core/error.hpp"

namespace ambiseg::nn {

struct unet_config {
  int model_channels = 32;                      // C: channels of the first level
  std::vector<int> channel_mult{1, 1, 2, 4};    // level l has C·channel_mult[l] channels
  std::vector<int> num_res_blocks{1, 2, 3, 4};  // encoder ResBlocks per level (decoder: +1)
  int num_middle_res_blocks = 4;                // middle: Res (Attn Res)×(n−1)
  std::set<int> attention_levels{3};            // levels whose blocks carry an AttentionBlock
  int num_heads = 4;                            // the reference uses 4, the paper says 1
  int in_channels = 4;                          // x_t channels + image channels
  int out_channels = 1;                         // also the channels of x_t
  bool final_tanh = true;                       // the reference's choice for x-prediction
  double norm_eps = 1e-5;
  double max_period = 10.0;                     // of the sinusoidal time embedding

  int levels() const { return static_cast<int>(channel_mult.size()); }
  int channels(int level) const { return model_channels * channel_mult.at(level); }
  int embedding_channels() const { return 4 * model_channels; }
  int image_channels() const { return in_channels - out_channels; }
  bool has_attention(int level) const { return attention_levels.count(level) != 0; }
  // Each level but the lowest halves the resolution, so H and W must divide by this.
  int size_divisor() const { return 1 << (levels() - 1); }

  // GroupNorm groups: 32 when the channel count allows it, one channel per group otherwise.
  static int groups_for(std::int64_t channels) {
    return channels % 32 == 0 ? 32 : static_cast<int>(channels);
  }

  void validate() const {
    const char* op = "unet_config";
    throw_if<value_error>(model_channels < 1, op, ": model_channels must be >= 1, got ",
                          model_channels);
    throw_if<value_error>(model_channels % 2 != 0, op,
                          ": model_channels must be even (sinusoidal time embedding), got ",
                          model_channels);
    throw_if<value_error>(channel_mult.empty(), op, ": channel_mult is empty");
    throw_if<value_error>(model_channels > 8192, op, ": model_channels ", model_channels, " (at most 8192)");
    for (int m : channel_mult) throw_if<value_error>(m > 64, op, ": channel_mult entry ", m, " (at most 64)");
    throw_if<value_error>(num_res_blocks.size() != channel_mult.size(), op, ": num_res_blocks has ",
                          num_res_blocks.size(), " entries for ", channel_mult.size(), " levels");
    for (std::size_t l = 0; l < channel_mult.size(); ++l) {
      throw_if<value_error>(channel_mult[l] < 1, op, ": channel_mult[", l, "] = ", channel_mult[l]);
      throw_if<value_error>(num_res_blocks[l] < 0, op, ": num_res_blocks[", l,
                            "] = ", num_res_blocks[l]);
    }
    throw_if<value_error>(num_middle_res_blocks < 1, op, ": num_middle_res_blocks must be >= 1, got ",
                          num_middle_res_blocks);
    throw_if<value_error>(num_heads < 1, op, ": num_heads must be >= 1, got ", num_heads);
    for (int l : attention_levels) {
      throw_if<value_error>(l < 0 || l >= levels(), op, ": attention level ", l,
                            " outside [0, ", levels(), ")");
      throw_if<value_error>(channels(l) % num_heads != 0, op, ": level ", l, " has ", channels(l),
                            " channels, not divisible by num_heads = ", num_heads);
    }
    // The middle always has attention (Res, Attn, Res, ...) at the lowest level's width.
    throw_if<value_error>(num_middle_res_blocks > 1 && channels(levels() - 1) % num_heads != 0, op,
                          ": the middle has ", channels(levels() - 1),
                          " channels, not divisible by num_heads = ", num_heads);
    throw_if<value_error>(out_channels < 1, op, ": out_channels must be >= 1, got ", out_channels);
    throw_if<value_error>(in_channels <= out_channels, op, ": in_channels (", in_channels,
                          ") must exceed out_channels (", out_channels,
                          "): the input is cat[x_t, image]");
    throw_if<value_error>(!(norm_eps > 0), op, ": norm_eps must be > 0, got ", norm_eps);
    // Bounds far above any network that fits a GPU, so that an edited config is refused
    // before it asks for an absurd allocation.
    throw_if<value_error>(levels() > 8, op, ": ", levels(), " levels (at most 8)");
    for (int l = 0; l < levels(); ++l)
      throw_if<value_error>(channels(l) > 8192 || num_res_blocks[static_cast<std::size_t>(l)] > 32, op,
                            ": level ", l, " asks for ", static_cast<long long>(model_channels) * channel_mult[l],
                            " channels and ", num_res_blocks[static_cast<std::size_t>(l)],
                            " ResBlocks (at most 8192 and 32)");
    throw_if<value_error>(num_middle_res_blocks > 32 || num_heads > 1024 || in_channels > 1024, op,
                          ": num_middle_res_blocks ", num_middle_res_blocks, ", num_heads ", num_heads,
                          ", in_channels ", in_channels, " (at most 32, 1024, 1024)");
    throw_if<value_error>(!(max_period > 0), op, ": max_period must be > 0, got ", max_period);
  }

  // --- presets ---------------------------------------------------------------------------
  // The reference network (6,891,905 parameters).
  static unet_config reference() { return {}; }
  // The paper's description: one attention head, one grey image channel.
  static unet_config paper() {
    unet_config c;
    c.num_heads = 1;
    c.in_channels = 2;
    return c;
  }
  // A laptop-sized network with the reference's structure (~0.4M parameters).
  static unet_config small() {
    unet_config c;
    c.model_channels = 32;
    c.channel_mult = {1, 2, 2};
    c.num_res_blocks = {1, 1, 1};
    c.num_middle_res_blocks = 2;
    c.attention_levels = {2};
    return c;
  }
  // For tests: every kind of block (skip convs, attention, up/down sampling) at a few
  // thousand parameters; GroupNorm falls back to one channel per group.
  static unet_config tiny() {
    unet_config c;
    c.model_channels = 8;
    c.channel_mult = {1, 2};
    c.num_res_blocks = {1, 1};
    c.num_middle_res_blocks = 2;
    c.attention_levels = {1};
    c.num_heads = 2;
    return c;
  }
  static unet_config preset(const std::string& name) {
    if (name == "reference" || name == "default") return reference();
    if (name == "paper") return paper();
    if (name == "small") return small();
    if (name == "tiny") return tiny();
    throw value_error("unet_config::preset: unknown preset '" + name +
                      "' (reference, paper, small, tiny)");
  }

  friend bool operator==(const unet_config&, const unet_config&) = default;
};

inline void to_json(nlohmann::json& j, const unet_config& c) {
  j = nlohmann::json{{"model_channels", c.model_channels},
                     {"channel_mult", c.channel_mult},
                     {"num_res_blocks", c.num_res_blocks},
                     {"num_middle_res_blocks", c.num_middle_res_blocks},
                     {"attention_levels", std::vector<int>(c.attention_levels.begin(),
                                                           c.attention_levels.end())},
                     {"num_heads", c.num_heads},
                     {"in_channels", c.in_channels},
                     {"out_channels", c.out_channels},
                     {"final_tanh", c.final_tanh},
                     {"norm_eps", c.norm_eps},
                     {"max_period", c.max_period}};
}

// Missing keys keep their defaults (older checkpoints); wrong types or bad values throw.
inline void from_json(const nlohmann::json& j, unet_config& c) {
  throw_if<format_error>(!j.is_object(), "unet_config: JSON must be an object, got ", j.type_name());
  unet_config d;
  try {
    d.model_channels = j.value("model_channels", d.model_channels);
    d.channel_mult = j.value("channel_mult", d.channel_mult);
    d.num_res_blocks = j.value("num_res_blocks", d.num_res_blocks);
    d.num_middle_res_blocks = j.value("num_middle_res_blocks", d.num_middle_res_blocks);
    if (j.contains("attention_levels")) {
      const auto levels = j.at("attention_levels").get<std::vector<int>>();
      d.attention_levels = std::set<int>(levels.begin(), levels.end());
    }
    d.num_heads = j.value("num_heads", d.num_heads);
    d.in_channels = j.value("in_channels", d.in_channels);
    d.out_channels = j.value("out_channels", d.out_channels);
    d.final_tanh = j.value("final_tanh", d.final_tanh);
    d.norm_eps = j.value("norm_eps", d.norm_eps);
    d.max_period = j.value("max_period", d.max_period);
  } catch (const nlohmann::json::exception& e) {
    throw format_error(std::string("unet_config: bad JSON: ") + e.what());
  }
  try {
    d.validate();
  } catch (const value_error& e) {
    throw format_error(e.what());
  }
  c = std::move(d);
}

}  // namespace ambiseg::nn
