/*
 * conv.c — 2-D convolution (PyTorch's conv2d, a cross-correlation) of a batch of images, NCHW, with
 * stride and zero padding, forward and backward, through im2col and one BLAS matrix product per pass.
 *
 *     x: (N, C, H, W)   w: (O, C, kh, kw)   b: (O,) or none   y: (N, O, OH, OW)
 *     OH = (H + 2 ph - kh) / sh + 1, OW likewise
 *     y[n, o, p, q] = b[o] + sum_{c, i, j} w[o, c, i, j] xpad[n, c, p sh + i, q sw + j]
 *
 * im2col lays every window of the padded input out as a column: cols (C kh kw, N OH OW), row (c, i, j),
 * column (n, p, q). With w2 = w viewed as (O, C kh kw) the forward pass is one product Y = w2 @ cols of
 * shape (O, N OH OW), permuted to (N, O, OH, OW) while the bias is added. The gradients, with go2 = go
 * permuted to (O, N OH OW):
 *     gb = go summed over n, p, q
 *     gw = go2 @ cols^T                     (cols is saved by the forward pass)
 *     gx = col2im(w2^T @ go2)               (col2im adds each column back onto the windows it came from)
 * One big product per pass rather than one per image: at the course's sizes (6 or 16 output channels)
 * per-image products are too small for BLAS to run at speed, and each call costs a Python-level dispatch.
 */
#include <string.h>

#include "nn.h"

/* The sizes of one convolution. */
typedef struct {
    npy_intp n, c, h, w;  /* input */
    npy_intp o, kh, kw;   /* filters */
    npy_intp sh, sw, ph, pw;
    npy_intp oh, ow;      /* output */
    npy_intp p, np, k;    /* OH OW, N OH OW and C kh kw: checked for overflow by set_geometry */
} geometry;

/* The output columns q whose input column q sw + j - pw lies inside the image: [*lo, *hi). */
static void valid_columns(const geometry *g, npy_intp j, npy_intp *lo, npy_intp *hi)
{
    npy_intp first = g->pw - j, last = g->w - 1 + g->pw - j; /* q sw must lie in [first, last] */
    *lo = first > 0 ? (first - 1) / g->sw + 1 : 0; /* ceil(first / sw); first + sw - 1 could overflow */
    *hi = last >= 0 ? last / g->sw + 1 : 0;
    if (*hi > g->ow)
        *hi = g->ow;
    if (*lo > *hi)
        *lo = *hi;
}

/* ---- kernels ------------------------------------------------------------------------------------- */

#define DEFINE_CONV_KERNELS(T, S)                                                                       \
    /* x (N, C, H, W) -> cols (C kh kw, N OH OW); zero where a window hangs over the padding. */        \
    static void im2col_##S(T *restrict cols, const T *restrict x, const geometry *g)                   \
    {                                                                                                   \
        const npy_intp P = g->p, NP = g->np;                                                            \
        for (npy_intp c = 0; c < g->c; c++)                                                             \
            for (npy_intp i = 0; i < g->kh; i++)                                                        \
                for (npy_intp j = 0; j < g->kw; j++) {                                                  \
                    T *row = cols + ((c * g->kh + i) * g->kw + j) * NP;                                 \
                    npy_intp lo, hi;                                                                    \
                    valid_columns(g, j, &lo, &hi);                                                      \
                    for (npy_intp n = 0; n < g->n; n++)                                                 \
                        for (npy_intp p = 0; p < g->oh; p++) {                                          \
                            T *dst = row + n * P + p * g->ow;                                           \
                            npy_intp ih = p * g->sh + i - g->ph;                                        \
                            if (ih < 0 || ih >= g->h) {                                                 \
                                memset(dst, 0, sizeof(T) * (size_t)g->ow);                              \
                                continue;                                                               \
                            }                                                                           \
                            const T *src = x + ((n * g->c + c) * g->h + ih) * g->w;                     \
                            const npy_intp off = j - g->pw;                                             \
                            for (npy_intp q = 0; q < lo; q++)                                           \
                                dst[q] = 0;                                                             \
                            if (g->sw == 1)                                                             \
                                memcpy(dst + lo, src + lo + off, sizeof(T) * (size_t)(hi - lo));        \
                            else                                                                        \
                                for (npy_intp q = lo; q < hi; q++)                                      \
                                    dst[q] = src[q * g->sw + off];                                      \
                            for (npy_intp q = hi; q < g->ow; q++)                                       \
                                dst[q] = 0;                                                             \
                        }                                                                               \
                }                                                                                       \
    }                                                                                                   \
    /* gx (N, C, H, W), zero on entry, += every column of gcols (C kh kw, N OH OW) onto its window. */   \
    static void col2im_##S(T *restrict gx, const T *restrict gcols, const geometry *g)                 \
    {                                                                                                   \
        const npy_intp P = g->p, NP = g->np;                                                            \
        for (npy_intp c = 0; c < g->c; c++)                                                             \
            for (npy_intp i = 0; i < g->kh; i++)                                                        \
                for (npy_intp j = 0; j < g->kw; j++) {                                                  \
                    const T *row = gcols + ((c * g->kh + i) * g->kw + j) * NP;                          \
                    npy_intp lo, hi;                                                                    \
                    valid_columns(g, j, &lo, &hi);                                                      \
                    const npy_intp off = j - g->pw;                                                     \
                    for (npy_intp n = 0; n < g->n; n++)                                                 \
                        for (npy_intp p = 0; p < g->oh; p++) {                                          \
                            npy_intp ih = p * g->sh + i - g->ph;                                        \
                            if (ih < 0 || ih >= g->h)                                                   \
                                continue;                                                               \
                            const T *src = row + n * P + p * g->ow;                                     \
                            T *dst = gx + ((n * g->c + c) * g->h + ih) * g->w;                          \
                            for (npy_intp q = lo; q < hi; q++)                                          \
                                dst[q * g->sw + off] += src[q];                                         \
                        }                                                                               \
                }                                                                                       \
    }                                                                                                   \
    /* y[n, o, :] = prod[o, n P : (n + 1) P] + (b ? b[o] : 0): the product (O, N P) to (N, O, P). */    \
    static void unfold_output_##S(T *restrict y, const T *restrict prod, const T *b, npy_intp N,       \
                                  npy_intp O, npy_intp P)                                               \
    {                                                                                                   \
        for (npy_intp n = 0; n < N; n++)                                                                \
            for (npy_intp o = 0; o < O; o++) {                                                          \
                const T *src = prod + o * N * P + n * P;                                                \
                T *dst = y + (n * O + o) * P;                                                           \
                const T bias = b ? b[o] : 0;                                                            \
                for (npy_intp k = 0; k < P; k++)                                                        \
                    dst[k] = src[k] + bias;                                                             \
            }                                                                                           \
    }                                                                                                   \
    /* go2[o, n P + k] = go[n, o, k]: (N, O, P) to (O, N P). */                                         \
    static void fold_gradient_##S(T *restrict go2, const T *restrict go, npy_intp N, npy_intp O,       \
                                  npy_intp P)                                                           \
    {                                                                                                   \
        for (npy_intp n = 0; n < N; n++)                                                                \
            for (npy_intp o = 0; o < O; o++)                                                            \
                memcpy(go2 + o * N * P + n * P, go + (n * O + o) * P, sizeof(T) * (size_t)P);           \
    }                                                                                                   \
    /* gb[o] = sum of the row go2[o, :] (length N P), pairwise. */                                      \
    static void bias_gradient_##S(T *restrict gb, const T *restrict go2, npy_intp O, npy_intp NP)       \
    {                                                                                                   \
        for (npy_intp o = 0; o < O; o++)                                                                \
            gb[o] = vg_pairwise_sum_##S(go2 + o * NP, NP);                                              \
    }
VG_INSTANTIATE(DEFINE_CONV_KERNELS)

/* ---- boundary ------------------------------------------------------------------------------------ */

static const char *const stride_names[] = {"stride (rows)", "stride (columns)"};
static const char *const padding_names[] = {"padding (rows)", "padding (columns)"};

/* Read stride (2 ints >= 1) and padding (2 ints >= 0) from args[0..3] into g. */
static int parse_window(const char *op, PyObject *const *args, geometry *g)
{
    Py_ssize_t v[4];
    if (vg_parse_ints_at_least(op, stride_names, args, 2, 1, v) < 0 ||
        vg_parse_ints_at_least(op, padding_names, args + 2, 2, 0, v + 2) < 0)
        return -1;
    g->sh = v[0], g->sw = v[1], g->ph = v[2], g->pw = v[3];
    return 0;
}

/* Fill in the input and filter sizes from x's shape (dims) and w, check that they fit, and compute the
   output size and the sizes derived from it, refusing (ValueError) any that overflow: the output
   (N, O, OH, OW) and the im2col matrix (C kh kw, N OH OW) must be arrays of `itemsize`-byte elements that
   can exist, even when N = 0 makes them empty. */
static int set_geometry(const char *op, const npy_intp *xdims, PyArrayObject *w, npy_intp itemsize, geometry *g)
{
    if (vg_check_nchw(op, "the filters w (O, C, kh, kw)", w) < 0)
        return -1;
    g->n = xdims[0], g->c = xdims[1], g->h = xdims[2], g->w = xdims[3];
    g->o = PyArray_DIM(w, 0), g->kh = PyArray_DIM(w, 2), g->kw = PyArray_DIM(w, 3);
    if (PyArray_DIM(w, 1) != g->c) {
        PyObject *xs = PyArray_IntTupleFromIntp(4, (npy_intp *)xdims);
        PyObject *ws = PyArray_IntTupleFromIntp(4, PyArray_DIMS(w));
        if (xs && ws)
            PyErr_Format(PyExc_ValueError, "%s: the input %S has %zd channels but the filters %S expect "
                         "%zd (w is (out_channels, in_channels, kh, kw))", op, xs, (Py_ssize_t)g->c, ws,
                         (Py_ssize_t)PyArray_DIM(w, 1));
        Py_XDECREF(xs);
        Py_XDECREF(ws);
        return -1;
    }
    if (g->kh == 0 || g->kw == 0) {
        PyErr_Format(PyExc_ValueError, "%s: the filters must be at least 1x1, got %zdx%zd", op,
                     (Py_ssize_t)g->kh, (Py_ssize_t)g->kw);
        return -1;
    }
    if ((g->oh = vg_window_count(op, "height", g->h, g->kh, g->sh, g->ph)) < 0 ||
        (g->ow = vg_window_count(op, "width", g->w, g->kw, g->sw, g->pw)) < 0)
        return -1;
    const npy_intp y_dims[4] = {g->n, g->o, g->oh, g->ow};
    if (vg_check_shape(op, "the output", 4, y_dims, itemsize) < 0)
        return -1;
    /* The output fits, so do OH OW and (O > 0 or not) N OH OW, by the rule for empty arrays; checked anyway. */
    if (vg_mul_sizes(op, "the output's height x width", g->oh, g->ow, &g->p) < 0 ||
        vg_mul_sizes(op, "the batch x the output's height x width", g->n, g->p, &g->np) < 0 ||
        vg_mul_sizes(op, "the filters' channels x height", g->c, g->kh, &g->k) < 0 ||
        vg_mul_sizes(op, "the filters' channels x height x width", g->k, g->kw, &g->k) < 0)
        return -1;
    const npy_intp col_dims[2] = {g->k, g->np};
    if (vg_check_shape(op, "the im2col matrix (C kh kw, N OH OW)", 2, col_dims, itemsize) < 0) {
        PyObject *ys = PyArray_IntTupleFromIntp(4, (npy_intp *)y_dims);
        if (ys) { /* say which output needed it */
            PyObject *type, *value, *tb;
            PyErr_Fetch(&type, &value, &tb);
            PyErr_Format(PyExc_ValueError, "%S, for the output %S", value, ys);
            Py_XDECREF(type);
            Py_XDECREF(value);
            Py_XDECREF(tb);
        }
        Py_XDECREF(ys);
        return -1;
    }
    return 0;
}

/* A view of the contiguous filters w as the matrix (O, C kh kw). */
static PyObject *filters_as_matrix(PyArrayObject *w, const geometry *g)
{
    npy_intp dims[2] = {g->o, g->k};
    PyArray_Dims shape = {dims, 2};
    return PyArray_Newshape(w, &shape, NPY_CORDER);
}

/* a @ b (optionally a^T) through NumPy's BLAS, as a C-contiguous array (NULL with an exception naming the
   op). */
static PyArrayObject *product(const char *op, PyObject *a, int transpose_a, PyObject *b, int transpose_b)
{
    PyObject *lhs = transpose_a ? PyArray_Transpose((PyArrayObject *)a, NULL) : (Py_INCREF(a), a);
    PyObject *rhs = transpose_b ? PyArray_Transpose((PyArrayObject *)b, NULL) : (Py_INCREF(b), b);
    PyObject *c = (lhs && rhs) ? PyArray_MatrixProduct2(lhs, rhs, NULL) : NULL;
    Py_XDECREF(lhs);
    Py_XDECREF(rhs);
    if (c == NULL) {
        vg_name_memory_error(op);
        return NULL;
    }
    PyArrayObject *contiguous = PyArray_GETCONTIGUOUS((PyArrayObject *)c); /* np.dot's result already is */
    Py_DECREF(c);
    return contiguous;
}

/* conv2d_forward(x, w, b or None, sh, sw, ph, pw) -> (y, cols) */
VG_BOUNDARY(conv2d_forward)
{
    const char *op = "Convolution";
    PyArrayObject *in[3] = {NULL, NULL, NULL}, *cols = NULL, *prod = NULL, *y = NULL;
    PyObject *w2 = NULL, *result = NULL;
    geometry g;
    int t;
    if (vg_check_nargs(op, nargs, 7) < 0 || parse_window(op, args + 3, &g) < 0)
        return NULL;
    int with_bias = args[2] != Py_None;
    if ((t = vg_prepare(op, args, with_bias ? 3 : 2, in)) < 0)
        return NULL;
    if (vg_check_nchw(op, "the input x", in[0]) < 0 ||
        set_geometry(op, PyArray_DIMS(in[0]), in[1], vg_itemsize(t), &g) < 0)
        goto done;
    if (with_bias && (PyArray_NDIM(in[2]) != 1 || PyArray_DIM(in[2], 0) != g.o)) {
        PyObject *s = PyArray_IntTupleFromIntp(PyArray_NDIM(in[2]), PyArray_DIMS(in[2]));
        if (s)
            PyErr_Format(PyExc_ValueError, "%s: the bias must have shape (%zd,), one per filter, got %S", op,
                         (Py_ssize_t)g.o, s);
        Py_XDECREF(s);
        goto done;
    }
    npy_intp col_dims[2] = {g.k, g.np}, y_dims[4] = {g.n, g.o, g.oh, g.ow};
    if ((cols = vg_empty(op, 2, col_dims, t)) == NULL)
        goto done;
    NPY_BEGIN_THREADS_DEF;
    if (PyArray_SIZE(cols) > 0) { /* (an empty batch would still loop over every (c, i, j): C kh kw may be 2**58) */
        NPY_BEGIN_THREADS_THRESHOLDED(PyArray_SIZE(cols));
        VG_CALL(t, im2col, PyArray_DATA(cols), PyArray_DATA(in[0]), &g);
        NPY_END_THREADS;
    }
    if ((w2 = filters_as_matrix(in[1], &g)) == NULL ||
        (prod = product(op, w2, 0, (PyObject *)cols, 0)) == NULL || (y = vg_empty(op, 4, y_dims, t)) == NULL)
        goto done;
    NPY_BEGIN_THREADS_THRESHOLDED(PyArray_SIZE(y));
    VG_CALL(t, unfold_output, PyArray_DATA(y), PyArray_DATA(prod), with_bias ? PyArray_DATA(in[2]) : NULL,
            g.n, g.o, g.p);
    NPY_END_THREADS;
    result = PyTuple_Pack(2, (PyObject *)y, (PyObject *)cols);
done:
    vg_release(in, 3);
    Py_XDECREF(cols);
    Py_XDECREF(prod);
    Py_XDECREF(y);
    Py_XDECREF(w2);
    return result;
}

/* conv2d_backward(go, cols, w, xshape, sh, sw, ph, pw, with_bias, needs_x) -> (gx, gw) or (gx, gw, gb);
   gx is None when needs_x is false (the input is data: its gradient would be a product and a col2im wasted) */
VG_BOUNDARY(conv2d_backward)
{
    const char *op = "Convolution backward";
    PyArrayObject *in[3] = {NULL, NULL, NULL}; /* go, cols, w */
    PyArrayObject *go2 = NULL, *gw2 = NULL, *gcols = NULL, *gx = NULL, *gb = NULL;
    PyObject *w2 = NULL, *gw = NULL, *result = NULL;
    PyArray_Dims xshape = {NULL, 0};
    geometry g;
    int t, with_bias, needs_x;
    if (vg_check_nargs(op, nargs, 10) < 0 || parse_window(op, args + 4, &g) < 0 ||
        vg_parse_shape(op, "xshape", args[3], &xshape) < 0)
        return NULL;
    if ((with_bias = PyObject_IsTrue(args[8])) < 0 || (needs_x = PyObject_IsTrue(args[9])) < 0 ||
        (t = vg_prepare(op, args, 3, in)) < 0)
        goto done;
    if (xshape.len != 4) {
        PyErr_Format(PyExc_ValueError, "%s: xshape must have 4 dimensions (N, C, H, W), got %R", op, args[3]);
        goto done;
    }
    /* gx has xshape, and col2im indexes it with products of xshape's dimensions */
    if (vg_check_shape(op, "xshape", 4, xshape.ptr, vg_itemsize(t)) < 0 ||
        set_geometry(op, xshape.ptr, in[2], vg_itemsize(t), &g) < 0)
        goto done;
    npy_intp go_dims[4] = {g.n, g.o, g.oh, g.ow}, col_dims[2] = {g.k, g.np}, go2_dims[2] = {g.o, g.np};
    if (PyArray_NDIM(in[0]) != 4 || !PyArray_CompareLists(PyArray_DIMS(in[0]), go_dims, 4) ||
        PyArray_NDIM(in[1]) != 2 || !PyArray_CompareLists(PyArray_DIMS(in[1]), col_dims, 2)) {
        PyObject *want = PyArray_IntTupleFromIntp(4, go_dims);
        PyObject *got = PyArray_IntTupleFromIntp(PyArray_NDIM(in[0]), PyArray_DIMS(in[0]));
        if (want && got)
            PyErr_Format(PyExc_ValueError, "%s: expected an upstream gradient of shape %S and the saved cols "
                         "of shape (%zd, %zd), got %S", op, want, (Py_ssize_t)g.k, (Py_ssize_t)g.np, got);
        Py_XDECREF(want);
        Py_XDECREF(got);
        goto done;
    }
    if ((go2 = vg_empty(op, 2, go2_dims, t)) == NULL || (needs_x && (gx = vg_zeros(op, 4, xshape.ptr, t)) == NULL) ||
        (with_bias && (gb = vg_empty(op, 1, &g.o, t)) == NULL))
        goto done;
    NPY_BEGIN_THREADS_DEF;
    NPY_BEGIN_THREADS_THRESHOLDED(PyArray_SIZE(go2));
    VG_CALL(t, fold_gradient, PyArray_DATA(go2), PyArray_DATA(in[0]), g.n, g.o, g.p);
    if (with_bias)
        VG_CALL(t, bias_gradient, PyArray_DATA(gb), PyArray_DATA(go2), g.o, g.np);
    NPY_END_THREADS;
    if ((gw2 = product(op, (PyObject *)go2, 0, (PyObject *)in[1], 1)) == NULL)
        goto done;
    if (needs_x && PyArray_SIZE(gx) > 0 && g.np > 0) { /* else gx is empty, or all zeros */
        if ((w2 = filters_as_matrix(in[2], &g)) == NULL || (gcols = product(op, w2, 1, (PyObject *)go2, 0)) == NULL)
            goto done;
        NPY_BEGIN_THREADS_THRESHOLDED(PyArray_SIZE(gcols));
        VG_CALL(t, col2im, PyArray_DATA(gx), PyArray_DATA(gcols), &g);
        NPY_END_THREADS;
    }
    PyArray_Dims wshape = {PyArray_DIMS(in[2]), 4};
    if ((gw = PyArray_Newshape(gw2, &wshape, NPY_CORDER)) == NULL)
        goto done;
    PyObject *gx_or_none = needs_x ? (PyObject *)gx : Py_None;
    result = with_bias ? PyTuple_Pack(3, gx_or_none, gw, gb) : PyTuple_Pack(2, gx_or_none, gw);
done:
    PyDimMem_FREE(xshape.ptr);
    vg_release(in, 3);
    Py_XDECREF(go2);
    Py_XDECREF(gw2);
    Py_XDECREF(gcols);
    Py_XDECREF(gx);
    Py_XDECREF(gb);
    Py_XDECREF(w2);
    Py_XDECREF(gw);
    return result;
}
