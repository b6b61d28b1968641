/*
 * nn_kernels.h — the kernels of dropout, batch normalisation and the cross-entropy for one element type T
 * (instantiated by nn.c through instantiate.h; nn.c's top comment gives the formulas). Arrays are
 * C-contiguous; outputs first, then inputs, then sizes. Sums over a channel or a batch are accumulated in
 * double, so float32 statistics stay accurate. Each kernel computes one task's part of its op, which nn.c
 * runs on the thread pool: a run of dropout's values, one channel of batch norm, a run of whole rows of the
 * cross-entropy; none of them writes outside its part.
 */

/* y = x * noise, noise = keep ? 1 / (1 - p) : 0, computed in T as PyTorch does; n values (a task's run). */
static void VG_T(dropout)(T *restrict y, const T *restrict x, const npy_bool *restrict keep, double p,
                          npy_intp n)
{
    const T scale = p < 1 ? (T)1 / (T)(1 - p) : 0;
    for (npy_intp i = 0; i < n; i++)
        y[i] = x[i] * (keep[i] ? scale : (T)0);
}

/* Sums over a channel's values in double, in BN_LANES lanes (lane i mod BN_LANES of each plane) that
   vg_lanes_total (nn.c) adds in order at the end: the loops vectorise (one running sum would wait on each
   addition), and the order of the additions is fixed by the shape alone, the same on any thread. */

static void VG_T(lanes_add)(double *restrict lane, const T *restrict x, npy_intp n)
{
    npy_intp i = 0;
    for (; i + BN_LANES <= n; i += BN_LANES)
        for (int v = 0; v < BN_LANES; v++)
            lane[v] += (double)x[i + v];
    for (; i < n; i++)
        lane[i % BN_LANES] += (double)x[i];
}

static void VG_T(lanes_add_squared_deviations)(double *restrict lane, const T *restrict x, double mu, npy_intp n)
{
    npy_intp i = 0;
    for (; i + BN_LANES <= n; i += BN_LANES)
        for (int v = 0; v < BN_LANES; v++) {
            const double d = (double)x[i + v] - mu;
            lane[v] += d * d;
        }
    for (; i < n; i++) {
        const double d = (double)x[i] - mu;
        lane[i % BN_LANES] += d * d;
    }
}

static void VG_T(lanes_add_products)(double *restrict lane, const T *restrict a, const T *restrict b, npy_intp n)
{
    npy_intp i = 0;
    for (; i + BN_LANES <= n; i += BN_LANES)
        for (int v = 0; v < BN_LANES; v++)
            lane[v] += (double)a[i + v] * (double)b[i + v];
    for (; i < n; i++)
        lane[i % BN_LANES] += (double)a[i] * (double)b[i];
}

/* Channel c of x (N, C, Sp) (nn.c runs the channels on the thread pool). Training (given == 0): sets mean[c]
   and var[c] (biased) to the batch statistics; otherwise uses them as they are. Then invstd[c], and xhat and
   y of the channel. */
static void VG_T(batchnorm_forward)(T *restrict y, T *restrict xhat, T *restrict mean, T *restrict var,
                                    T *restrict invstd, const T *restrict x, const T *restrict gamma,
                                    const T *restrict beta, double eps, int given, npy_intp N,
                                    npy_intp C, npy_intp Sp, npy_intp c)
{
    const double M = (double)N * (double)Sp;
    if (!given) {
        double sum[BN_LANES] = {0}, sq[BN_LANES] = {0};
        for (npy_intp n = 0; n < N; n++)
            VG_T(lanes_add)(sum, x + (n * C + c) * Sp, Sp);
        const double mu = vg_lanes_total(sum) / M;
        for (npy_intp n = 0; n < N; n++)
            VG_T(lanes_add_squared_deviations)(sq, x + (n * C + c) * Sp, mu, Sp);
        mean[c] = (T)mu;
        var[c] = (T)(vg_lanes_total(sq) / M);
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

/* Channel c: gbeta[c], ggamma[c], and gx of the channel. */
static void VG_T(batchnorm_backward)(T *restrict gx, T *restrict ggamma, T *restrict gbeta,
                                     const T *restrict go, const T *restrict xhat,
                                     const T *restrict gamma, const T *restrict invstd, int training,
                                     npy_intp N, npy_intp C, npy_intp Sp, npy_intp c)
{
    const double M = (double)N * (double)Sp;
    double gb_lanes[BN_LANES] = {0}, gg_lanes[BN_LANES] = {0};
    for (npy_intp n = 0; n < N; n++) {
        VG_T(lanes_add)(gb_lanes, go + (n * C + c) * Sp, Sp);
        VG_T(lanes_add_products)(gg_lanes, go + (n * C + c) * Sp, xhat + (n * C + c) * Sp, Sp);
    }
    const double gb = vg_lanes_total(gb_lanes), gg = vg_lanes_total(gg_lanes);
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

/* x (N, C > 0), t (N,) in range -> losses (N,) and softmax (N, C); diff (N, C) and sumd (N,) are scratch.
   The row log-sum-exp is LogSoftmax's (rows.c: the row maximum with NumPy's NaN rule, exp and the row sums
   as NumPy computes them): loss_i = lse_i - (x_it - max_i), softmax = exp(x - max) / sum. Every row is its
   own, so nn.c gives each task a run of whole rows (N of them here): the exp and log loops give an element
   the same bits in whatever piece of the array they get it (npyloops.c), so the pieces change nothing. The
   sum of the losses is nn.c's, over all rows, after the tasks. */
static void VG_T(cross_entropy_forward)(const vg_loops *L, T *restrict losses, T *restrict softmax,
                                        T *restrict diff, T *restrict sumd, const T *restrict x,
                                        const npy_intp *restrict t, npy_intp N, npy_intp C)
{
    VG_T(vg_rows_logsumexp)(L, diff, softmax, sumd, losses, NULL, x, N, C); /* losses holds lse */
    for (npy_intp i = 0; i < N; i++)
        losses[i] = losses[i] - diff[i * C + t[i]];
    VG_T(vg_rows_softmax)(softmax, sumd, N, C);
}

/* g_ij = s (softmax_ij - [j == t_i]), for N rows (a task's run of whole rows, as the forward's) */
static void VG_T(cross_entropy_backward)(T *restrict g, T s, const T *restrict softmax,
                                         const npy_intp *restrict t, npy_intp N, npy_intp C)
{
    for (npy_intp i = 0; i < N; i++) {
        for (npy_intp j = 0; j < C; j++)
            g[i * C + j] = s * (softmax[i * C + j] - (j == t[i] ? (T)1 : (T)0));
    }
}
