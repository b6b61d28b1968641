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
                gx[k] = (go[k] - mean_gb - xhat[k] * mean_gg) * scale;
            }
    }
}

/* x (N, C), t (N,) in range -> losses (N,) and softmax (N, C) */
static void VG_T(cross_entropy_forward)(T *restrict losses, T *restrict softmax, const T *restrict x,
                                        const npy_intp *restrict t, npy_intp N, npy_intp C)
{
    for (npy_intp i = 0; i < N; i++) {
        const T *row = x + i * C;
        T *p = softmax + i * C;
        T m = row[0];
        for (npy_intp j = 1; j < C; j++)
            if (row[j] > m)
                m = row[j];
        T sum = 0;
        for (npy_intp j = 0; j < C; j++) {
            p[j] = exp(row[j] - m);
            sum += p[j];
        }
        for (npy_intp j = 0; j < C; j++)
            p[j] /= sum;
        losses[i] = (m + log(sum)) - row[t[i]];
    }
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
