// Row kernels are built for AVX-512, AVX2 and baseline x86-64 and picked at load time (the same
// IEEE arithmetic in each, more lanes at once); elsewhere, for the build target.
#pragma once
#if defined(__x86_64__) && defined(__GNUC__)
#define HARNESS_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define HARNESS_CLONES
#endif
