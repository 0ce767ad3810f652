// RMSNorm on the CPU in fp32 as one autograd node, bit for bit the tensor ops of `rms_norm` in
// ops.rs (`w * (x * rsqrt(mean(x²) + eps))`) forward and backward. The reductions and the small
// per-row tensors still go through the same ATen ops; the full-size elementwise work that the
// tensor ops spread over 3 kernels forward and 9 backward runs in 1 and 2 passes here. Built with
// -ffp-contract=off, so every product and sum is rounded as ATen's kernels round it.
//
// Autograd sums the gradient of `x` from the two uses (`x²` and `x·r`) into `x`'s buffer one after
// the other, after whatever else reached it first (the residual stream's other branch). One
// gradient for `x` would change that association, so the node takes `x` twice and returns the two
// parts separately, in the order they used to arrive.
#include <ATen/ATen.h>
#include <ATen/ExpandUtils.h>
#include <torch/csrc/autograd/custom_function.h>

#include "fused.h"

#include <algorithm>
#include <cstdint>
#include <vector>

namespace {

using harness::for_rows;
using harness::like;

using torch::autograd::AutogradContext;
using torch::autograd::tensor_list;

// Element offset of row `r` (all dims but the last, row-major) in a tensor with these strides.
struct Rows {
  std::vector<int64_t> sizes, strides;
  explicit Rows(const at::Tensor& t)
      : sizes(t.sizes().begin(), t.sizes().end() - 1),
        strides(t.strides().begin(), t.strides().end() - 1) {}
  int64_t offset(int64_t r) const {
    int64_t off = 0;
    for (int64_t d = static_cast<int64_t>(sizes.size()) - 1; d >= 0; --d) {
      off += (r % sizes[d]) * strides[d];
      r /= sizes[d];
    }
    return off;
  }
};

bool plain(const at::Tensor& t) {
  return t.device().is_cpu() && t.scalar_type() == at::kFloat && t.dim() >= 1;
}

bool fusable(const at::Tensor& x, const at::Tensor& w) {
  return plain(x) && plain(w) && x.dim() >= 2 && x.is_contiguous() && w.dim() == 1 &&
         w.is_contiguous() && w.size(0) == x.size(-1);
}

HARNESS_CLONES void forward_row(const float* __restrict x, const float* __restrict w, float s,
                                float* __restrict y, float* __restrict out, int64_t D) {
  for (int64_t d = 0; d < D; ++d) {
    const float v = x[d] * s;
    y[d] = v;
    out[d] = w[d] * v;
  }
}

// go·y into `gy` (w's gradient, before the sum), go·w·x into `t` (r's) and go·w·r into `g1` (x's
// first part); a null `gy` or `t` skips that gradient (`t` and `g1` go together). The tests are
// loop-invariant, so -O3 unswitches them out of the loop.
HARNESS_CLONES void backward_row(const float* __restrict g, const float* __restrict x,
                                 const float* __restrict y, const float* __restrict w, float s,
                                 float* __restrict gy, float* __restrict t,
                                 float* __restrict g1, int64_t D) {
  for (int64_t d = 0; d < D; ++d) {
    if (gy) gy[d] = g[d] * y[d];
    if (t) {
      const float gyv = g[d] * w[d];
      t[d] = gyv * x[d];
      g1[d] = gyv * s;
    }
  }
}

// x²'s backward, `g·(2·x)`, with the row's g.
HARNESS_CLONES void square_backward_row(const float* __restrict x, float s, float* __restrict out,
                                        int64_t D) {
  for (int64_t d = 0; d < D; ++d) out[d] = s * (2.0f * x[d]);
}

struct RmsNorm : public torch::autograd::Function<RmsNorm> {
  // `xa` and `xb` are the same tensor (see the file's comment).
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& xa, const at::Tensor& xb,
                            const at::Tensor& w, double eps) {
    const at::Tensor& x = xa;
    const at::Tensor var = at::mean(at::square(x), {-1}, true, at::kFloat);
    const at::Tensor r = (var + eps).rsqrt();
    at::Tensor y = at::empty(x.sizes(), x.options());
    at::Tensor out = at::empty(x.sizes(), x.options());
    const int64_t D = x.size(-1), rows = x.numel() / std::max<int64_t>(D, 1);
    const float* xp = x.const_data_ptr<float>();
    const float* rp = r.const_data_ptr<float>();
    const float* wp = w.const_data_ptr<float>();
    float* yp = y.mutable_data_ptr<float>();
    float* op = out.mutable_data_ptr<float>();
    for_rows(rows, D, [&](int64_t row) {
      const int64_t i = row * D;
      forward_row(xp + i, wp, rp[row], yp + i, op + i, D);
    });
    // What the tensor ops' autograd nodes kept: x (x², x·r), r (rsqrt, x·r), y and w (w·y).
    ctx->save_for_backward({x, y, r, w});
    return out;
  }

  static tensor_list backward(AutogradContext* ctx, tensor_list grads) {
    const auto saved = ctx->get_saved_variables();
    const at::Tensor &x = saved[0], &y = saved[1], &r = saved[2], &w = saved[3];
    const at::Tensor& go = grads[0];
    const bool need_x = ctx->needs_input_grad(0) || ctx->needs_input_grad(1);
    const bool need_w = ctx->needs_input_grad(2);
    if (!(plain(go) && go.is_non_overlapping_and_dense() && go.stride(-1) == 1)) {
      return ops_backward(go, x, y, r, w, need_x, need_w);
    }
    const int64_t D = x.size(-1), rows = x.numel() / std::max<int64_t>(D, 1);
    // go·y (for w's gradient), go·w·x (for r's) and go·w·r (x's first part), laid out as the
    // tensor ops lay out products whose first operand is go.
    at::Tensor gy_full = need_w ? like(go) : at::Tensor();
    at::Tensor t = need_x ? like(go) : at::Tensor();
    at::Tensor gx1 = need_x ? like(go) : at::Tensor();
    const Rows go_rows(go), out_rows(need_x ? t : gy_full);
    const float* gp = go.const_data_ptr<float>();
    const float* xp = x.const_data_ptr<float>();
    const float* yp = y.const_data_ptr<float>();
    const float* rp = r.const_data_ptr<float>();
    const float* wp = w.const_data_ptr<float>();
    float* gyp = need_w ? gy_full.mutable_data_ptr<float>() : nullptr;
    float* tp = need_x ? t.mutable_data_ptr<float>() : nullptr;
    float* g1p = need_x ? gx1.mutable_data_ptr<float>() : nullptr;
    for_rows(rows, D, [&](int64_t row) {
      const float* g = gp + go_rows.offset(row);
      const int64_t o = out_rows.offset(row), xo = row * D;
      backward_row(g, xp + xo, yp + xo, wp, rp[row], need_w ? gyp + o : nullptr,
                   need_x ? tp + o : nullptr, need_x ? g1p + o : nullptr, D);
    });
    const at::Tensor gw = need_w ? at::sum_to(gy_full, w.sizes()) : at::Tensor();
    if (!need_x) return {at::Tensor(), at::Tensor(), gw, at::Tensor()};
    // rsqrt's, add's and mean's backward on the per-row tensors, then x²'s: g·(2·x).
    const at::Tensor gr = at::sum_to(t, r.sizes());
    const at::Tensor gs = (-0.5 * gr * r.pow(3)) / D;
    at::Tensor gx2 = at::empty(x.sizes(), x.options());
    const float* gsp = gs.const_data_ptr<float>();
    float* g2p = gx2.mutable_data_ptr<float>();
    for_rows(rows, D, [&](int64_t row) {
      const int64_t i = row * D;
      square_backward_row(xp + i, gsp[row], g2p + i, D);
    });
    return {gx1, gx2, gw, at::Tensor()};
  }

  // The tensor ops' backward formulas, for a gradient of another layout.
  static tensor_list ops_backward(const at::Tensor& go, const at::Tensor& x, const at::Tensor& y,
                                  const at::Tensor& r, const at::Tensor& w, bool need_x,
                                  bool need_w) {
    const at::Tensor gw = need_w ? at::sum_to(go * y, w.sizes()) : at::Tensor();
    if (!need_x) return {at::Tensor(), at::Tensor(), gw, at::Tensor()};
    const at::Tensor gy = go * w;
    const at::Tensor gx1 = gy * r;
    const at::Tensor gr = at::sum_to(gy * x, r.sizes());
    const at::Tensor gs = (-0.5 * gr * r.pow(3)).expand(x.sizes()) / x.size(-1);
    const at::Tensor gx2 = gs * (2.0 * x.pow(1.0));
    return {gx1, gx2, gw, at::Tensor()};
  }
};

}  // namespace

// RMSNorm of `x` (fp32, CPU, contiguous, `[..., D]`) with weight `w` `[D]`. Returns a new tensor,
// or null when the inputs are not of that form (or libtorch threw): the caller runs the tensor ops.
extern "C" at::Tensor* harness_rms_norm(const at::Tensor* x, const at::Tensor* w, double eps) {
  try {
    if (!fusable(*x, *w)) return nullptr;
    return new at::Tensor(RmsNorm::apply(*x, *x, *w, eps));
  } catch (...) {
    return nullptr;
  }
}
