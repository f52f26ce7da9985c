// libFuzzer target for io/safetensors.hpp. The reader opens paths, so each input is put in
// an anonymous memory file (memfd) and opened through /proc/self/fd: no disk traffic.
#include <cstddef>
#include <cstdint>
#include <string>

#include <sys/mman.h>
#include <unistd.h>

#include "ambiseg/io/safetensors.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const int fd = ::memfd_create("ambiseg_fuzz", MFD_CLOEXEC);
  if (fd < 0) return 0;
  std::size_t written = 0;
  while (written < size) {
    const ssize_t n = ::write(fd, data + written, size - written);
    if (n <= 0) break;
    written += static_cast<std::size_t>(n);
  }
  if (written == size) {
    try {
      const auto file =
          ambiseg::io::safetensors_file::open("/proc/self/fd/" + std::to_string(fd));
      for (const auto& name : file.names()) {
        try {
          if (file.info(name).numel <= (1 << 22)) (void)file.read<float>(name);
        } catch (const ambiseg::error&) {
        }
      }
    } catch (const ambiseg::error&) {
    }
  }
  ::close(fd);
  return 0;
}
