// Rotate-half RoPE on the CPU in fp32 as one op with its own backward: the same arithmetic as the
// four tensor ops it replaces (`x*cos + roll(x, D/2)*sin_signed`, see `apply_rope` in qwen3.rs),
// element for element, so the values are bit for bit theirs (no FMA contraction: built with
// -ffp-contract=off). What it saves is the per-op overhead: four kernels and their autograd nodes
// forward, five backward, per q and k of every layer.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/csrc/autograd/custom_function.h>

#include <algorithm>
#include <cstdint>

namespace {

using torch::autograd::AutogradContext;
using torch::autograd::tensor_list;

// Grain as ATen's elementwise kernels use (elements per task), so threading matches theirs.
constexpr int64_t kGrain = 32768;

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
  const int64_t rows = B * H * T;
  at::parallel_for(0, rows, std::max<int64_t>(1, kGrain / std::max<int64_t>(D, 1)),
                   [&](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; ++r) {
      const int64_t t = r % T, h = (r / T) % H, b = r / (T * H);
      const float* xr = xp + b * xs0 + h * xs1 + t * xs2;
      const float* cr = cp + b * cs0 + t * cs2;
      const float* sr = sp + b * ss0 + t * ss2;
      float* orow = op + b * os0 + h * os1 + t * os2;
      for (int64_t i = 0; i < D; ++i) {
        const int64_t j = i < half ? i + half : i - half;
        // Forward: x[i]·cos[i] + x[j]·sin[i]. Backward (g = x here): g[i]·cos[i] + g[j]·sin[j],
        // the product `roll(g·sin)` holds at i.
        const float a = xr[i] * cr[i];
        const float b2 = Backward ? xr[j] * sr[j] : xr[j] * sr[i];
        orow[i] = a + b2;
      }
    }
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

// The forward's output laid out as `x·cos + …` lays it out (TensorIterator follows its first
// operand): contiguous when `x` is, else `x`'s strides.
at::Tensor like(const at::Tensor& t) {
  return t.is_contiguous() ? at::empty(t.sizes(), t.options()) : at::empty_like(t);
}

struct Rope : public torch::autograd::Function<Rope> {
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& x, const at::Tensor& cos,
                            const at::Tensor& sin) {
    ctx->save_for_backward({cos, sin});
    at::Tensor out = like(x);
    rope_rows<false>(x, cos, sin, out);
    return out;
  }

  static tensor_list backward(AutogradContext* ctx, tensor_list grads) {
    const auto saved = ctx->get_saved_variables();
    const at::Tensor& g = grads[0];
    // Autograd sums the two paths' gradients into the first to arrive, `roll(g·sin)`, which
    // roll made contiguous: so is the sum.
    at::Tensor gx = at::empty(g.sizes(), g.options());
    if (fusable(g, saved[0], saved[1])) {
      rope_rows<true>(g, saved[0], saved[1], gx);
    } else {  // a strided gradient: the ops autograd would have run
      const int64_t half = g.size(3) / 2;
      gx = (g * saved[1]).roll({half}, {3}) + g * saved[0];
    }
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
