/*
 * vexp.c — exp over whole arrays, written so that the compiler vectorises it: y[i] = exp(scale * x[i]).
 *
 * libm's exp is a call per element, which no compiler vectorises without -ffast-math (which we don't use).
 * Here exp(v) = 2^k exp(r), with k = round(v / ln 2) and r = v - k ln 2 (ln 2 split in two parts so that
 * r is exact), and exp(r) for |r| <= ln(2)/2 from its Taylor series, summed by Horner's rule; 2^k is made
 * by putting k into the exponent bits. The result is within 1 ulp of the correctly rounded exp (checked
 * against libm in the tests). The loop has no branches or calls, so GCC at -O3 turns it into SIMD code; the
 * target_clones attribute makes AVX-512, AVX2 and baseline versions and picks one at load time.
 *
 * Inputs beyond the overflow threshold give inf and those below the smallest subnormal give 0, in the same
 * branch-free loop. The narrow bands in between, where 2^k is not a normal number (708 < |v| < 745 for
 * double, 87 < |v| < 104 for float), and NaN, are recomputed afterwards with libm's exp one by one, so
 * overflow, subnormals and NaN come out exactly as libm's. Saturated inputs (a sigmoid of large
 * activations, say) thus stay on the fast path.
 *
 * The functions compute exp(max(scale * x + offset, floor)), which covers exp(x), sigmoid's exp(-x) and
 * logsoftmax's exp(x - max) in one pass each; y and x must not overlap. The floor lets sigmoid skip the
 * tiny and subnormal exponentials that cannot change 1 / (1 + e) (pass -HUGE_VAL for none).
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
VG_SIMD_CLONES static void exp_core_f64(double *restrict y, const double *restrict x, npy_intp n, double scale,
                                        double offset, double floor)
{
    const double inv_ln2 = 0x1.71547652b82fep0, ln2_hi = 0x1.62e42fefa3800p-1, ln2_lo = 0x1.ef35793c76730p-45;
    const double shift = 0x1.8p52; /* adding it rounds to an integer, left in the low mantissa bits */
    uint64_t shift_bits; /* bit patterns are handled as unsigned: NaN inputs make garbage, never overflow */
    memcpy(&shift_bits, &shift, sizeof shift_bits);
    for (npy_intp i = 0; i < n; i++) {
        const double v0 = scale * x[i] + offset < floor ? floor : scale * x[i] + offset;
        double v = v0;
        v = v > 708.0 ? 708.0 : v;
        v = v < -708.0 ? -708.0 : v;
        double kd = v * inv_ln2 + shift, k = kd - shift;
        double r = (v - k * ln2_hi) - k * ln2_lo;
        double p = 1.0 / 6227020800.0; /* 1/13! ... 1/2!: the series of (exp(r) - 1 - r) / r^2 */
        p = p * r + 1.0 / 479001600.0;
        p = p * r + 1.0 / 39916800.0;
        p = p * r + 1.0 / 3628800.0;
        p = p * r + 1.0 / 362880.0;
        p = p * r + 1.0 / 40320.0;
        p = p * r + 1.0 / 5040.0;
        p = p * r + 1.0 / 720.0;
        p = p * r + 1.0 / 120.0;
        p = p * r + 1.0 / 24.0;
        p = p * r + 1.0 / 6.0;
        p = p * r + 0.5;
        p = p * r * r + r; /* exp(r) - 1 */
        uint64_t k_bits;
        memcpy(&k_bits, &kd, sizeof k_bits);
        uint64_t scale_bits = (k_bits - shift_bits + 1023) << 52; /* 2^k */
        double two_k;
        memcpy(&two_k, &scale_bits, sizeof two_k);
        const double e = two_k + two_k * p;
        y[i] = v0 > 709.8 ? HUGE_VAL : (v0 < -745.2 ? 0.0 : e);
    }
}

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

/* FAST: the fast path's limit; HIGH, LOW: the blends' thresholds (see exp_core) */
#define DEFINE_EXP(T, S, FAST, HIGH, LOW)                                                               \
    void vg_exp_##S(T *restrict y, const T *restrict x, npy_intp n, T scale, T offset, T floor)        \
    {                                                                                                   \
        exp_core_##S(y, x, n, scale, offset, floor);                                                    \
        for (npy_intp i = 0; i < n; i++) {                                                              \
            const T v = scale * x[i] + offset < floor ? floor : scale * x[i] + offset;                  \
            if (v != v || (v > FAST && v <= HIGH) || (v < -FAST && v >= LOW)) /* NaN or a band */       \
                y[i] = exp(v);                                                                          \
        }                                                                                               \
    }
DEFINE_EXP(double, f64, 708.0, 709.8, -745.2)
DEFINE_EXP(float, f32, 87.0f, 88.8f, -104.0f)
