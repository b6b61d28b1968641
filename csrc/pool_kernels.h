/*
 * pool_kernels.h — the kernels of max and average pooling for one element type T (instantiated by pool.c
 * through instantiate.h; pool.c's top comment gives the formulas and struct pooling the geometry). One
 * plane (n, c) at a time, so pool.c can hand planes to the thread pool; forward beside backward.
 */

/* maxpool_forward's rule for one plane with 2 x 2 windows and stride 2 (MaxPool2d(2), the course's). The
   four candidates of each window are first copied out, in row-major order, for up to 256 windows (whole
   rows of them) at a time; then the loops that pick the maximum run over those arrays without branches (a
   select, not an if, which random data mispredicts half the time), which GCC vectorises. */
static void VG_T(maxpool_plane_2x2)(T *restrict y, npy_intp *restrict idx, const T *restrict img,
                                    const pooling *g)
{
    enum { RUN = 256 };
    T cand[4][RUN], top[RUN];
    npy_intp corner[RUN]; /* the window's top-left element */
    int best[RUN];        /* the winner: 0 1 / 2 3 within the window (an int, as wide as a float: vectorised) */
    const npy_intp rows_per_run = g->ow <= RUN ? RUN / g->ow : 1, w = g->w;
    for (npy_intp p0 = 0; p0 < g->oh; p0 += rows_per_run) {
        const npy_intp p1 = p0 + rows_per_run < g->oh ? p0 + rows_per_run : g->oh;
        for (npy_intp q0 = 0; q0 < g->ow; q0 += RUN) { /* one pass unless a row has over RUN windows */
            const npy_intp q1 = q0 + RUN < g->ow ? q0 + RUN : g->ow;
            npy_intp n = 0;
            for (npy_intp p = p0; p < p1; p++)
                for (npy_intp q = q0; q < q1; q++, n++) {
                    const npy_intp at = 2 * p * w + 2 * q;
                    corner[n] = at;
                    cand[0][n] = img[at], cand[1][n] = img[at + 1];
                    cand[2][n] = img[at + w], cand[3][n] = img[at + w + 1];
                }
            for (npy_intp k = 0; k < n; k++)
                top[k] = cand[0][k], best[k] = 0;
            for (int c = 1; c < 4; c++)
                for (npy_intp k = 0; k < n; k++) {
                    const T v = cand[c][k];
                    const int wins = (v > top[k]) | ((v != v) & (top[k] == top[k]));
                    top[k] = wins ? v : top[k];
                    best[k] = wins ? c : best[k];
                }
            n = 0;
            for (npy_intp p = p0; p < p1; p++)
                for (npy_intp q = q0; q < q1; q++, n++) {
                    y[p * g->ow + q] = top[n];
                    idx[p * g->ow + q] = corner[n] + (best[n] & 1) + (best[n] >> 1) * w;
                }
        }
    }
}

static void VG_T(maxpool_forward)(T *restrict y, npy_intp *restrict idx, const T *restrict x,
                                  const pooling *g)
{
    for (npy_intp m = 0; m < g->planes; m++) {
        const T *img = x + m * g->h * g->w;
        if (g->kh == 2 && g->kw == 2 && g->sh == 2 && g->sw == 2) { /* MaxPool2d(2), the course's */
            VG_T(maxpool_plane_2x2)(y + m * g->oh * g->ow, idx + m * g->oh * g->ow, img, g);
            continue;
        }
        for (npy_intp p = 0; p < g->oh; p++)
            for (npy_intp q = 0; q < g->ow; q++) {
                npy_intp best = p * g->sh * g->w + q * g->sw;
                T top = img[best];
                for (npy_intp i = 0; i < g->kh; i++) {
                    const npy_intp row = (p * g->sh + i) * g->w + q * g->sw;
                    for (npy_intp j = 0; j < g->kw; j++) {
                        /* Without branches, which random data mispredicts half the time: a larger value
                           wins, and so does the first NaN (as in np.argmax), which nothing then replaces. */
                        const T v = img[row + j];
                        const int wins = (v > top) | ((v != v) & (top == top));
                        top = wins ? v : top;
                        best = wins ? row + j : best;
                    }
                }
                const npy_intp o = (m * g->oh + p) * g->ow + q;
                y[o] = top;
                idx[o] = best;
            }
    }
}

/* idx already checked to lie within an image. Each plane of gx is zeroed here, just before its sums, while
   it is in cache (and on the thread that owns it), rather than all of gx beforehand. */
static void VG_T(maxpool_backward)(T *restrict gx, const T *restrict go, const npy_intp *restrict idx,
                                   const pooling *g)
{
    const npy_intp per_plane = g->oh * g->ow, plane = g->h * g->w;
    for (npy_intp m = 0; m < g->planes; m++) {
        T *restrict img = gx + m * plane;
        memset(img, 0, (size_t)plane * sizeof(T));
        for (npy_intp k = 0; k < per_plane; k++)
            img[idx[m * per_plane + k]] += go[m * per_plane + k];
    }
}

static void VG_T(avgpool_forward)(T *restrict y, const T *restrict x, const pooling *g)
{
    const T count = (T)(g->kh * g->kw);
    for (npy_intp m = 0; m < g->planes; m++) {
        const T *img = x + m * g->h * g->w;
        for (npy_intp p = 0; p < g->oh; p++)
            for (npy_intp q = 0; q < g->ow; q++) {
                T sum = 0;
                for (npy_intp i = 0; i < g->kh; i++)
                    for (npy_intp j = 0; j < g->kw; j++)
                        sum += img[(p * g->sh + i) * g->w + q * g->sw + j];
                y[(m * g->oh + p) * g->ow + q] = sum / count;
            }
    }
}

/* Each plane of gx is zeroed here, as in maxpool_backward. */
static void VG_T(avgpool_backward)(T *restrict gx, const T *restrict go, const pooling *g)
{
    const T count = (T)(g->kh * g->kw);
    for (npy_intp m = 0; m < g->planes; m++) {
        T *img = gx + m * g->h * g->w;
        memset(img, 0, (size_t)(g->h * g->w) * sizeof(T));
        for (npy_intp p = 0; p < g->oh; p++)
            for (npy_intp q = 0; q < g->ow; q++) {
                const T share = go[(m * g->oh + p) * g->ow + q] / count;
                for (npy_intp i = 0; i < g->kh; i++)
                    for (npy_intp j = 0; j < g->kw; j++)
                        img[(p * g->sh + i) * g->w + q * g->sw + j] += share;
            }
    }
}
