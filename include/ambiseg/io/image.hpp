// ambiseg/io/image.hpp — PNG/JPEG decoding to grey, PNG encoding, with hostile-input limits.
//
//   decode_image(bytes)      PNG or JPEG → tensor<uint8_t> [H, W] (colour converted to grey)
//   read_image(path)         the same from a file
//   encode_png(pixels)       [H, W] grey or [H, W, 3] RGB → PNG bytes
//   write_png(path, pixels)  encode + io/atomic_file.hpp (complete file or none)
//
// Why stb_image: the library is header-only, and libpng/libjpeg would need every consumer
// to link them. Debian's libstb-dev ships the stb headers; they are compiled here, inside
// a private namespace, with STB_IMAGE_STATIC (every stb symbol has internal linkage, so no
// clash with a program that links its own stb), only the PNG and JPEG decoders enabled
// (the GIF/PSD/HDR/PIC decoders carry most of stb's CVE history), no stdio, and an
// allocator that refuses any block larger than the image's limit, so a decompression bomb
// ends in format_error instead of gigabytes of memory. The configuration macros are
// undefined again afterwards. Grey conversion is stb's: Y = (77 R + 150 G + 29 B) >> 8.
#pragma once

#include <algorithm>
#include <cassert>
#include <climits>
#include <cmath>
#include <cstdarg>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <span>
#include <string>
#include <vector>
// The C headers stb includes, included here first so that their include guards make the
// copies inside the namespace below empty.
#include <assert.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#if defined(__SSE2__)
#include <emmintrin.h>
#endif
#if defined(__ARM_NEON)
#include <arm_neon.h>
#endif

#include "ambiseg/core/error.hpp"
#include "ambiseg/core/tensor.hpp"
#include "ambiseg/io/atomic_file.hpp"

namespace ambiseg::io::stb_detail {
// stb reports allocation failure as an error; this turns "too large" into exactly that.
inline thread_local std::size_t allocation_cap = 0;
inline void* capped_malloc(std::size_t n) { return n > allocation_cap ? nullptr : std::malloc(n); }
inline void* capped_realloc(void* p, std::size_t n) {
  return n > allocation_cap ? nullptr : std::realloc(p, n);
}
}  // namespace ambiseg::io::stb_detail

#pragma push_macro("STBI_INCLUDE_STB_IMAGE_H")
#pragma push_macro("INCLUDE_STB_IMAGE_WRITE_H")
#undef STBI_INCLUDE_STB_IMAGE_H
#undef INCLUDE_STB_IMAGE_WRITE_H
#define STB_IMAGE_STATIC
#define STB_IMAGE_IMPLEMENTATION
#define STBI_ONLY_PNG
#define STBI_ONLY_JPEG
#define STBI_NO_STDIO
#define STBI_NO_LINEAR
#define STBI_NO_HDR
#define STBI_MAX_DIMENSIONS (1 << 16)
#define STBI_MALLOC(n) ::ambiseg::io::stb_detail::capped_malloc(n)
#define STBI_REALLOC(p, n) ::ambiseg::io::stb_detail::capped_realloc(p, n)
#define STBI_FREE(p) std::free(p)
// stb's asserts check decoder invariants that a hostile file can break (fuzzing hit one in
// the JPEG Huffman decoder). Release builds compile them out anyway; compiling them out
// always keeps a Debug build of a program from being aborted by a file. Memory safety is
// what matters there, and that is what tests/fuzz checks under AddressSanitizer.
#define STBI_ASSERT(x) ((void)0)
#define STB_IMAGE_WRITE_STATIC
#define STB_IMAGE_WRITE_IMPLEMENTATION
#define STBI_WRITE_NO_STDIO
namespace ambiseg::io::stb_detail {
#include <stb/stb_image.h>
#include <stb/stb_image_write.h>
}  // namespace ambiseg::io::stb_detail
#undef STB_IMAGE_STATIC
#undef STB_IMAGE_IMPLEMENTATION
#undef STBI_ONLY_PNG
#undef STBI_ONLY_JPEG
#undef STBI_NO_BMP
#undef STBI_NO_PSD
#undef STBI_NO_TGA
#undef STBI_NO_GIF
#undef STBI_NO_HDR
#undef STBI_NO_PIC
#undef STBI_NO_PNM
#undef STBI_NO_STDIO
#undef STBI_NO_LINEAR
#undef STBI_MAX_DIMENSIONS
#undef STBI_MALLOC
#undef STBI_REALLOC
#undef STBI_REALLOC_SIZED
#undef STBI_FREE
#undef STBI_ASSERT
#undef STBIDEF
#undef STB_IMAGE_WRITE_STATIC
#undef STB_IMAGE_WRITE_IMPLEMENTATION
#undef STBI_WRITE_NO_STDIO
#undef STBIWDEF
#pragma pop_macro("INCLUDE_STB_IMAGE_WRITE_H")
#pragma pop_macro("STBI_INCLUDE_STB_IMAGE_H")

namespace ambiseg::io {

struct image_limits {
  std::int64_t max_pixels = std::int64_t{1} << 26;      // 8192 × 8192
  std::size_t max_file_bytes = std::size_t{1} << 28;    // 256 MiB
};

namespace image_detail {
inline bool has_signature(std::span<const std::uint8_t> b, std::initializer_list<int> sig) {
  if (b.size() < sig.size()) return false;
  std::size_t i = 0;
  for (int s : sig)
    if (b[i++] != static_cast<std::uint8_t>(s)) return false;
  return true;
}

// Debian's stb_image is v2.27, whose DHT parser trusts the 16 code-length counts: a table
// whose counts sum past 256 writes beyond stbi__huffman::size[257] and values[256] (found
// by tests/fuzz/fuzz_image; upstream 2.28 refuses it). Every Huffman table stb could parse
// is checked here first:
//   * before the first SOS, markers are walked exactly as stb walks them (bytes other
//     than 0xFF skipped one by one, 0xFF fill skipped, segments skipped by their length);
//   * from the first SOS on, where stb's resynchronisation after a scan depends on the
//     entropy decoder, every FF C4 in the file is treated as a DHT (entropy-coded data
//     cannot contain FF C4, so only a crafted or broken file can be refused wrongly).
// stb reads 0 past the end of the input, so missing bytes count as zero here too. Real
// files hold a few dozen tables (4 per scan at most); more than 4096 is refused, which keeps
// this check linear in the input even when it is made of FF C4 pairs.
inline bool jpeg_huffman_tables_fit(std::span<const std::uint8_t> b) {
  const std::size_t n = b.size();
  auto at = [&](std::size_t i) -> unsigned { return i < n ? b[i] : 0u; };
  int tables_left = 4096;
  auto dht_fits = [&](std::size_t pos) {  // pos: first byte after FF C4
    long remaining = static_cast<long>((at(pos) << 8) | at(pos + 1)) - 2;
    pos += 2;
    while (remaining > 0 && pos < n) {
      if (--tables_left < 0) return false;
      unsigned count = 0;
      for (std::size_t i = 1; i <= 16; ++i) count += at(pos + i);
      if (count > 256) return false;
      pos += 17 + count;
      remaining -= 17 + static_cast<long>(count);
    }
    return true;
  };
  std::size_t pos = 2;  // after SOI
  while (pos < n) {
    if (b[pos] != 0xff) {
      ++pos;
      continue;
    }
    while (pos < n && b[pos] == 0xff) ++pos;
    if (pos >= n) break;
    const unsigned marker = b[pos++];
    if (marker == 0xda) break;  // first SOS: switch to the conservative scan
    if (marker == 0xd9) return true;
    if (marker == 0x01 || (marker >= 0xd0 && marker <= 0xd7) || marker == 0x00) continue;
    if (marker == 0xc4 && !dht_fits(pos)) return false;
    pos += (at(pos) << 8) | at(pos + 1);
  }
  for (std::size_t i = pos; i + 1 < n; ++i)
    if (b[i] == 0xff && b[i + 1] == 0xc4 && !dht_fits(i + 2)) return false;
  return true;
}

// stb's reason for the last failure, or a placeholder when it left none.
inline std::string failure_reason() {
  const char* reason = stb_detail::stbi_failure_reason();
  return reason && *reason ? reason : "the decoder gives no reason";
}

// Where a PNG's chunk list (from the signature to IEND) runs past the end of the bytes, as
// text; empty when it is complete. stb reads missing bytes as zeros and then blames a
// chunk type of zeros, so its reason for a cut-short file is empty or misleading.
inline std::string png_truncation(std::span<const std::uint8_t> b) {
  std::size_t pos = 8;
  while (true) {
    const std::size_t left = b.size() - std::min(pos, b.size());
    if (left == 0)
      return ambiseg::detail::concat("the file ends at byte ", b.size(), " without an IEND chunk");
    if (left < 12)
      return ambiseg::detail::concat("the file ends at byte ", b.size(), ", inside the chunk header at byte ",
                                     pos);
    const std::uint64_t length = (std::uint64_t{b[pos]} << 24) | (std::uint64_t{b[pos + 1]} << 16) |
                                 (std::uint64_t{b[pos + 2]} << 8) | b[pos + 3];
    std::string type;
    for (std::size_t i = 4; i < 8; ++i)
      type += (b[pos + i] >= 32 && b[pos + i] < 127) ? static_cast<char>(b[pos + i]) : '?';
    if (length > left - 12)
      return ambiseg::detail::concat("the ", type, " chunk at byte ", pos, " needs ", length + 12,
                                     " bytes; the file ends at byte ", b.size());
    if (type == "IEND") return {};
    pos += 12 + static_cast<std::size_t>(length);
  }
}

// decode_image and read_image; `who` begins every message ("read_image: '<file>'").
inline tensor<std::uint8_t> decode(std::span<const std::uint8_t> bytes, const image_limits& limits,
                                   const std::string& who) {
  namespace sd = stb_detail;
  const bool png = has_signature(bytes, {0x89, 'P', 'N', 'G', 0x0d, 0x0a, 0x1a, 0x0a});
  const bool jpeg = has_signature(bytes, {0xff, 0xd8, 0xff});
  throw_if<format_error>(!png && !jpeg, who, ": not a PNG or JPEG (", bytes.size(),
                         " bytes)");
  throw_if<format_error>(bytes.size() > limits.max_file_bytes || bytes.size() > INT_MAX,
                         who, ": ", bytes.size(), " bytes exceed the limit of ",
                         limits.max_file_bytes);
  throw_if<format_error>(jpeg && !jpeg_huffman_tables_fit(bytes),
                         who, ": corrupt JPEG (a Huffman table of more than 256 codes, or "
                         "more than 4096 tables)");
  // A cut-short PNG is named as such; otherwise stb's reason.
  auto refuse = [&](const char* what, const char* part) {
    const std::string truncation = png ? png_truncation(bytes) : std::string();
    if (!truncation.empty()) throw format_error(who + ": truncated PNG (" + truncation + ")");
    throw format_error(ambiseg::detail::concat(who, ": ", what, png ? " PNG" : " JPEG", part, " (",
                                               failure_reason(), ")"));
  };
  const int length = static_cast<int>(bytes.size());
  sd::allocation_cap = (std::size_t{1} << 20) + 2 * bytes.size();
  int width = 0, height = 0, channels = 0;
  const int ok = sd::stbi_info_from_memory(bytes.data(), length, &width, &height, &channels);
  if (!ok || width <= 0 || height <= 0) refuse("corrupt", " header");
  const std::int64_t pixels = static_cast<std::int64_t>(width) * height;
  throw_if<format_error>(pixels > limits.max_pixels, who, ": ", width, "x", height,
                         " exceeds the limit of ", limits.max_pixels, " pixels");
  // Every buffer stb needs (16-bit samples, padded JPEG component planes and coefficients)
  // is below 16 bytes per padded pixel.
  sd::allocation_cap = static_cast<std::size_t>(16 * (width + 64) * (height + 64)) +
                       2 * bytes.size() + (std::size_t{1} << 20);
  int w = 0, h = 0, c = 0;
  unsigned char* data = sd::stbi_load_from_memory(bytes.data(), length, &w, &h, &c, 1);
  sd::allocation_cap = 0;
  if (!data) refuse("truncated or corrupt", "");
  if (w != width || h != height) {
    sd::stbi_image_free(data);
    throw format_error(who + ": header and image size disagree");
  }
  tensor<std::uint8_t> out(shape{h, w});
  std::memcpy(out.data(), data, static_cast<std::size_t>(pixels));
  sd::stbi_image_free(data);
  return out;
}
}  // namespace image_detail

// PNG (any bit depth, palette, alpha) or baseline/progressive JPEG → grey [H, W].
inline tensor<std::uint8_t> decode_image(std::span<const std::uint8_t> bytes,
                                         const image_limits& limits = {}) {
  return image_detail::decode(bytes, limits, "decode_image");
}

inline std::vector<std::uint8_t> read_file_bytes(const std::filesystem::path& path,
                                                 std::size_t max_bytes) {
  std::ifstream in(path, std::ios::binary);
  throw_if<io_error>(!in, "read_file_bytes: cannot open '", path.string(), "'");
  in.seekg(0, std::ios::end);
  const std::streamoff size = in.tellg();
  throw_if<io_error>(size < 0, "read_file_bytes: cannot size '", path.string(), "'");
  throw_if<format_error>(static_cast<std::uint64_t>(size) > max_bytes, "read_file_bytes: '",
                         path.string(), "' has ", size, " bytes, more than the limit ", max_bytes);
  in.seekg(0);
  std::vector<std::uint8_t> bytes(static_cast<std::size_t>(size));
  in.read(reinterpret_cast<char*>(bytes.data()), size);
  throw_if<io_error>(!in && size > 0, "read_file_bytes: short read of '", path.string(), "'");
  return bytes;
}

inline tensor<std::uint8_t> read_image(const std::filesystem::path& path,
                                       const image_limits& limits = {}) {
  const auto bytes = read_file_bytes(path, limits.max_file_bytes);
  return image_detail::decode(bytes, limits, "read_image: '" + path.string() + "'");
}

// [H, W] grey or [H, W, 3] interleaved RGB → PNG bytes (stb's deflate, level 8).
inline std::vector<std::uint8_t> encode_png(tensor_view<const std::uint8_t> pixels) {
  throw_if<shape_error>(!(pixels.rank() == 2 || (pixels.rank() == 3 && pixels.size(2) == 3)),
                        "encode_png: pixels must be [H, W] or [H, W, 3], got ",
                        pixels.shape().to_string());
  const std::int64_t h = pixels.size(0), w = pixels.size(1);
  const int channels = pixels.rank() == 2 ? 1 : 3;
  throw_if<shape_error>(h <= 0 || w <= 0 || h > (1 << 16) || w > (1 << 16),
                        "encode_png: unsupported size ", pixels.shape().to_string());
  std::vector<std::uint8_t> out;
  auto append = [](void* context, void* data, int size) {
    auto* v = static_cast<std::vector<std::uint8_t>*>(context);
    const auto* p = static_cast<const std::uint8_t*>(data);
    v->insert(v->end(), p, p + size);
  };
  const int ok = stb_detail::stbi_write_png_to_func(append, &out, static_cast<int>(w),
                                                    static_cast<int>(h), channels, pixels.data(),
                                                    static_cast<int>(w) * channels);
  throw_if<io_error>(!ok, "encode_png: encoding failed");
  return out;
}

inline void write_png(const std::filesystem::path& path, tensor_view<const std::uint8_t> pixels) {
  const auto bytes = encode_png(pixels);
  atomic_file_writer file(path);
  file.write(bytes.data(), bytes.size());
  file.commit();
}

}  // namespace ambiseg::io
