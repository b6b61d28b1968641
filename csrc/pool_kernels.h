/*
 * pool_kernels.h — the kernels of max and average pooling for one element type T (instantiated by pool.c
 * through instantiate.h; pool.c's top comment gives the formulas and struct pooling the geometry). One
 * plane (n, c) at a time, so pool.c can hand planes to the thread pool; forward beside backward.
 */

static void VG_T(maxpool_forward)(T *restrict y, npy_intp *restrict idx, const T *restrict x,
                                  const pooling *g)
{
    for (npy_intp m = 0; m < g->planes; m++) {
        const T *img = x + m * g->h * g->w;
        for (npy_intp p = 0; p < g->oh; p++)
            for (npy_intp q = 0; q < g->ow; q++) {
                npy_intp best = p * g->sh * g->w + q * g->sw;
                T top = img[best];
                for (npy_intp i = 0; i < g->kh && top == top; i++) {
                    const npy_intp row = (p * g->sh + i) * g->w + q * g->sw;
                    for (npy_intp j = 0; j < g->kw; j++) {
                        const T v = img[row + j];
                        if (v > top || v != v) { /* a NaN is the maximum, as in np.argmax */
                            top = v;
                            best = row + j;
                            if (v != v)
                                break;
                        }
                    }
                }
                const npy_intp o = (m * g->oh + p) * g->ow + q;
                y[o] = top;
                idx[o] = best;
            }
    }
}

/* gx zero on entry; idx already checked to lie within an image. */
static void VG_T(maxpool_backward)(T *restrict gx, const T *restrict go, const npy_intp *restrict idx,
                                   const pooling *g)
{
    const npy_intp per_plane = g->oh * g->ow;
    for (npy_intp m = 0; m < g->planes; m++)
        for (npy_intp k = 0; k < per_plane; k++)
            gx[m * g->h * g->w + idx[m * per_plane + k]] += go[m * per_plane + k];
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

/* gx zero on entry. */
static void VG_T(avgpool_backward)(T *restrict gx, const T *restrict go, const pooling *g)
{
    const T count = (T)(g->kh * g->kw);
    for (npy_intp m = 0; m < g->planes; m++) {
        T *img = gx + m * g->h * g->w;
        for (npy_intp p = 0; p < g->oh; p++)
            for (npy_intp q = 0; q < g->ow; q++) {
                const T share = go[(m * g->oh + p) * g->ow + q] / count;
                for (npy_intp i = 0; i < g->kh; i++)
                    for (npy_intp j = 0; j < g->kw; j++)
                        img[(p * g->sh + i) * g->w + q * g->sw + j] += share;
            }
    }
}
