/*
 * select_kernels.h — Select's kernels for one element type T (instantiated by select.c through
 * instantiate.h). Outputs first, then inputs, then sizes; the indices k are in range.
 */

/* ---- Select: y_i = x[i, k_i]             gx[i, j] = go_i if j == k_i else 0 ------------------------- */

/* x: rows x cols, k: rows -> y: rows */
static void VG_T(select_forward)(T *restrict y, const T *restrict x, const npy_intp *restrict k, npy_intp rows,
                                 npy_intp cols)
{
    for (npy_intp i = 0; i < rows; i++)
        y[i] = x[i * cols + k[i]];
}

/* go, k: rows -> gx: rows x cols (zero-filled by the caller) */
static void VG_T(select_backward)(T *restrict gx, const T *restrict go, const npy_intp *restrict k, npy_intp rows,
                                  npy_intp cols)
{
    for (npy_intp i = 0; i < rows; i++)
        gx[i * cols + k[i]] = go[i];
}
