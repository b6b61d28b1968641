/*
 * rows_kernels.h — kernels over the rows of a matrix that several ops share, for one element type T
 * (instantiated by rows.c through instantiate.h; declared in shared_kernels.h): the row maximum of RowMax,
 * LogSoftmax and the cross-entropy, and the log-sum-exp trick of LogSoftmax and the cross-entropy.
 * Matrices are C-contiguous, rows x cols; outputs first, then inputs, then sizes.
 */

/* ---- the maximum of a row: np.argmax (and np.amax) --------------------------------------------------- */

/* x: n > 0 -> the index of the first maximum, or of the first NaN (vg_replaces_max) */
npy_intp VG_T(vg_row_argmax)(const T *x, npy_intp n)
{
    T best = x[0];
    npy_intp where = 0;
    for (npy_intp j = 1; j < n; j++) {
        if (vg_replaces_max(x[j], best)) {
            best = x[j];
            where = j;
        }
    }
    return where;
}

/* ---- log-sum-exp: log(sum_j exp(x_ij)) = m_i + log(sum_j exp(x_ij - m_i)), m_i = max_j x_ij ------------- */

/* x: rows x cols (cols > 0) -> diff, expd: rows x cols; sumd, lse: rows; argmax: rows (or NULL). NumPy's
   steps, each an operation of the references (see shared_kernels.h): the row maximum, x - max, np.exp over
   the whole array (NumPy's own loop in float64), np.sum of each row (NumPy's pairwise loop), np.log of the
   vector of sums. */
void VG_T(vg_rows_logsumexp)(const vg_loops *L, T *restrict diff, T *restrict expd, T *restrict sumd,
                             T *restrict lse, npy_intp *restrict argmax, const T *restrict x, npy_intp rows,
                             npy_intp cols)
{
    for (npy_intp i = 0; i < rows; i++) {
        const T *xi = x + i * cols;
        const npy_intp where = VG_T(vg_row_argmax)(xi, cols);
        const T m = xi[where];
        if (argmax != NULL)
            argmax[i] = where;
        for (npy_intp j = 0; j < cols; j++)
            diff[i * cols + j] = xi[j] - m;
    }
    VG_T(vg_exp_array)(L, expd, diff, rows * cols);
    for (npy_intp i = 0; i < rows; i++)
        sumd[i] = VG_T(vg_sum)(L, expd + i * cols, cols);
    VG_T(vg_log_array)(L, lse, sumd, rows);
}

/* diff: rows x cols, lse: rows -> diff - lse[:, None] in place: the log-softmax (LogSoftmax's last Sub) */
void VG_T(vg_rows_log_softmax)(T *restrict diff, const T *restrict lse, npy_intp rows, npy_intp cols)
{
    for (npy_intp i = 0; i < rows; i++)
        for (npy_intp j = 0; j < cols; j++)
            diff[i * cols + j] = diff[i * cols + j] - lse[i];
}

/* expd: rows x cols, sumd: rows -> expd / sumd[:, None] in place: the softmax (the cross-entropy's exps / sums) */
void VG_T(vg_rows_softmax)(T *restrict expd, const T *restrict sumd, npy_intp rows, npy_intp cols)
{
    for (npy_intp i = 0; i < rows; i++)
        for (npy_intp j = 0; j < cols; j++)
            expd[i * cols + j] = expd[i * cols + j] / sumd[i];
}
