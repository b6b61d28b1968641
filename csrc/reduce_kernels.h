/*
 * reduce_kernels.h — the kernels of Sum, RowSum, RowMax and Normalize, and the sums other files share
 * (vg_pairwise_sum, vg_sum_middle_axis: declared in shared_kernels.h), for one element type T (instantiated
 * by reduce.c through instantiate.h). Arrays are C-contiguous; outputs first, then inputs, then sizes.
 *
 * Every sum of the built-in ops is NumPy's: vg_sum runs NumPy's own add loop the way np.sum calls it for a
 * contiguous run of the summed axis (from 0, pairwise), and vg_sum_middle_axis follows NumPy's order for
 * the other case.
 */

/* ---- Sum: y = sum of all elements        gx = go everywhere ----------------------------------------- */

/* x: n elements, contiguous (C or Fortran order: np.sum adds them in memory order) -> y: a scalar */
static void VG_T(sum_forward)(const vg_loops *L, T *restrict y, const T *restrict x, npy_intp n)
{
    *y = VG_T(vg_sum)(L, x, n);
}

/* go: a scalar -> gx: n elements */
static void VG_T(sum_backward)(T *restrict gx, const T *restrict go, npy_intp n)
{
    const T g = *go;
    for (npy_intp i = 0; i < n; i++)
        gx[i] = g;
}

/* ---- RowSum: y_i = sum_j x_ij             gx_ij = go_i --------------------------------------------- */

/* x: rows x cols -> y: rows */
static void VG_T(rowsum_forward)(const vg_loops *L, T *restrict y, const T *restrict x, npy_intp rows, npy_intp cols)
{
    for (npy_intp i = 0; i < rows; i++)
        y[i] = VG_T(vg_sum)(L, x + i * cols, cols);
}

/* go: rows -> gx: rows x cols */
static void VG_T(rowsum_backward)(T *restrict gx, const T *restrict go, npy_intp rows, npy_intp cols)
{
    for (npy_intp i = 0; i < rows; i++)
        for (npy_intp j = 0; j < cols; j++)
            gx[i * cols + j] = go[i];
}

/* ---- RowMax: y_i = max_j x_ij, idx_i = argmax_j x_ij      gx_ij = go_i if j == idx_i else 0 ------------ */

/* x: rows x cols (cols > 0) -> y, idx: rows. The rule for maxima (vg_row_argmax): the first maximum, or the
   first NaN, as np.argmax; y is that element, as np.amax. Returns 1 when some row's maximum is a zero and the
   row holds zeros of both signs: np.amax's choice of sign then depends on its SIMD lanes, and the caller
   takes the values from np.maximum.reduce. */
static int VG_T(rowmax_forward)(T *restrict y, npy_intp *restrict idx, const T *restrict x, npy_intp rows,
                                npy_intp cols)
{
    int signed_zero_tie = 0;
    for (npy_intp i = 0; i < rows; i++) {
        const T *row = x + i * cols;
        idx[i] = VG_T(vg_row_argmax)(row, cols);
        y[i] = row[idx[i]];
        if (y[i] == 0) {
            int positive = 0, negative = 0;
            for (npy_intp j = 0; j < cols; j++)
                if (row[j] == 0) {
                    if (signbit(row[j]))
                        negative = 1;
                    else
                        positive = 1;
                }
            signed_zero_tie |= positive && negative;
        }
    }
    return signed_zero_tie;
}

/* go, idx: rows -> gx: rows x cols (zero-filled by the caller) */
static void VG_T(rowmax_backward)(T *restrict gx, const T *restrict go, const npy_intp *restrict idx, npy_intp rows,
                                  npy_intp cols)
{
    for (npy_intp i = 0; i < rows; i++)
        gx[i * cols + idx[i]] = go[i];
}

/* ---- Normalize: y = x / sumd, sumd_i = sum_j x_ij
                   gx = go / sumd - ((go * x) / (sumd * sumd)).sum(axis=1, keepdims=True) ------------------- */

/* x: rows x cols, sumd: rows (from rowsum_forward, or NumPy's sum for other layouts) -> y: rows x cols */
static void VG_T(normalize_forward)(T *restrict y, const T *restrict x, const T *restrict sumd, npy_intp rows,
                                    npy_intp cols)
{
    for (npy_intp i = 0; i < rows; i++)
        for (npy_intp j = 0; j < cols; j++)
            y[i * cols + j] = x[i * cols + j] / sumd[i];
}

/* go, x: rows x cols, sumd: rows -> gx: rows x cols. Each row of gx first holds (go * x) / (sumd * sumd),
   the array NumPy sums (C-ordered like go and x), then the gradient. */
static void VG_T(normalize_backward)(const vg_loops *L, T *restrict gx, const T *restrict go, const T *restrict x,
                                     const T *restrict sumd, npy_intp rows, npy_intp cols)
{
    for (npy_intp i = 0; i < rows; i++) {
        T *g = gx + i * cols;
        const T *goi = go + i * cols, *xi = x + i * cols, s = sumd[i];
        for (npy_intp j = 0; j < cols; j++)
            g[j] = (goi[j] * xi[j]) / (s * s);
        const T correction = VG_T(vg_sum)(L, g, cols);
        for (npy_intp j = 0; j < cols; j++)
            g[j] = goi[j] / s - correction;
    }
}

/* ---- shared sums ------------------------------------------------------------------------------------- */

/* go: outer x len x inner -> gx: outer x inner, go.sum(axis=1, keepdims=True) in NumPy's order: NumPy's
   reduction makes the innermost axis with a stride its inner loop: for inner > 1 that is the kept axis, so
   each result starts at 0 and the len rows are added to it in order; for inner == 1 it is the summed axis,
   summed by NumPy's add loop (vg_sum). (Expand's and Affine's gradients.) */
void VG_T(vg_sum_middle_axis)(const vg_loops *L, T *restrict gx, const T *restrict go, npy_intp outer, npy_intp len,
                              npy_intp inner)
{
    for (npy_intp o = 0; o < outer; o++) {
        const T *src = go + o * len * inner;
        T *dst = gx + o * inner;
        if (inner == 1) {
            dst[0] = VG_T(vg_sum)(L, src, len);
            continue;
        }
        for (npy_intp i = 0; i < inner; i++)
            dst[i] = 0;
        for (npy_intp r = 0; r < len; r++)
            for (npy_intp i = 0; i < inner; i++)
                dst[i] += src[r * inner + i];
    }
}

/* x: n -> a pairwise sum: below 8 elements in order; up to 128 in eight running sums added as a balanced
   tree; beyond, the two halves (the first a multiple of 8 long) summed alike and added. (The CNN kernels'.) */
T VG_T(vg_pairwise_sum)(const T *x, npy_intp n)
{
    if (n < 8) {
        T r = 0;
        for (npy_intp i = 0; i < n; i++)
            r += x[i];
        return r;
    }
    if (n <= 128) {
        T r[8];
        for (int k = 0; k < 8; k++)
            r[k] = x[k];
        npy_intp i;
        for (i = 8; i < n - (n % 8); i += 8)
            for (int k = 0; k < 8; k++)
                r[k] += x[i + k];
        T res = ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7]));
        for (; i < n; i++)
            res += x[i];
        return res;
    }
    npy_intp half = n / 2;
    half -= half % 8;
    return VG_T(vg_pairwise_sum)(x, half) + VG_T(vg_pairwise_sum)(x + half, n - half);
}
