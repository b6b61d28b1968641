/*
 * fused_kernels.h — the kernels of the fused ops Affine, LogSoftmax and LogCELoss for one element type T
 * (instantiated by fused.c through instantiate.h). Arrays are C-contiguous; outputs first, then inputs, then
 * sizes. Each kernel performs the floating-point operations of the chain of vugrad ops it replaces, in the
 * same order (see fused.c); the matrix products are done by the boundary through np.matmul (vg_matmul).
 */

/* ---- Affine: y = x @ w.T + b        gw = go.T @ x, gb = go.sum(axis=0), gx = go @ w ------------------- */

/* y: rows x cols, the product x @ w.T; b: cols -> y += b on every row (Add of the Expand-ed bias) */
static void VG_T(affine_forward)(T *restrict y, const T *restrict b, npy_intp rows, npy_intp cols)
{
    for (npy_intp i = 0; i < rows; i++)
        for (npy_intp j = 0; j < cols; j++)
            y[i * cols + j] = y[i * cols + j] + b[j];
}

/* (backward: the products gw, gx by vg_matmul; gb = go.sum(axis=0) by vg_sum_middle_axis, Expand's gradient) */

/* ---- LogSoftmax: y = diff - log(rowsum(exp(diff))), diff = x - rowmax(x) --------------------------------- */

/* x: rows x cols (cols > 0) -> y, expd: rows x cols; sumd, lse: rows (lse is scratch); idxs: rows.
   RowMax (np.amax and np.argmax; NaN wins), Sub, Exp over the whole diff array as np.exp does, RowSum,
   Log over the vector of sums, Sub: the log-sum-exp trick of rows.c, the same steps. */
static void VG_T(logsoftmax_forward)(const vg_loops *L, T *restrict y, T *restrict expd, T *restrict sumd,
                                     T *restrict lse, npy_intp *restrict idxs, const T *restrict x, npy_intp rows,
                                     npy_intp cols)
{
    VG_T(vg_rows_logsumexp)(L, y, expd, sumd, lse, idxs, x, rows, cols); /* y holds diff */
    VG_T(vg_rows_log_softmax)(y, lse, rows, cols);
}

/* go, expd: rows x cols; sumd, idxs: rows -> gx: rows x cols. vugrad's backward through the ten ops, each
   intermediate gradient as its traversal builds it (every sum over a C-ordered array, from 0, pairwise):
       S_i = rowsum(-go)_i                       last Sub, Expand, Unsqueeze
       q_i = S_i / sumd_i                        Log
       gdiff_ij = go_ij + q_i * expd_ij          RowSum, Exp; diff also gets go from the last Sub, first
       T_i = rowsum(-gdiff)_i                    first Sub, Expand, Unsqueeze
       gx_ij = gdiff_ij + (j == idxs_i ? T_i : 0)    x gets gdiff from that Sub, then RowMax's scatter
   Each row of gx holds -go, then -gdiff, while its sums are taken (negation is exact, so -(-gdiff) is
   gdiff again). */
static void VG_T(logsoftmax_backward)(const vg_loops *L, T *restrict gx, const T *restrict go, const T *restrict expd,
                                      const T *restrict sumd, const npy_intp *restrict idxs, npy_intp rows,
                                      npy_intp cols)
{
    for (npy_intp i = 0; i < rows; i++) {
        T *g = gx + i * cols;
        const T *goi = go + i * cols, *ei = expd + i * cols;
        for (npy_intp j = 0; j < cols; j++)
            g[j] = -goi[j];
        const T q = VG_T(vg_sum)(L, g, cols) / sumd[i];
        for (npy_intp j = 0; j < cols; j++)
            g[j] = -(goi[j] + q * ei[j]);
        const T t = VG_T(vg_sum)(L, g, cols);
        for (npy_intp j = 0; j < cols; j++)
            g[j] = -g[j] + (j == idxs[i] ? t : 0);
    }
}

/* ---- LogCELoss: loss = Sum(Select(lp, targets)) * -1.0     glp[i, j] = go * -1.0 if j == t_i else 0 ---- */

/* lp: rows x cols, targets: rows (in range) -> loss: a scalar; picked: rows (scratch, the Select-ed vector) */
static void VG_T(logceloss_forward)(const vg_loops *L, T *restrict loss, T *restrict picked, const T *restrict lp,
                                    const npy_intp *restrict targets, npy_intp rows, npy_intp cols)
{
    for (npy_intp i = 0; i < rows; i++)
        picked[i] = lp[i * cols + targets[i]];
    *loss = VG_T(vg_sum)(L, picked, rows) * (T)-1.0;
}

/* go: the scalar gradient of the loss, targets: rows -> glp: rows x cols (zero-filled by the caller) holding
   go * -1.0 (the Multiply's gradient, spread by Sum and placed by Select) at each row's target */
static void VG_T(logceloss_backward)(T *restrict glp, const T *restrict go, const npy_intp *restrict targets,
                                     npy_intp rows, npy_intp cols)
{
    const T g = *go * (T)-1.0;
    for (npy_intp i = 0; i < rows; i++)
        glp[i * cols + targets[i]] = g;
}
