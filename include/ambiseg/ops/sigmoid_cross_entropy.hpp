// ambiseg/ops/sigmoid_cross_entropy.hpp — binary cross-entropy with logits, the
// Probabilistic U-Net's reconstruction loss: nn.BCEWithLogitsLoss(reduction='none') summed
// over each case, fused with its gradient.
//   logits [N, ...]  targets [N, ...] (values in [0, 1], not checked)
//   per_case [N] (double, whatever T: it feeds a double loss report, on the device too)
//     per_case[n] = Σ_k max(l, 0) − l·y + log1p(exp(−|l|)), each term and the sum in double
//   dlogits [N, ...] = scale·(σ(l) − y), assigned: the gradient of scale·Σ_n per_case[n].
//     Optional: an empty view skips it (evaluation).
// Each case is summed in a fixed order (CPU: one thread per case; CUDA: one block per case
// and a fixed tree): the same value on every run.
#pragma once

#include "ambiseg/ops/common.hpp"
#include "ambiseg/ops/cpu/sigmoid_cross_entropy.hpp"

namespace ambiseg::ops {

template <op_scalar T, class D>
void sigmoid_cross_entropy_forward_backward(in_view<T, D> logits, in_view<T, D> targets,
                                            double scale, out_view<double, D> per_case,
                                            tensor_view<T, D> dlogits) {
  detail::sigmoid_cross_entropy_check("sigmoid_cross_entropy_forward_backward", logits, targets,
                                      per_case, dlogits);
  if constexpr (std::same_as<D, cpu>) {
    const std::int64_t n = logits.size(0);  // an absent dlogits has a null data(): skipped
    cpu_kernels::sigmoid_cross_entropy_forward_backward(logits.data(), targets.data(), scale,
                                                        per_case.data(), dlogits.data(), n,
                                                        n ? logits.numel() / n : 0);
  } else if constexpr (std::same_as<D, cuda>) {
#if defined(AMBISEG_WITH_CUDA)
    cuda_kernels::sigmoid_cross_entropy_forward_backward<T>(logits, targets, scale, per_case,
                                                            dlogits);
#else
    cuda_backend_missing<D>();
#endif
  } else {
    unsupported_device<D>();
  }
}

}  // namespace ambiseg::ops
