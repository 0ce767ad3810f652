// Rotate-half RoPE on the CPU in fp32 as one op with its own backward: the same arithmetic as the
// four tensor ops it replaces (`x*cos + roll(x, D/2)*sin_signed`, see `apply_rope_ops` in model/rope.rs),
// element for element, so the values are bit for bit theirs (no FMA contraction: built with
// -ffp-contract=off). What it saves is the per-op overhead: four kernels and their autograd nodes
// forward, five backward, per q and k of every layer.
#include <ATen/ATen.h>
#include <torch/csrc/autograd/custom_function.h>

#include "fused.h"

#include <cstdint>

namespace {

using harness::for_rows;
using harness::like;

using torch::autograd::AutogradContext;
using torch::autograd::tensor_list;

// One row of D: out[i] = x[i]·c[i] + x[j]·s'[i] with j = (i + D/2) mod D. Forward s'[i] = s[i];
// backward (x = g) s'[i] = s[j], so the second product is `roll(g·sin)` at i. `s_lo` and `s_hi`
// are where s' of the first and the second half is read (indexed by i).
HARNESS_CLONES void rope_row(const float* __restrict x, const float* __restrict c,
                             const float* s_lo, const float* s_hi, float* __restrict out,
                             int64_t half) {
  for (int64_t i = 0; i < half; ++i) {
    const float a = x[i] * c[i];
    const float b = x[i + half] * s_lo[i];
    out[i] = a + b;
  }
  for (int64_t i = half; i < 2 * half; ++i) {
    const float a = x[i] * c[i];
    const float b = x[i - half] * s_hi[i];
    out[i] = a + b;
  }
}

// out[b,h,t,i] = x[i]·c[i] + x[(i+D/2) mod D]·s[i], with `c`/`s` [B,1,T,D] broadcast over heads.
// The backward is the same map with the tables read at the rotated index (see `Rope::backward`).
template <bool Backward>
void rope_rows(const at::Tensor& x, const at::Tensor& cos, const at::Tensor& sin, at::Tensor& out) {
  const int64_t B = x.size(0), H = x.size(1), T = x.size(2), D = x.size(3), half = D / 2;
  const float* xp = x.const_data_ptr<float>();
  const float* cp = cos.const_data_ptr<float>();
  const float* sp = sin.const_data_ptr<float>();
  float* op = out.mutable_data_ptr<float>();
  const int64_t xs0 = x.stride(0), xs1 = x.stride(1), xs2 = x.stride(2);
  const int64_t os0 = out.stride(0), os1 = out.stride(1), os2 = out.stride(2);
  const int64_t cs0 = cos.stride(0), cs2 = cos.stride(2);
  const int64_t ss0 = sin.stride(0), ss2 = sin.stride(2);
  for_rows(B * H * T, D, [&](int64_t r) {
    const int64_t t = r % T, h = (r / T) % H, b = r / (T * H);
    const float* xr = xp + b * xs0 + h * xs1 + t * xs2;
    const float* cr = cp + b * cs0 + t * cs2;
    const float* sr = sp + b * ss0 + t * ss2;
    const float* s_lo = Backward ? sr + half : sr;
    const float* s_hi = Backward ? sr - half : sr;
    rope_row(xr, cr, s_lo, s_hi, op + b * os0 + h * os1 + t * os2, half);
  });
}

bool fusable(const at::Tensor& x, const at::Tensor& cos, const at::Tensor& sin) {
  auto ok = [&](const at::Tensor& t) {
    return t.device().is_cpu() && t.scalar_type() == at::kFloat && t.dim() == 4 && t.stride(3) == 1;
  };
  return ok(x) && ok(cos) && ok(sin) && x.size(3) % 2 == 0 && cos.size(1) == 1 &&
         sin.size(1) == 1 && cos.sizes() == sin.sizes() && cos.size(0) == x.size(0) &&
         cos.size(2) == x.size(2) && cos.size(3) == x.size(3);
}

struct Rope : public torch::autograd::Function<Rope> {
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& x, const at::Tensor& cos,
                            const at::Tensor& sin) {
    ctx->save_for_backward({cos, sin});
    at::Tensor out = like(x);  // as `x·cos + …` lays it out
    rope_rows<false>(x, cos, sin, out);
    return out;
  }

  static tensor_list backward(AutogradContext* ctx, tensor_list grads) {
    const auto saved = ctx->get_saved_variables();
    const at::Tensor& g = grads[0];
    // Autograd sums the two paths' gradients into the first to arrive, `roll(g·sin)`, which
    // roll made contiguous: so is the sum.
    if (!fusable(g, saved[0], saved[1])) {  // a strided gradient: the ops autograd would run
      const int64_t half = g.size(3) / 2;
      return {(g * saved[1]).roll({half}, {3}) + g * saved[0], at::Tensor(), at::Tensor()};
    }
    at::Tensor gx = at::empty(g.sizes(), g.options());
    rope_rows<true>(g, saved[0], saved[1], gx);
    return {gx, at::Tensor(), at::Tensor()};
  }
};

}  // namespace

// `x` [B,H,T,D] and the tables [B,1,T,D] (fp32, CPU, unit stride along D). Returns a new tensor,
// or null when the inputs are not of that form (or libtorch threw): the caller then runs the
// tensor ops.
extern "C" at::Tensor* harness_rope(const at::Tensor* x, const at::Tensor* cos,
                                    const at::Tensor* sin) {
  try {
    if (!fusable(*x, *cos, *sin)) return nullptr;
    return new at::Tensor(Rope::apply(*x, *cos, *sin));
  } catch (...) {
    return nullptr;
  }
}
