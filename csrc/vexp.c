/*
 * vexp.c — float32 exp over whole arrays, written so that the compiler vectorises it: y[i] = exp(scale * x[i]).
 * (float64 uses NumPy's own exp loop instead, to give np.exp's results bit for bit: see npyloops.c. float32
 * keeps this faster path, within 1 ulp, documented as possibly differing from NumPy in the last bit.)
 *
 * libm's exp is a call per element, which no compiler vectorises without -ffast-math (which we don't use).
 * Here exp(v) = 2^k exp(r), with k = round(v / ln 2) and r = v - k ln 2 (ln 2 split in two parts so that
 * r is exact), and exp(r) for |r| <= ln(2)/2 from its Taylor series, summed by Horner's rule; 2^k is made
 * by putting k into the exponent bits. The result is within 1 ulp of the correctly rounded exp (checked
 * against libm in the tests). The loop has no branches or calls, so GCC at -O3 turns it into SIMD code; the
 * target_clones attribute makes AVX-512, AVX2 and baseline versions and picks one at load time.
 *
 * Inputs beyond the overflow threshold give inf and those below the smallest subnormal give 0, in the same
 * branch-free loop. The narrow bands in between, where 2^k is not a normal number (87 < |v| < 104), and NaN,
 * are recomputed afterwards with libm's exp one by one, so overflow, subnormals and NaN come out exactly as
 * libm's. Saturated inputs (a sigmoid of large activations, say) thus stay on the fast path.
 *
 * The function computes exp(max(scale * x + offset, floor)), which covers exp(x) and sigmoid's exp(-x) in
 * one pass each; y and x must not overlap. The floor lets sigmoid skip the
 * tiny and subnormal exponentials that cannot change 1 / (1 + e) (pass -HUGE_VALF for none).
 */
#include <stdint.h>
#include <string.h>

#include "vgrad.h"

#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && defined(__linux__)
#define VG_SIMD_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define VG_SIMD_CLONES
#endif

/* The branch-free part, for |scale * x| <= LIMIT (others are clamped, then fixed by the caller). */
VG_SIMD_CLONES static void exp_core_f32(float *restrict y, const float *restrict x, npy_intp n, float scale,
                                        float offset, float floor)
{
    const float inv_ln2 = 0x1.715476p0f, ln2_hi = 0x1.62e4p-1f, ln2_lo = 0x1.7f7d1cp-20f;
    const float shift = 0x1.8p23f;
    uint32_t shift_bits;
    memcpy(&shift_bits, &shift, sizeof shift_bits);
    for (npy_intp i = 0; i < n; i++) {
        const float v0 = scale * x[i] + offset < floor ? floor : scale * x[i] + offset;
        float v = v0;
        v = v > 87.0f ? 87.0f : v;
        v = v < -87.0f ? -87.0f : v;
        float kd = v * inv_ln2 + shift, k = kd - shift;
        float r = (v - k * ln2_hi) - k * ln2_lo;
        float p = 1.0f / 40320.0f; /* 1/8! ... 1/2! */
        p = p * r + 1.0f / 5040.0f;
        p = p * r + 1.0f / 720.0f;
        p = p * r + 1.0f / 120.0f;
        p = p * r + 1.0f / 24.0f;
        p = p * r + 1.0f / 6.0f;
        p = p * r + 0.5f;
        p = p * r * r + r;
        uint32_t k_bits;
        memcpy(&k_bits, &kd, sizeof k_bits);
        uint32_t scale_bits = (k_bits - shift_bits + 127) << 23;
        float two_k;
        memcpy(&two_k, &scale_bits, sizeof two_k);
        const float e = two_k + two_k * p;
        y[i] = v0 > 88.8f ? HUGE_VALF : (v0 < -104.0f ? 0.0f : e);
    }
}

/* The bands and NaN: 87 < |v| beyond the fast path's limit, up to the thresholds of exp_core's blend. */
void vg_exp_f32(float *restrict y, const float *restrict x, npy_intp n, float scale, float offset, float floor)
{
    exp_core_f32(y, x, n, scale, offset, floor);
    for (npy_intp i = 0; i < n; i++) {
        const float v = scale * x[i] + offset < floor ? floor : scale * x[i] + offset;
        if (v != v || (v > 87.0f && v <= 88.8f) || (v < -87.0f && v >= -104.0f)) /* NaN or a band */
            y[i] = expf(v);
    }
}
