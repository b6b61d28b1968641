/*
 * conv_kernels.h — the convolution kernels for one element type: included by conv.c with T float, SFX f32
 * and with T double, SFX f64 (VG_T(name) is name_f32 or name_f64). Pure C on contiguous buffers, no
 * PyObject, cannot fail. conv.c's top comment gives the formulas; the geometry (struct geometry) and the
 * "wide" layout (struct wide) are defined there.
 *
 * Two families:
 *   - im2col / col2im and the layout passes around a BLAS product (the path for many channels and strides);
 *   - the direct kernels for stride 1: wide_conv (the forward pass, and the input gradient as a forward
 *     pass of the padded gradient with flipped filters) and wide_corr (the weight gradient). They work on
 *     "wide" rows: an image padded to Hp x Wp is one vector of Hp Wp values, and output (p, q) is computed
 *     at position m = p Wp + q, so that every tap (i, j) of the filter reads the input at m + i Wp + j: one
 *     contiguous run for all outputs, which vectorises over m. Positions with q >= OW are computed too and
 *     thrown away (the price: Wp / OW more work), so the loops have no edges.
 *   - the plain loops (conv_exact_*) that the direct kernels fall back to where that throwing away could
 *     change a kept result: an infinity or NaN multiplied by zero (see conv.c).
 */

/* ---- im2col / col2im: one image at a time ---------------------------------------------------------------
   cols (C kh kw, P) with row stride ld: row (c, i, j), column (p, q) = x[c, p sh + i - ph, q sw + j - pw],
   0 in the padding. */

static void VG_T(im2col_image)(T *restrict cols, npy_intp ld, const T *restrict x, const geometry *g)
{
    for (npy_intp c = 0; c < g->c; c++)
        for (npy_intp i = 0; i < g->kh; i++)
            for (npy_intp j = 0; j < g->kw; j++) {
                T *row = cols + ((c * g->kh + i) * g->kw + j) * ld;
                npy_intp lo, hi;
                valid_columns(g, j, &lo, &hi);
                const npy_intp off = j - g->pw;
                for (npy_intp p = 0; p < g->oh; p++) {
                    T *dst = row + p * g->ow;
                    const npy_intp ih = p * g->sh + i - g->ph;
                    if (ih < 0 || ih >= g->h) {
                        memset(dst, 0, sizeof(T) * (size_t)g->ow);
                        continue;
                    }
                    const T *src = x + (c * g->h + ih) * g->w;
                    for (npy_intp q = 0; q < lo; q++)
                        dst[q] = 0;
                    if (g->sw == 1)
                        memcpy(dst + lo, src + lo + off, sizeof(T) * (size_t)(hi - lo));
                    else
                        for (npy_intp q = lo; q < hi; q++)
                            dst[q] = src[q * g->sw + off];
                    for (npy_intp q = hi; q < g->ow; q++)
                        dst[q] = 0;
                }
            }
}

/* gx (C, H, W) of one image, zero on entry: += every column of gcols (C kh kw, P; row stride ld) onto the
   window it came from. */
static void VG_T(col2im_image)(T *restrict gx, const T *restrict gcols, npy_intp ld, const geometry *g)
{
    for (npy_intp c = 0; c < g->c; c++)
        for (npy_intp i = 0; i < g->kh; i++)
            for (npy_intp j = 0; j < g->kw; j++) {
                const T *row = gcols + ((c * g->kh + i) * g->kw + j) * ld;
                npy_intp lo, hi;
                valid_columns(g, j, &lo, &hi);
                const npy_intp off = j - g->pw;
                for (npy_intp p = 0; p < g->oh; p++) {
                    const npy_intp ih = p * g->sh + i - g->ph;
                    if (ih < 0 || ih >= g->h)
                        continue;
                    const T *src = row + p * g->ow;
                    T *dst = gx + (c * g->h + ih) * g->w;
                    for (npy_intp q = lo; q < hi; q++)
                        dst[q * g->sw + off] += src[q];
                }
            }
}

/* y (O, P) of one image = prod[o, 0:P] (row stride ld) + (b ? b[o] : 0), and its ReLU when `relu`. */
static void VG_T(unfold_image)(T *restrict y, const T *restrict prod, npy_intp ld, const T *b, npy_intp O, npy_intp P,
                               int relu)
{
    for (npy_intp o = 0; o < O; o++) {
        const T *src = prod + o * ld;
        T *dst = y + o * P;
        const T bias = b ? b[o] : 0;
        if (relu)
            for (npy_intp k = 0; k < P; k++)
                dst[k] = VG_T(vg_relu)(src[k] + bias);
        else
            for (npy_intp k = 0; k < P; k++)
                dst[k] = src[k] + bias;
    }
}

/* The gradient through a ReLU: gm (n) = go where y > 0, else 0 (y: the ReLU's output). */
static void VG_T(relu_grad_of)(T *restrict gm, const T *restrict go, const T *restrict y, npy_intp n)
{
    for (npy_intp i = 0; i < n; i++)
        gm[i] = VG_T(vg_relu_grad)(go[i], y[i]);
}

/* go2[o, 0:P] (row stride ld) = go[o, :] of one image (O, P), or with y (not NULL) the gradient through the
   ReLU whose output y is. */
static void VG_T(fold_image)(T *restrict go2, npy_intp ld, const T *restrict go, const T *restrict y, npy_intp O,
                             npy_intp P)
{
    for (npy_intp o = 0; o < O; o++) {
        if (y)
            VG_T(relu_grad_of)(go2 + o * ld, go + o * P, y + o * P, P);
        else
            memcpy(go2 + o * ld, go + o * P, sizeof(T) * (size_t)P);
    }
}

/* ---- the direct kernels' layout passes ------------------------------------------------------------------ */

/* dst (R, S) = src (rows, cols) moved down by dr and right by ds (either may be negative: what falls outside
   is dropped). dst's other elements are not written: they are the padding, zero since conv.c zeroed the
   scratch (every image writes the same positions, so the padding stays zero, and a memset per row of the
   course's 10-wide images cost more than the copying). */
static void VG_T(place_plane)(T *restrict dst, npy_intp R, npy_intp S, const T *restrict src, npy_intp rows,
                              npy_intp cols, npy_intp dr, npy_intp ds)
{
    const npy_intp r0 = dr < 0 ? -dr : 0, r1 = rows < R - dr ? rows : R - dr; /* source rows that land */
    const npy_intp s0 = ds < 0 ? -ds : 0, s1 = cols < S - ds ? cols : S - ds;
    for (npy_intp r = r0; r < r1 && s0 < s1; r++)
        memcpy(dst + (r + dr) * S + s0 + ds, src + r * cols + s0, sizeof(T) * (size_t)(s1 - s0));
}

/* Whether a[0..n-1] are all finite (x - x is 0 exactly for those). */
static int VG_T(all_finite)(const T *restrict a, npy_intp n)
{
    int bad = 0;
    for (npy_intp i = 0; i < n; i++)
        bad |= !(a[i] - a[i] == 0);
    return !bad;
}

/* y (O, OH, OW) of one image from the wide output (O, mr): row p of plane o is wide[o, p wp : p wp + OW]; its
   ReLU when `relu`. */
static void VG_T(compact_wide)(T *restrict y, const T *restrict wide_out, npy_intp mr, npy_intp wp, npy_intp O,
                               npy_intp OH, npy_intp OW, int relu)
{
    for (npy_intp o = 0; o < O; o++)
        for (npy_intp p = 0; p < OH; p++) {
            T *dst = y + (o * OH + p) * OW;
            const T *src = wide_out + o * mr + p * wp;
            if (relu)
                for (npy_intp q = 0; q < OW; q++)
                    dst[q] = VG_T(vg_relu)(src[q]);
            else
                memcpy(dst, src, sizeof(T) * (size_t)OW);
        }
}

/* ---- wide_conv: out[o, m] = bias[o] + sum_{c, t} w[o, c, t] in[c, m + off[t]] ----------------------------
   in: C planes `plane` apart; w: (O, C, KK) with row stride C KK; out: (O, mr), mr a multiple of vl (the
   vector length); bias may be NULL (0). in must be readable up to (C - 1) plane + mr - 1 + off[KK - 1].
   A block of OB outputs x MB positions is held in registers while every (c, t) is added to it; MB is a
   multiple of vl, and the last positions are done in blocks of vl. */

static inline __attribute__((always_inline)) void VG_T(wide_conv_block)(
    T *restrict out, npy_intp mr, const T *restrict in, npy_intp plane, const T *restrict w, npy_intp C,
    npy_intp KK, const npy_intp *restrict off, const T *restrict bias, const int OB, const int MB, const int fused)
{
    T acc[8][64]; /* [OB][MB]: OB <= 8 and MB <= 64 in every version below */
    for (int o = 0; o < OB; o++)
        for (int v = 0; v < MB; v++)
            acc[o][v] = bias ? bias[o] : 0;
    for (npy_intp c = 0; c < C; c++) {
        const T *src_c = in + c * plane;
        const T *w_c = w + c * KK;
        for (npy_intp t = 0; t < KK; t++) {
            const T *src = src_c + off[t];
#pragma GCC unroll 8
            for (int o = 0; o < OB; o++) {
                const T wv = w_c[o * C * KK + t];
#pragma GCC unroll 64
                for (int v = 0; v < MB; v++)
                    acc[o][v] = fused ? fma(wv, src[v], acc[o][v]) : acc[o][v] + wv * src[v];
            }
        }
    }
    for (int o = 0; o < OB; o++)
        for (int v = 0; v < MB; v++)
            out[o * mr + v] = acc[o][v];
}

/* All positions of OB outputs (OB a constant). */
static inline __attribute__((always_inline)) void VG_T(wide_conv_rows)(
    T *restrict out, npy_intp mr, const T *restrict in, npy_intp plane, const T *restrict w, npy_intp C,
    npy_intp KK, const npy_intp *restrict off, const T *restrict bias, const int OB, const int MB, const int vl,
    const int fused)
{
    npy_intp m = 0;
    for (; m + MB <= mr; m += MB)
        VG_T(wide_conv_block)(out + m, mr, in + m, plane, w, C, KK, off, bias, OB, MB, fused);
    for (; m < mr; m += vl)
        VG_T(wide_conv_block)(out + m, mr, in + m, plane, w, C, KK, off, bias, OB, vl, fused);
}

/* Outputs in blocks of OBMAX (4, 6 or 8), the last block of 1 .. OBMAX - 1. */
static inline __attribute__((always_inline)) void VG_T(wide_conv_driver)(
    T *restrict out, npy_intp mr, const T *restrict in, npy_intp plane, const T *restrict w, npy_intp C,
    npy_intp O, npy_intp KK, const npy_intp *restrict off, const T *restrict bias, const int OBMAX, const int MB,
    const int vl, const int fused)
{
    for (npy_intp o = 0; o < O; o += OBMAX) {
        T *dst = out + o * mr;
        const T *wo = w + o * C * KK, *bo = bias ? bias + o : NULL;
        switch (O - o < OBMAX ? O - o : OBMAX) {
        case 1: VG_T(wide_conv_rows)(dst, mr, in, plane, wo, C, KK, off, bo, 1, MB, vl, fused); break;
        case 2: VG_T(wide_conv_rows)(dst, mr, in, plane, wo, C, KK, off, bo, 2, MB, vl, fused); break;
        case 3: VG_T(wide_conv_rows)(dst, mr, in, plane, wo, C, KK, off, bo, 3, MB, vl, fused); break;
        case 4: VG_T(wide_conv_rows)(dst, mr, in, plane, wo, C, KK, off, bo, 4, MB, vl, fused); break;
        case 5: VG_T(wide_conv_rows)(dst, mr, in, plane, wo, C, KK, off, bo, OBMAX >= 5 ? 5 : 1, MB, vl, fused); break;
        case 6: VG_T(wide_conv_rows)(dst, mr, in, plane, wo, C, KK, off, bo, OBMAX >= 6 ? 6 : 1, MB, vl, fused); break;
        case 7: VG_T(wide_conv_rows)(dst, mr, in, plane, wo, C, KK, off, bo, OBMAX >= 7 ? 7 : 1, MB, vl, fused); break;
        default: VG_T(wide_conv_rows)(dst, mr, in, plane, wo, C, KK, off, bo, OBMAX >= 8 ? 8 : 1, MB, vl, fused); break;
        }
    }
}

/* ---- wide_corr: gw[o, t] += sum_m g[o, m] in[m + off[t]] for one input channel ----------------------------
   g: (O, mr) with row stride mr (0 wherever a position is not an output); in: one plane, readable up to
   mr - 1 + off[KK - 1]. gw: (O, KK) with a row stride of ldw weights, whose sums stay in their vl lanes
   when `keep` (then gw holds vl partial sums per weight, (O, KK, vl), and gw[(o ldw + t) vl + v] += the lane v
   of a block's vector), else each vector's lanes are added in order into gw[o ldw + t]. With several images
   to a chunk, direct_backward_task keeps the lanes and adds each weight's once per chunk: adding 16 lanes for
   every weight of every image cost more than the products on the course's small images. (vl and the chunks
   fix the order of the sums: the same for any number of threads.) */

static inline __attribute__((always_inline)) void VG_T(wide_corr_block)(
    T *restrict gw, npy_intp ldw, const T *restrict g, npy_intp mr, const T *restrict in,
    const npy_intp *restrict off, const int OB, const int TB, const int vl, const int fused, const int keep)
{
    T acc[4][6][16]; /* [OB][TB][vl]: OB <= 4, TB <= 6, vl <= 16 in every version below */
    for (int o = 0; o < OB; o++)
        for (int t = 0; t < TB; t++)
            for (int v = 0; v < vl; v++)
                acc[o][t][v] = 0;
    for (npy_intp m = 0; m < mr; m += vl)
#pragma GCC unroll 4
        for (int o = 0; o < OB; o++)
#pragma GCC unroll 6
            for (int t = 0; t < TB; t++) {
                const T *gv = g + o * mr + m, *xv = in + off[t] + m;
#pragma GCC unroll 16
                for (int v = 0; v < vl; v++)
                    acc[o][t][v] = fused ? fma(gv[v], xv[v], acc[o][t][v]) : acc[o][t][v] + gv[v] * xv[v];
            }
    for (int o = 0; o < OB; o++)
        for (int t = 0; t < TB; t++) {
            T *w = gw + (o * ldw + t) * (keep ? vl : 1);
            if (keep)
                for (int v = 0; v < vl; v++)
                    w[v] += acc[o][t][v];
            else {
                T s = 0;
                for (int v = 0; v < vl; v++)
                    s += acc[o][t][v];
                *w += s;
            }
        }
}

/* All taps of OB outputs, in blocks of TBMAX taps. */
static inline __attribute__((always_inline)) void VG_T(wide_corr_rows)(
    T *restrict gw, npy_intp ldw, const T *restrict g, npy_intp mr, const T *restrict in, npy_intp KK,
    const npy_intp *restrict off, const int OB, const int TBMAX, const int vl, const int fused, const int keep)
{
    for (npy_intp t = 0; t < KK; t += TBMAX) {
        T *dst = gw + t * (keep ? vl : 1);
        const npy_intp *ot = off + t;
        switch (KK - t < TBMAX ? KK - t : TBMAX) {
        case 1: VG_T(wide_corr_block)(dst, ldw, g, mr, in, ot, OB, 1, vl, fused, keep); break;
        case 2: VG_T(wide_corr_block)(dst, ldw, g, mr, in, ot, OB, 2, vl, fused, keep); break;
        case 3: VG_T(wide_corr_block)(dst, ldw, g, mr, in, ot, OB, 3, vl, fused, keep); break;
        case 4: VG_T(wide_corr_block)(dst, ldw, g, mr, in, ot, OB, 4, vl, fused, keep); break;
        case 5: VG_T(wide_corr_block)(dst, ldw, g, mr, in, ot, OB, TBMAX >= 5 ? 5 : 1, vl, fused, keep); break;
        default: VG_T(wide_corr_block)(dst, ldw, g, mr, in, ot, OB, TBMAX >= 6 ? 6 : 1, vl, fused, keep); break;
        }
    }
}

/* gw (O, C, KK, and vl lanes when keep) += the correlation of g (O, mr) with every channel of in (C planes
   `plane` apart). */
static inline __attribute__((always_inline)) void VG_T(wide_corr_driver)(
    T *restrict gw, const T *restrict g, npy_intp mr, const T *restrict in, npy_intp plane, npy_intp C,
    npy_intp O, npy_intp KK, const npy_intp *restrict off, const int keep, const int OBMAX, const int TBMAX,
    const int vl, const int fused)
{
    const npy_intp ldw = C * KK;
    for (npy_intp c = 0; c < C; c++)
        for (npy_intp o = 0; o < O; o += OBMAX) {
            T *dst = gw + (o * ldw + c * KK) * (keep ? vl : 1);
            const T *go = g + o * mr, *src = in + c * plane;
            switch (O - o < OBMAX ? O - o : OBMAX) {
            case 1: VG_T(wide_corr_rows)(dst, ldw, go, mr, src, KK, off, 1, TBMAX, vl, fused, keep); break;
            case 2: VG_T(wide_corr_rows)(dst, ldw, go, mr, src, KK, off, 2, TBMAX, vl, fused, keep); break;
            case 3:
                VG_T(wide_corr_rows)(dst, ldw, go, mr, src, KK, off, OBMAX >= 3 ? 3 : 1, TBMAX, vl, fused, keep);
                break;
            default:
                VG_T(wide_corr_rows)(dst, ldw, go, mr, src, KK, off, OBMAX >= 4 ? 4 : 1, TBMAX, vl, fused, keep);
                break;
            }
        }
}

/* ---- the versions: block sizes for each CPU ---------------------------------------------------------------
   The vector length vl is a vector register's bytes / sizeof(T). wide_conv holds OBMAX x MB accumulators:
   6 x 4 vectors with AVX-512's 32 registers, 4 x 2 with the 16 of AVX2 and SSE2; wide_corr OB x TB vectors
   (4 x 5, 2 x 5, 2 x 5). MB and vl divide 64 / sizeof(T), the rounding of the wide rows (conv.c). */

typedef void (*VG_T(wide_conv_fn))(T *restrict, npy_intp, const T *restrict, npy_intp, const T *restrict, npy_intp,
                                   npy_intp, npy_intp, const npy_intp *restrict, const T *restrict);
typedef void (*VG_T(wide_corr_fn))(T *restrict, const T *restrict, npy_intp, const T *restrict, npy_intp, npy_intp,
                                   npy_intp, npy_intp, const npy_intp *restrict, int);

#define VG_VL(bytes) ((int)((bytes) / sizeof(T)))

static void VG_T(wide_conv_generic)(T *restrict out, npy_intp mr, const T *restrict in, npy_intp plane,
                                    const T *restrict w, npy_intp C, npy_intp O, npy_intp KK,
                                    const npy_intp *restrict off, const T *restrict bias)
{
    VG_T(wide_conv_driver)(out, mr, in, plane, w, C, O, KK, off, bias, 4, 2 * VG_VL(16), VG_VL(16), VG_GENERIC_FMA);
}

static void VG_T(wide_corr_generic)(T *restrict gw, const T *restrict g, npy_intp mr, const T *restrict in,
                                    npy_intp plane, npy_intp C, npy_intp O, npy_intp KK, const npy_intp *restrict off,
                                    int keep)
{
    if (keep) /* a constant in each copy of the inlined loops */
        VG_T(wide_corr_driver)(gw, g, mr, in, plane, C, O, KK, off, 1, 2, 5, VG_VL(16), VG_GENERIC_FMA);
    else
        VG_T(wide_corr_driver)(gw, g, mr, in, plane, C, O, KK, off, 0, 2, 5, VG_VL(16), VG_GENERIC_FMA);
}

#if VG_SIMD_TARGETS
VG_TARGET_V3 static void VG_T(wide_conv_avx2)(T *restrict out, npy_intp mr, const T *restrict in, npy_intp plane,
                                              const T *restrict w, npy_intp C, npy_intp O, npy_intp KK,
                                              const npy_intp *restrict off, const T *restrict bias)
{
    VG_T(wide_conv_driver)(out, mr, in, plane, w, C, O, KK, off, bias, 4, 2 * VG_VL(32), VG_VL(32), 1);
}

VG_TARGET_V3 static void VG_T(wide_corr_avx2)(T *restrict gw, const T *restrict g, npy_intp mr, const T *restrict in,
                                              npy_intp plane, npy_intp C, npy_intp O, npy_intp KK,
                                              const npy_intp *restrict off, int keep)
{
    if (keep)
        VG_T(wide_corr_driver)(gw, g, mr, in, plane, C, O, KK, off, 1, 2, 5, VG_VL(32), 1);
    else
        VG_T(wide_corr_driver)(gw, g, mr, in, plane, C, O, KK, off, 0, 2, 5, VG_VL(32), 1);
}

VG_TARGET_V4 static void VG_T(wide_conv_avx512)(T *restrict out, npy_intp mr, const T *restrict in, npy_intp plane,
                                                const T *restrict w, npy_intp C, npy_intp O, npy_intp KK,
                                                const npy_intp *restrict off, const T *restrict bias)
{
    VG_T(wide_conv_driver)(out, mr, in, plane, w, C, O, KK, off, bias, 6, 4 * VG_VL(64), VG_VL(64), 1);
}

VG_TARGET_V4 static void VG_T(wide_corr_avx512)(T *restrict gw, const T *restrict g, npy_intp mr,
                                                const T *restrict in, npy_intp plane, npy_intp C, npy_intp O,
                                                npy_intp KK, const npy_intp *restrict off, int keep)
{
    if (keep)
        VG_T(wide_corr_driver)(gw, g, mr, in, plane, C, O, KK, off, 1, 4, 5, VG_VL(64), 1);
    else
        VG_T(wide_corr_driver)(gw, g, mr, in, plane, C, O, KK, off, 0, 4, 5, VG_VL(64), 1);
}
#endif

#undef VG_VL

/* The versions for this CPU (level: vg_simd_level()). */
static VG_T(wide_conv_fn) VG_T(pick_wide_conv)(int level)
{
#if VG_SIMD_TARGETS
    if (level >= 4)
        return VG_T(wide_conv_avx512);
    if (level >= 3)
        return VG_T(wide_conv_avx2);
#endif
    (void)level;
    return VG_T(wide_conv_generic);
}

static VG_T(wide_corr_fn) VG_T(pick_wide_corr)(int level)
{
#if VG_SIMD_TARGETS
    if (level >= 4)
        return VG_T(wide_corr_avx512);
    if (level >= 3)
        return VG_T(wide_corr_avx2);
#endif
    (void)level;
    return VG_T(wide_corr_generic);
}

/* The lanes of pick_wide_corr(level)'s sums: a vector register's bytes / sizeof(T). */
static npy_intp VG_T(wide_corr_lanes)(int level)
{
#if VG_SIMD_TARGETS
    if (level >= 4)
        return 64 / (npy_intp)sizeof(T);
    if (level >= 3)
        return 32 / (npy_intp)sizeof(T);
#endif
    (void)level;
    return 16 / (npy_intp)sizeof(T);
}

/* ---- the plain loops: reference versions of the gradients, and the fall-back of the direct path ------------
   Stride 1. xp: one image padded to (C, Hp, Wp) (struct wide); go: its (O, OH, OW) gradient. */

/* gw (O, C, kh, kw) += sum_{p, q} go[o, p, q] xp[c, p + i, q + j] */
static void VG_T(conv_exact_gw)(T *restrict gw, const T *restrict go, const T *restrict xp, const geometry *g,
                                const wide *L)
{
    for (npy_intp o = 0; o < g->o; o++)
        for (npy_intp c = 0; c < g->c; c++)
            for (npy_intp i = 0; i < g->kh; i++)
                for (npy_intp j = 0; j < g->kw; j++) {
                    T s = 0;
                    for (npy_intp p = 0; p < g->oh; p++)
                        for (npy_intp q = 0; q < g->ow; q++)
                            s += go[(o * g->oh + p) * g->ow + q] * xp[c * L->plane + (p + i) * L->wp + q + j];
                    gw[((o * g->c + c) * g->kh + i) * g->kw + j] += s;
                }
}

/* gx (C, H, W) = sum_{o, i, j} w[o, c, i, j] go[o, h + ph - i, w + pw - j] over the go inside its image */
static void VG_T(conv_exact_gx)(T *restrict gx, const T *restrict go, const T *restrict w, const geometry *g)
{
    memset(gx, 0, sizeof(T) * (size_t)(g->c * g->h * g->w));
    for (npy_intp o = 0; o < g->o; o++)
        for (npy_intp c = 0; c < g->c; c++)
            for (npy_intp i = 0; i < g->kh; i++)
                for (npy_intp j = 0; j < g->kw; j++) {
                    const T wv = w[((o * g->c + c) * g->kh + i) * g->kw + j];
                    for (npy_intp p = 0; p < g->oh; p++) {
                        const npy_intp h = p + i - g->ph;
                        if (h < 0 || h >= g->h)
                            continue;
                        for (npy_intp q = 0; q < g->ow; q++) {
                            const npy_intp x = q + j - g->pw;
                            if (x >= 0 && x < g->w)
                                gx[(c * g->h + h) * g->w + x] += wv * go[(o * g->oh + p) * g->ow + q];
                        }
                    }
                }
}

/* ---- the tasks of conv.c's parallel loops (struct conv_job) ------------------------------------------------ */

/* xs (C, Hp, Wp) and the margin after it = image n of x, padded with zeros. */
static void VG_T(pad_image)(T *restrict xs, const conv_job *J, npy_intp n)
{
    const geometry *g = J->g;
    const wide *L = &J->fw;
    const T *x = (const T *)J->x + n * g->c * g->h * g->w;
    for (npy_intp c = 0; c < g->c; c++) /* (the padding and the margin after the planes: zero, see place_plane) */
        VG_T(place_plane)(xs + c * L->plane, L->hp, L->wp, x + c * g->h * g->w, g->h, g->w, g->ph, g->pw);
}

/* Direct path, forward: y[n] from x[n]. Scratch: the padded image, then the wide output (O, mr). */
static void VG_T(direct_forward_task)(void *ctx, npy_intp n, int thread)
{
    const conv_job *J = ctx;
    const geometry *g = J->g;
    const wide *L = &J->fw;
    T *xs = (T *)(J->scratch + thread * J->scratch_bytes), *out = xs + L->size;
    VG_T(pad_image)(xs, J, n);
    VG_T(pick_wide_conv)(J->level)(out, L->mr, xs, L->plane, J->w, g->c, g->o, L->kk, L->off, J->b);
    VG_T(compact_wide)((T *)J->y + n * g->o * g->p, out, L->mr, L->wp, g->o, g->oh, g->ow, J->relu);
}

/* The sum of the `lanes` (a constant once inlined) values at l, halved in a fixed order: the upper half added
   to the lower, until one value is left. With the count a constant the halves are whole vectors in
   registers; a loop over a variable count stored and reloaded every value (a fifth of the weight gradient's
   time on the course's convolutions). */
static inline __attribute__((always_inline)) T VG_T(halved_sum)(const T *restrict l, const int lanes)
{
    T s[16];
#pragma GCC unroll 16
    for (int v = 0; v < lanes; v++)
        s[v] = l[v];
#pragma GCC unroll 4
    for (int half = lanes / 2; half > 0; half /= 2)
#pragma GCC unroll 8
        for (int v = 0; v < half; v++)
            s[v] += s[v + half];
    return s[0];
}

/* part[i] += the sum of the lanes of weight i (wsize weights, `lanes` values each, as wide_corr keeps them). */
static void VG_T(add_lanes)(T *restrict part, const T *restrict gw_lanes, npy_intp wsize, npy_intp lanes)
{
    for (npy_intp i = 0; i < wsize; i++) {
        const T *l = gw_lanes + i * lanes;
        switch (lanes) { /* wide_corr_lanes: 64, 32 or 16 bytes of T */
        case 16: part[i] += VG_T(halved_sum)(l, 16); break;
        case 8: part[i] += VG_T(halved_sum)(l, 8); break;
        case 4: part[i] += VG_T(halved_sum)(l, 4); break;
        default: part[i] += VG_T(halved_sum)(l, 2); break;
        }
    }
}

/* Direct path, backward, for the images of one chunk: their sums of the weight and bias gradients into the
   chunk's part (O C kh kw + O values), and their input gradients. Scratch: the weight gradient's lanes
   (O C kh kw x 64 bytes, see wide_corr), the padded image xs, the wide gradient (O, mr), and for the input
   gradient the padded gradient (O, Hg, Wg) and the wide result (C, mr of the gradient's layout); after the
   ReLU (J->relu_y), the image's gradient through it (O, OH, OW). */
static void VG_T(direct_backward_task)(void *ctx, npy_intp chunk, int thread)
{
    const conv_job *J = ctx;
    const geometry *g = J->g;
    const wide *L = &J->fw, *B = &J->bw;
    const npy_intp wsize = g->o * g->c * L->kk;
    T *part = (T *)J->part + chunk * (wsize + g->o), *gb = part + wsize;
    const npy_intp first = chunk * J->chunk, last = first + J->chunk < g->n ? first + J->chunk : g->n;
    /* the lanes pay for their final sums when a chunk has several images (the chunks depend on N alone) */
    const int keep = last - first >= 2;
    const npy_intp lanes = keep ? VG_T(wide_corr_lanes)(J->level) : 1;
    T *gw_lanes = (T *)(J->scratch + thread * J->scratch_bytes), *xs = gw_lanes + wsize * (64 / sizeof(T));
    T *gwide = xs + L->size;
    T *gpad = gwide + g->o * L->mr, *gxwide = gpad + (J->gx ? B->size : 0);
    T *gmasked = gxwide + (J->gx ? g->c * B->mr : 0);
    VG_T(wide_conv_fn) conv = VG_T(pick_wide_conv)(J->level);
    VG_T(wide_corr_fn) corr = VG_T(pick_wide_corr)(J->level);
    memset(part, 0, sizeof(T) * (size_t)(wsize + g->o));
    if (keep)
        memset(gw_lanes, 0, sizeof(T) * (size_t)(wsize * lanes));
    for (npy_intp n = first; n < last; n++) {
        const T *go = (const T *)J->go + n * g->o * g->p;
        if (J->relu_y) { /* made here, where the image's gradient stays in the cache */
            VG_T(relu_grad_of)(gmasked, go, (const T *)J->relu_y + n * g->o * g->p, g->o * g->p);
            go = gmasked;
        }
        VG_T(pad_image)(xs, J, n);
        /* the gradient in the wide layout, zero at the positions that are not outputs (never written) */
        for (npy_intp o = 0; o < g->o; o++) {
            T *row = gwide + o * L->mr;
            for (npy_intp p = 0; p < g->oh; p++)
                memcpy(row + p * L->wp, go + (o * g->oh + p) * g->ow, sizeof(T) * (size_t)g->ow);
            gb[o] += VG_T(vg_pairwise_sum)(go + o * g->p, g->p);
        }
        if (VG_T(all_finite)(xs, L->size))
            corr(keep ? gw_lanes : part, gwide, L->mr, xs, L->plane, g->c, g->o, L->kk, L->off, keep);
        else /* a 0 at a thrown-away position times an infinity would make a NaN */
            VG_T(conv_exact_gw)(part, go, xs, g, L);
        if (J->gx == NULL)
            continue;
        T *gx = (T *)J->gx + n * g->c * g->h * g->w;
        if (J->exact_gx) { /* filters with an infinity or NaN: 0 * w in the padding would make a NaN */
            VG_T(conv_exact_gx)(gx, go, J->w, g);
            continue;
        }
        for (npy_intp o = 0; o < g->o; o++)
            VG_T(place_plane)(gpad + o * B->plane, B->hp, B->wp, go + o * g->p, g->oh, g->ow, g->kh - 1 - g->ph,
                              g->kw - 1 - g->pw);
        conv(gxwide, B->mr, gpad, B->plane, J->wflip, g->o, g->c, B->kk, B->off, NULL);
        VG_T(compact_wide)(gx, gxwide, B->mr, B->wp, g->c, g->h, g->w, 0);
    }
    if (keep)
        VG_T(add_lanes)(part, gw_lanes, wsize, lanes);
}

/* wflip (C, O, kh, kw): wflip[c, o, i, j] = w[o, c, kh - 1 - i, kw - 1 - j], the filters of the input gradient. */
static void VG_T(flip_filters)(T *restrict wflip, const T *restrict w, const geometry *g)
{
    const npy_intp kk = g->kh * g->kw;
    for (npy_intp o = 0; o < g->o; o++)
        for (npy_intp c = 0; c < g->c; c++)
            for (npy_intp t = 0; t < kk; t++)
                wflip[(c * g->o + o) * kk + (kk - 1 - t)] = w[(o * g->c + c) * kk + t];
}

/* gw (wsize), gb (O, or NULL) = the sums of the chunks' parts, in chunk order. */
static void VG_T(sum_parts)(T *restrict gw, T *restrict gb, const T *restrict part, npy_intp chunks, npy_intp wsize,
                            npy_intp O)
{
    const npy_intp stride = wsize + O;
    memset(gw, 0, sizeof(T) * (size_t)wsize);
    if (gb)
        memset(gb, 0, sizeof(T) * (size_t)O);
    for (npy_intp k = 0; k < chunks; k++) {
        const T *p = part + k * stride;
        for (npy_intp i = 0; i < wsize; i++)
            gw[i] += p[i];
        if (gb)
            for (npy_intp o = 0; o < O; o++)
                gb[o] += p[wsize + o];
    }
}

/* BLAS path: image first + k of x into columns k P of cols (ld = chunk P). */
static void VG_T(im2col_task)(void *ctx, npy_intp k, int thread)
{
    const conv_job *J = ctx;
    const geometry *g = J->g;
    (void)thread;
    VG_T(im2col_image)((T *)J->cols + k * g->p, J->ld, (const T *)J->x + (J->first + k) * g->c * g->h * g->w, g);
}

/* BLAS path: y[first + k] = columns k P of prod (O, ldp) + b. */
static void VG_T(unfold_task)(void *ctx, npy_intp k, int thread)
{
    const conv_job *J = ctx;
    const geometry *g = J->g;
    (void)thread;
    VG_T(unfold_image)((T *)J->y + (J->first + k) * g->o * g->p, (const T *)J->prod + k * g->p, J->ldp, J->b, g->o,
                       g->p, J->relu);
}

/* BLAS path: columns k P of go2 (O, ld) = go[first + k]. */
static void VG_T(fold_task)(void *ctx, npy_intp k, int thread)
{
    const conv_job *J = ctx;
    const geometry *g = J->g;
    (void)thread;
    const npy_intp image = (J->first + k) * g->o * g->p;
    VG_T(fold_image)((T *)J->go2 + k * g->p, J->ld, (const T *)J->go + image,
                     J->relu_y ? (const T *)J->relu_y + image : NULL, g->o, g->p);
}

/* BLAS path: gx[first + k] = col2im of columns k P of gcols (C kh kw, ldp). */
static void VG_T(col2im_task)(void *ctx, npy_intp k, int thread)
{
    const conv_job *J = ctx;
    const geometry *g = J->g;
    (void)thread;
    T *gx = (T *)J->gx + (J->first + k) * g->c * g->h * g->w;
    memset(gx, 0, sizeof(T) * (size_t)(g->c * g->h * g->w));
    VG_T(col2im_image)(gx, (const T *)J->gcols + k * g->p, J->ldp, g);
}
