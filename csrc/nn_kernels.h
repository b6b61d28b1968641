/*
 * nn_kernels.h — the kernels of dropout, batch normalisation and the cross-entropy for one element type T
 * (instantiated by nn.c through instantiate.h; nn.c's top comment gives the formulas). Arrays are
 * C-contiguous; outputs first, then inputs, then sizes. Sums over a channel or a batch are accumulated in
 * double, so float32 statistics stay accurate.
 */

/* y = x * noise, noise = keep ? 1 / (1 - p) : 0, computed in T as PyTorch does. */
static void VG_T(dropout)(T *restrict y, const T *restrict x, const npy_bool *restrict keep, double p,
                          npy_intp n)
{
    const T scale = p < 1 ? (T)1 / (T)(1 - p) : 0;
    for (npy_intp i = 0; i < n; i++)
        y[i] = x[i] * (keep[i] ? scale : (T)0);
}

/* x (N, C, S). Training (given == 0): fills mean and var (biased) with the batch statistics;
   otherwise uses them as they are. Then invstd, xhat and y. */
static void VG_T(batchnorm_forward)(T *restrict y, T *restrict xhat, T *restrict mean, T *restrict var,
                                    T *restrict invstd, const T *restrict x, const T *restrict gamma,
                                    const T *restrict beta, double eps, int given, npy_intp N,
                                    npy_intp C, npy_intp Sp)
{
    const double M = (double)N * (double)Sp;
    for (npy_intp c = 0; c < C; c++) {
        if (!given) {
            double sum = 0, sq = 0;
            for (npy_intp n = 0; n < N; n++)
                for (npy_intp s = 0; s < Sp; s++)
                    sum += x[(n * C + c) * Sp + s];
            const double mu = sum / M;
            for (npy_intp n = 0; n < N; n++)
                for (npy_intp s = 0; s < Sp; s++) {
                    const double d = x[(n * C + c) * Sp + s] - mu;
                    sq += d * d;
                }
            mean[c] = (T)mu;
            var[c] = (T)(sq / M);
        }
        const T m = mean[c], is = (T)1 / sqrt(var[c] + (T)eps), g = gamma[c], b = beta[c];
        invstd[c] = is;
        for (npy_intp n = 0; n < N; n++)
            for (npy_intp s = 0; s < Sp; s++) {
                const npy_intp k = (n * C + c) * Sp + s;
                xhat[k] = (x[k] - m) * is;
                y[k] = g * xhat[k] + b;
            }
    }
}

static void VG_T(batchnorm_backward)(T *restrict gx, T *restrict ggamma, T *restrict gbeta,
                                     const T *restrict go, const T *restrict xhat,
                                     const T *restrict gamma, const T *restrict invstd, int training,
                                     npy_intp N, npy_intp C, npy_intp Sp)
{
    const double M = (double)N * (double)Sp;
    for (npy_intp c = 0; c < C; c++) {
        double gb = 0, gg = 0;
        for (npy_intp n = 0; n < N; n++)
            for (npy_intp s = 0; s < Sp; s++) {
                const npy_intp k = (n * C + c) * Sp + s;
                gb += go[k];
                gg += (double)go[k] * xhat[k];
            }
        gbeta[c] = (T)gb;
        ggamma[c] = (T)gg;
        const T scale = gamma[c] * invstd[c];
        const T mean_gb = training ? (T)(gb / M) : 0, mean_gg = training ? (T)(gg / M) : 0;
        for (npy_intp n = 0; n < N; n++)
            for (npy_intp s = 0; s < Sp; s++) {
                const npy_intp k = (n * C + c) * Sp + s;
                /* evaluation: the statistics are constants, so gx = go scale (no xhat term: 0 * inf is NaN) */
            gx[k] = training ? (go[k] - mean_gb - xhat[k] * mean_gg) * scale : go[k] * scale;
            }
    }
}

/* x (N, C > 0), t (N,) in range -> losses (N,) and softmax (N, C); diff (N, C) and sumd (N,) are scratch.
   The row log-sum-exp is LogSoftmax's (rows.c: the row maximum with NumPy's NaN rule, exp and the row sums
   as NumPy computes them): loss_i = lse_i - (x_it - max_i), softmax = exp(x - max) / sum. */
static void VG_T(cross_entropy_forward)(const vg_loops *L, T *restrict losses, T *restrict softmax,
                                        T *restrict diff, T *restrict sumd, const T *restrict x,
                                        const npy_intp *restrict t, npy_intp N, npy_intp C)
{
    VG_T(vg_rows_logsumexp)(L, diff, softmax, sumd, losses, NULL, x, N, C); /* losses holds lse */
    for (npy_intp i = 0; i < N; i++)
        losses[i] = losses[i] - diff[i * C + t[i]];
    VG_T(vg_rows_softmax)(softmax, sumd, N, C);
}

/* g_ij = s (softmax_ij - [j == t_i]) */
static void VG_T(cross_entropy_backward)(T *restrict g, T s, const T *restrict softmax,
                                         const npy_intp *restrict t, npy_intp N, npy_intp C)
{
    for (npy_intp i = 0; i < N; i++) {
        for (npy_intp j = 0; j < C; j++)
            g[i * C + j] = s * (softmax[i * C + j] - (j == t[i] ? (T)1 : (T)0));
    }
}
