/*
 * reduce_kernels.h — the kernels of Sum, RowSum, RowMax and Normalize, and the sum over an axis that Expand's
 * and Affine's gradients use, for one element type: included by reduce.c with T float, SFX f32 and with
 * T double, SFX f64 (VG_T in vgrad.h). Arrays are C-contiguous; outputs first, then inputs, then sizes.
 *
 * Every sum is NumPy's: vg_sum runs NumPy's own add loop the way np.sum calls it for a contiguous run of
 * the summed axis (from 0, pairwise), and vg_sum_middle_axis follows NumPy's order for the other case.
 */

/* ---- Sum: y = sum of all elements        gx = go everywhere ----------------------------------------- */

/* x: n elements, contiguous (C or Fortran order: np.sum adds them in memory order) -> the sum */
static T VG_T(sum_forward)(const vg_loops *L, const T *x, npy_intp n)
{
    return VG_T(vg_sum)(L, x, n);
}

/* go: a scalar -> gx: n elements */
static void VG_T(sum_backward)(T *restrict gx, T go, npy_intp n)
{
    for (npy_intp i = 0; i < n; i++)
        gx[i] = go;
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

/* x: rows x cols (cols > 0) -> y, idx: rows. As np.argmax, the first maximum wins and a NaN counts as the
   maximum (the first NaN of a row is taken). Returns 1 when some row's maximum is a zero and the row holds
   zeros of both signs: np.amax's choice of sign then depends on its SIMD lanes, and the caller takes the
   values from np.maximum.reduce. */
static int VG_T(rowmax_forward)(T *restrict y, npy_intp *restrict idx, const T *restrict x, npy_intp rows,
                                npy_intp cols)
{
    int signed_zero_tie = 0;
    for (npy_intp i = 0; i < rows; i++) {
        const T *row = x + i * cols;
        T best = row[0];
        npy_intp where = 0;
        for (npy_intp j = 1; j < cols && best == best; j++) {
            if (!(row[j] <= best)) { /* larger, or NaN */
                best = row[j];
                where = j;
            }
        }
        y[i] = best;
        idx[i] = where;
        if (best == 0) {
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

/* ---- x.sum(axis=1, keepdims=True) for x: outer x len x inner, C-contiguous ----------------------------- */

/* -> gx: outer x inner. NumPy's reduction makes the innermost axis with a stride its inner loop: for
   inner > 1 that is the kept axis, so each result starts at 0 and the len rows are added to it in order;
   for inner == 1 it is the summed axis, summed by NumPy's add loop (vg_sum). */
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
