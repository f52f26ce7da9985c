// libFuzzer target for io/npy.hpp (parse_npy from memory, three element types).
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "ambiseg/io/npy.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view bytes(reinterpret_cast<const char*>(data), size);
  try {
    (void)ambiseg::io::parse_npy<float>(bytes, "fuzz.npy");
  } catch (const ambiseg::error&) {
  }
  try {
    (void)ambiseg::io::parse_npy<std::uint8_t>(bytes, "fuzz.npy");
  } catch (const ambiseg::error&) {
  }
  try {
    (void)ambiseg::io::parse_npy<std::int64_t>(bytes, "fuzz.npy");
  } catch (const ambiseg::error&) {
  }
  return 0;
}
