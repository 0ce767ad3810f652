// What the fused CPU ops (rope.cpp, rms_norm.cpp, adamw.cpp) share.
#pragma once
#include <ATen/ATen.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <cstdint>

// Row kernels are built for AVX-512, AVX2 and baseline x86-64 and picked at load time (the same
// IEEE arithmetic in each, more lanes at once); elsewhere, for the build target.
#if defined(__x86_64__) && defined(__GNUC__)
#define HARNESS_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define HARNESS_CLONES
#endif

namespace harness {

// Grain as ATen's elementwise kernels use (elements per task), so threading matches theirs.
constexpr int64_t kGrain = 32768;

// f(r) for every row r of `rows` rows of `d` elements, rows split over ATen's threads with
// about kGrain elements per task.
template <typename F>
void for_rows(int64_t rows, int64_t d, const F& f) {
  at::parallel_for(0, rows, std::max<int64_t>(1, kGrain / std::max<int64_t>(d, 1)),
                   [&](int64_t begin, int64_t end) {
                     for (int64_t r = begin; r < end; ++r) f(r);
                   });
}

// An output laid out as an elementwise op whose first operand is `t` lays out its result
// (TensorIterator): contiguous when `t` is, else `t`'s strides.
inline at::Tensor like(const at::Tensor& t) {
  return t.is_contiguous() ? at::empty(t.sizes(), t.options()) : at::empty_like(t);
}

}  // namespace harness
