// AdamW's update of fp32 buffers on the CPU in two passes around ATen's sqrt, bit for bit the
// in-place tensor ops of `AdamW::update` in optim.rs (a dozen passes over the buffers there).
// Each op's scalar is rounded to fp32 as ATen rounds a Python-number operand, every product, sum
// and quotient is rounded on its own (built with -ffp-contract=off), and the square root stays
// ATen's (MKL's, which is not the correctly rounded one: a loop here could not match it).
#include <ATen/ATen.h>
#include <ATen/Parallel.h>

#include "fused.h"

#include <algorithm>
#include <cstdint>

namespace {

using harness::kGrain;

struct Scalars {
  float b1, one_minus_b1, b2, one_minus_b2, decay, bc1, bc2, eps, lr;
  bool decays;
};

// m ← m·β₁ + g·(1−β₁); v ← v·β₂ + (g·g)·(1−β₂); p ← p·(1−lr·wd); s ← v / bc₂.
HARNESS_CLONES void moments(const float* __restrict g, float* __restrict p, float* __restrict m,
                            float* __restrict v, float* __restrict s, int64_t n,
                            const Scalars& k) {
  for (int64_t i = 0; i < n; ++i) {
    const float gi = g[i];
    const float mi = m[i] * k.b1 + gi * k.one_minus_b1;
    const float vi = v[i] * k.b2 + (gi * gi) * k.one_minus_b2;
    m[i] = mi;
    v[i] = vi;
    // A zero second moment gets a placeholder root (`apply` uses 0 there, sqrt(+0) = +0): MKL's
    // sqrt takes a slow path for zeros, about 15× slower per element.
    s[i] = vi == 0.0f ? 1.0f : vi / k.bc2;
  }
  if (k.decays) {
    for (int64_t i = 0; i < n; ++i) p[i] = p[i] * k.decay;
  }
}

// p ← p − ((m / bc₁) / (s + eps))·lr, with s = √(v / bc₂) (0 where v = 0: v / bc₂ is 0 exactly
// then, as bc₂ ≤ 1).
HARNESS_CLONES void apply(const float* __restrict m, const float* __restrict v,
                          const float* __restrict s, float* __restrict p, int64_t n,
                          const Scalars& k) {
  for (int64_t i = 0; i < n; ++i) {
    const float root = v[i] == 0.0f ? 0.0f : s[i];
    const float u = ((m[i] / k.bc1) / (root + k.eps)) * k.lr;
    p[i] = p[i] - u;
  }
}

bool plain(const at::Tensor& t, int64_t n) {
  return t.device().is_cpu() && t.scalar_type() == at::kFloat && t.is_contiguous() &&
         t.numel() == n;
}

}  // namespace

// One AdamW update of `p`, `m`, `v` (fp32, CPU, contiguous, as many elements as `g`) from `g`,
// with `scratch` (same size) for the intermediate. The scalars are the f64 values `update` in
// optim.rs passes to its tensor ops. Returns false (nothing touched) when the inputs are not of
// that form or libtorch threw.
extern "C" bool harness_adamw_update(const at::Tensor* p, const at::Tensor* m,
                                     const at::Tensor* v, const at::Tensor* g,
                                     const at::Tensor* scratch, double b1,
                                     double b2, double decay, double bc1, double bc2, double eps,
                                     double lr) {
  try {
    const int64_t n = g->numel();
    if (!(plain(*p, n) && plain(*m, n) && plain(*v, n) && plain(*g, n) && plain(*scratch, n))) {
      return false;
    }
    const Scalars k{static_cast<float>(b1),    static_cast<float>(1.0 - b1),
                    static_cast<float>(b2),    static_cast<float>(1.0 - b2),
                    static_cast<float>(decay), static_cast<float>(bc1),
                    static_cast<float>(bc2),   static_cast<float>(eps),
                    static_cast<float>(lr),    decay != 1.0};
    const float* gp = g->const_data_ptr<float>();
    float* pp = p->mutable_data_ptr<float>();
    float* mp = m->mutable_data_ptr<float>();
    float* vp = v->mutable_data_ptr<float>();
    float* sp = scratch->mutable_data_ptr<float>();
    at::parallel_for(0, n, kGrain, [&](int64_t begin, int64_t end) {
      moments(gp + begin, pp + begin, mp + begin, vp + begin, sp + begin, end - begin, k);
    });
    scratch->sqrt_();
    at::parallel_for(0, n, kGrain, [&](int64_t begin, int64_t end) {
      apply(mp + begin, vp + begin, sp + begin, pp + begin, end - begin, k);
    });
    return true;
  } catch (...) {
    return false;
  }
}
