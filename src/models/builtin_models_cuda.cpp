// The built-in models registered on CUDA once for every CUDA program of this build
// (host code; models/builtin_models.hpp says why).
#include "ambiseg/models/builtin_models.hpp"

namespace ambiseg::models {
bool register_builtin_models_cuda() {
  static const bool registered = register_builtin_models<cuda>();
  return registered;
}
}  // namespace ambiseg::models
