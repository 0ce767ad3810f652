// LibTorch's InferenceMode guard for Rust (tch 0.24 exposes only the no-grad guard). Inside it,
// ops skip the autograd and view-tracking dispatch layers: the same kernels, less overhead per op.
#include <c10/core/InferenceMode.h>

extern "C" void* harness_inference_mode_enter() { return new c10::InferenceMode(true); }

extern "C" void harness_inference_mode_exit(void* guard) {
  delete static_cast<c10::InferenceMode*>(guard);
}
