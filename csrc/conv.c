/*
 * conv.c — 2-D convolution (PyTorch's conv2d, a cross-correlation) of a batch of images, NCHW, with stride
 * and zero padding, forward and backward.
 *
 *     x: (N, C, H, W)   w: (O, C, kh, kw)   b: (O,) or none   y: (N, O, OH, OW)
 *     OH = (H + 2 ph - kh) / sh + 1, OW likewise;  xpad = x with ph rows and pw columns of zeros around it
 *     y[n, o, p, q]  = b[o] + sum_{c, i, j} w[o, c, i, j] xpad[n, c, p sh + i, q sw + j]
 *     gb[o]          = sum_{n, p, q} go[n, o, p, q]
 *     gw[o, c, i, j] = sum_{n, p, q} go[n, o, p, q] xpad[n, c, p sh + i, q sw + j]
 *     gx[n, c, h, w] = sum of w[o, c, i, j] go[n, o, p, q] over the (o, i, j, p, q) with
 *                      p sh + i - ph = h and q sw + j - pw = w
 *
 * vgrad._C.conv2d and conv2d_grad (what vg.Conv2d runs) pick one of two ways by the shape:
 *   - direct (stride 1, the course's networks): the kernels of conv_kernels.h on one image at a time,
 *     which stays in the caches; the input gradient is a convolution of go, padded by kh - 1 - ph rows and
 *     kw - 1 - pw columns, with the filters flipped and their in/out channels swapped.
 *   - im2col + BLAS (strides, and many channels): im2col lays the windows of a chunk of images out as the
 *     columns of cols (C kh kw, G OH OW), sized to stay in the cache, and one BLAS product per chunk does
 *     y = w2 @ cols (w2 = w as (O, C kh kw)), gw += go2 @ cols^T, gcols = w2^T @ go2 (go2: go as
 *     (O, G OH OW)); col2im adds gcols back onto the windows.
 *   The rule (use_direct below) was measured on the machine the targets were set on (a 2-core Xeon with
 *   AVX-512): the direct kernels beat OpenBLAS while the filters are small, C kh kw <= 400 multiply-adds per
 *   output (the blitz CNN's convolutions have 75, 150 and 144); past that the BLAS product's better reuse
 *   of the filters wins, more so as O grows.
 * Both save only x (not the 25-times larger cols, which the backward pass rebuilds a chunk at a time) and
 * run their per-image loops on the thread pool (nn.h), with the GIL released; BLAS products are made
 * between those loops. The gradients' sums over the batch are made per chunk of images (a partition fixed by
 * N alone) and added in chunk order, so the results do not depend on the number of threads.
 *
 * The direct kernels compute some products that are then thrown away (see conv_kernels.h); where one of
 * them could turn a kept sum into NaN — an infinite or NaN pixel in an image (weight gradient), or such a
 * filter (input gradient) — that image, or that call, takes the plain loops instead.
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

/* The direct kernels' layout of the planes of one image: each padded to hp x wp and stored as one vector of
   `plane` values; the output (or gradient) position (p, q) is the "wide" position m = p wp + q, and the mr
   wide positions of a plane ((OH - 1) wp + OW, rounded up to 64 bytes) are computed. Tap t = (i, j) of a
   kh x kw filter reads the input at m + off[t], off[t] = i wp + j. `size` counts the C planes of an image
   and a margin of 64 bytes of zeros, which the rounded positions may read. */
typedef struct {
    npy_intp hp, wp, plane, mr, kk, size;
    npy_intp *off; /* kk entries */
} wide;

/* What the tasks of one call share (the kernels' ctx). Pointers are to float or double per the call's type. */
typedef struct {
    const geometry *g;
    int level;                /* vg_simd_level() */
    const void *x, *w, *b;    /* b may be NULL */
    const void *go;
    void *y, *gx;             /* gx NULL: not wanted */
    int relu;                 /* forward: y is the ReLU of the convolution (ConvolutionReLU) */
    const void *relu_y;       /* backward, not NULL: that ReLU's output y, so the gradient is go where y > 0 */
    /* direct path */
    wide fw, bw;              /* the layouts of x, and of go padded for the input gradient */
    const void *wflip;        /* the filters of the input gradient */
    int exact_gx;             /* the filters are not all finite: the input gradient by the plain loops */
    void *part;               /* per chunk of images: the sums of gw then gb */
    npy_intp chunk;           /* images per chunk */
    char *scratch;            /* per thread, scratch_bytes each */
    npy_intp scratch_bytes;
    /* im2col path: the chunk of images first .. first + count - 1 */
    npy_intp first;
    void *cols, *go2;         /* (C kh kw, ld) and (O, ld): ld = OH OW times the images of a full chunk */
    const void *prod, *gcols; /* vg_matmul's results (O, ldp) and (C kh kw, ldp): ldp = count OH OW */
    npy_intp ld, ldp;
} conv_job;

#define VG_TEMPLATE "conv_kernels.h"
#include "instantiate.h"

/* ---- geometry ------------------------------------------------------------------------------------------ */

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
   (N, O, OH, OW) must be an array of `itemsize`-byte elements that can exist, even when N = 0 makes it empty. */
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
    return 0;
}

/* ValueError unless the bias is (O,). */
static int check_bias(const char *op, PyArrayObject *b, const geometry *g)
{
    if (PyArray_NDIM(b) == 1 && PyArray_DIM(b, 0) == g->o)
        return 0;
    PyObject *s = PyArray_IntTupleFromIntp(PyArray_NDIM(b), PyArray_DIMS(b));
    if (s)
        PyErr_Format(PyExc_ValueError, "%s: the bias must have shape (%zd,), one per filter, got %S", op,
                     (Py_ssize_t)g->o, s);
    Py_XDECREF(s);
    return -1;
}

/* *out = a + b for sizes, or -1 with ValueError. */
static int add_sizes(const char *op, const char *what, npy_intp a, npy_intp b, npy_intp *out)
{
    if (!__builtin_add_overflow(a, b, out))
        return 0;
    PyErr_Format(PyExc_ValueError, "%s: %s (%zd + %zd) is too large", op, what, (Py_ssize_t)a, (Py_ssize_t)b);
    return -1;
}

/* The wide layout (see the struct) of `planes` planes of rows x cols padded to hp x wp, for an output of
   oh x ow and a kh x kw filter; L->off is left NULL (the caller sets it). 64 / itemsize elements of
   rounding and margin. */
static int set_wide(const char *op, wide *L, npy_intp planes, npy_intp hp, npy_intp wp, npy_intp oh, npy_intp ow,
                    const geometry *g, npy_intp itemsize)
{
    const npy_intp round = 64 / itemsize;
    npy_intp m, all;
    L->hp = hp, L->wp = wp, L->off = NULL;
    if (vg_mul_sizes(op, "a padded plane (rows x columns)", hp, wp, &L->plane) < 0 ||
        vg_mul_sizes(op, "the filter (kh x kw)", g->kh, g->kw, &L->kk) < 0 ||
        vg_mul_sizes(op, "the padded planes of an image", planes, L->plane, &all) < 0 ||
        add_sizes(op, "the padded planes of an image", all, round, &L->size) < 0)
        return -1;
    m = (oh - 1) * wp + ow; /* <= hp wp: oh <= hp and ow <= wp */
    L->mr = (m + round - 1) / round * round; /* <= plane + round - 1: fits, as size does */
    return 0;
}

/* The filter offsets of layout L (malloc'ed into L->off), or -1 with MemoryError. */
static int set_offsets(const char *op, wide *L, const geometry *g)
{
    if ((L->off = vg_scratch(op, L->kk * (npy_intp)sizeof(npy_intp))) == NULL)
        return -1;
    for (npy_intp i = 0; i < g->kh; i++)
        for (npy_intp j = 0; j < g->kw; j++)
            L->off[i * g->kw + j] = i * L->wp + j;
    return 0;
}

/* ---- which way ------------------------------------------------------------------------------------------ */

/* The direct kernels for stride 1 and small filters (see the top of the file). */
static int use_direct(const geometry *g)
{
    return g->sh == 1 && g->sw == 1 && g->k <= 400;
}

/* BLAS path: the images per chunk, so that cols (C kh kw, chunk OH OW) stays within about 2 MB (at least one
   image; N alone decides, not the number of threads). */
static npy_intp blas_chunk(const geometry *g, npy_intp itemsize)
{
    const double per_image = (double)g->k * (double)g->p * (double)itemsize;
    npy_intp chunk = per_image > 0 ? (npy_intp)((2 << 20) / per_image) : g->n;
    return chunk < 1 ? 1 : (chunk > g->n ? g->n : chunk);
}

/* Direct path, backward: the number of chunks the batch's gradient sums are split into (N alone decides). */
static npy_intp direct_chunks(const geometry *g)
{
    return g->n < 8 ? g->n : 8;
}

/* A view of the contiguous filters w as the matrix (O, C kh kw). */
static PyObject *filters_as_matrix(PyArrayObject *w, const geometry *g)
{
    npy_intp dims[2] = {g->o, g->k};
    PyArray_Dims shape = {dims, 2};
    return PyArray_Newshape(w, &shape, NPY_CORDER);
}

/* vg_matmul's result as a C-contiguous array (it is one), or NULL. Every matrix product of this file goes
   through vg_matmul, the one helper all ops share, so that a product gives what np.matmul gives (a NaN in
   a 1x1 filter makes NaNs, as it does in MatrixMultiply). */
static PyArrayObject *product(PyObject *module, const char *op, PyObject *a, int transpose_a, PyObject *b,
                              int transpose_b)
{
    PyObject *c = vg_matmul(module, op, a, transpose_a, b, transpose_b);
    if (c == NULL)
        return NULL;
    PyArrayObject *contiguous = PyArray_GETCONTIGUOUS((PyArrayObject *)c);
    Py_DECREF(c);
    return contiguous;
}

/* A view of the first `cols` columns of the C-ordered matrix m (a chunk's columns of a buffer sized for a
   full chunk), or NULL. */
static PyObject *first_columns(PyArrayObject *m, npy_intp cols)
{
    npy_intp dims[2] = {PyArray_DIM(m, 0), cols};
    PyArray_Descr *d = PyArray_DESCR(m);
    Py_INCREF(d);
    PyObject *v = PyArray_NewFromDescr(&PyArray_Type, d, 2, dims, PyArray_STRIDES(m), PyArray_DATA(m),
                                       NPY_ARRAY_ALIGNED | NPY_ARRAY_WRITEABLE, NULL);
    if (v != NULL && PyArray_SetBaseObject((PyArrayObject *)v, Py_NewRef(m)) < 0)
        Py_CLEAR(v);
    return v;
}

#define TASK(t, name) ((t) == NPY_FLOAT ? name##_f32 : name##_f64)

/* ---- conv2d: the forward pass -------------------------------------------------------------------------- */

/* y[n, o] = b[o] (or 0) everywhere, or its ReLU: the convolution of images with no channels. */
static void fill_bias(int t, void *y, const void *b, int relu, const geometry *g)
{
    for (npy_intp k = 0; k < g->n * g->o; k++)
        for (npy_intp i = 0; i < g->p; i++) {
            if (t == NPY_FLOAT) {
                const float v = b ? ((const float *)b)[k % g->o] : 0;
                ((float *)y)[k * g->p + i] = relu ? vg_relu_f32(v) : v;
            } else {
                const double v = b ? ((const double *)b)[k % g->o] : 0;
                ((double *)y)[k * g->p + i] = relu ? vg_relu_f64(v) : v;
            }
        }
}

/* The direct forward pass: allocates and frees its scratch; -1 with an exception. */
static int forward_direct(const char *op, int t, conv_job *J, npy_intp itemsize)
{
    const geometry *g = J->g;
    npy_intp out, bytes, all;
    if (set_wide(op, &J->fw, g->c, g->h + 2 * g->ph, g->w + 2 * g->pw, g->oh, g->ow, g, itemsize) < 0 ||
        vg_mul_sizes(op, "the wide output of an image", g->o, J->fw.mr, &out) < 0 ||
        add_sizes(op, "the scratch of an image", J->fw.size, out, &bytes) < 0 ||
        vg_mul_sizes(op, "the scratch of an image", bytes, itemsize, &bytes) < 0)
        return -1;
    const int threads = vg_threads_for(g->n, (double)g->np * (double)g->k * (double)g->o);
    if (vg_mul_sizes(op, "the scratch of the threads", bytes, threads, &all) < 0 || set_offsets(op, &J->fw, g) < 0)
        return -1;
    J->scratch_bytes = (bytes + 63) / 64 * 64;
    if ((J->scratch = vg_scratch(op, J->scratch_bytes * threads)) == NULL) {
        free(J->fw.off);
        return -1;
    }
    memset(J->scratch, 0, (size_t)(J->scratch_bytes * threads)); /* the padding, which no task writes */
    PyThreadState *gil = vg_release_gil(g->n * g->o * g->p);
    vg_parallel(threads, g->n, TASK(t, direct_forward_task), J);
    vg_restore_gil(gil);
    free(J->scratch);
    free(J->fw.off);
    return 0;
}

/* The im2col forward pass, a chunk of images at a time; -1 with an exception. The loops over images run on
   the thread pool without the GIL; the products are vg_matmul's (which releases the GIL for its BLAS call). */
static int forward_blas(PyObject *module, const char *op, int t, conv_job *J, PyArrayObject *w)
{
    const geometry *g = J->g;
    const npy_intp chunk = blas_chunk(g, vg_itemsize(t));
    npy_intp dims[2] = {g->k, 0};
    if (vg_mul_sizes(op, "a chunk of columns", chunk, g->p, &dims[1]) < 0)
        return -1;
    PyArrayObject *cols = vg_empty(op, 2, dims, t);
    PyObject *w2 = cols ? filters_as_matrix(w, g) : NULL;
    int status = w2 ? 0 : -1;
    J->cols = cols ? PyArray_DATA(cols) : NULL;
    J->ld = dims[1];
    for (J->first = 0; status == 0 && J->first < g->n; J->first += chunk) {
        const npy_intp count = g->n - J->first < chunk ? g->n - J->first : chunk;
        const int threads = vg_threads_for(count, (double)g->k * (double)g->p * count);
        const npy_intp work = g->k * g->p * count;
        PyThreadState *gil = vg_release_gil(work);
        vg_parallel(threads, count, TASK(t, im2col_task), J);
        vg_restore_gil(gil);
        PyObject *view = count == chunk ? Py_NewRef(cols) : first_columns(cols, count * g->p);
        PyArrayObject *prod = view ? product(module, op, w2, 0, view, 0) : NULL;
        Py_XDECREF(view);
        if (prod == NULL) {
            status = -1;
            break;
        }
        J->prod = PyArray_DATA(prod);
        J->ldp = count * g->p;
        gil = vg_release_gil(work);
        vg_parallel(threads, count, TASK(t, unfold_task), J);
        vg_restore_gil(gil);
        Py_DECREF(prod);
    }
    Py_XDECREF(cols);
    Py_XDECREF(w2);
    return status;
}

/* conv2d(x, w, b or None, sh, sw, ph, pw) -> y, and with `relu` its ReLU (conv2d_relu) */
static PyObject *convolve(PyObject *module, const char *op, PyObject *const *args, Py_ssize_t nargs, int relu)
{
    PyArrayObject *in[3] = {NULL, NULL, NULL}, *y = NULL;
    geometry g;
    int t;
    if (vg_check_nargs(op, nargs, 7) < 0 || parse_window(op, args + 3, &g) < 0)
        return NULL;
    const int with_bias = args[2] != Py_None;
    if ((t = vg_prepare(op, args, with_bias ? 3 : 2, in)) < 0)
        return NULL;
    const npy_intp itemsize = vg_itemsize(t);
    if (vg_check_nchw(op, "the input x", in[0]) < 0 || set_geometry(op, PyArray_DIMS(in[0]), in[1], itemsize, &g) < 0 ||
        (with_bias && check_bias(op, in[2], &g) < 0))
        goto done;
    npy_intp y_dims[4] = {g.n, g.o, g.oh, g.ow};
    if ((y = vg_empty(op, 4, y_dims, t)) == NULL || PyArray_SIZE(y) == 0)
        goto done;
    conv_job J = {.g = &g, .level = vg_simd_level(), .x = PyArray_DATA(in[0]), .w = PyArray_DATA(in[1]),
                  .b = with_bias ? PyArray_DATA(in[2]) : NULL, .y = PyArray_DATA(y), .relu = relu};
    int status;
    if (g.c == 0) { /* (no channels: kh kw may be anything, even too large to multiply) */
        fill_bias(t, J.y, J.b, relu, &g);
        status = 0;
    } else if (use_direct(&g))
        status = forward_direct(op, t, &J, itemsize);
    else
        status = forward_blas(module, op, t, &J, in[1]);
    if (status < 0)
        Py_CLEAR(y);
done:
    vg_release(in, 3);
    return (PyObject *)y;
}

VG_BOUNDARY(conv2d)
{
    return convolve(module, "Convolution", args, nargs, 0);
}

VG_BOUNDARY(conv2d_relu)
{
    return convolve(module, "ConvolutionReLU", args, nargs, 1);
}

/* ---- conv2d_grad: the backward pass -------------------------------------------------------------------- */

/* The direct backward pass into gw, gb and (J->gx not NULL) gx; -1 with an exception. */
static int backward_direct(const char *op, int t, conv_job *J, void *gw, void *gb, npy_intp itemsize)
{
    const geometry *g = J->g;
    const npy_intp chunks = direct_chunks(g), wsize = g->o * g->k;
    npy_intp bytes, part, gpad = 0, all;
    J->chunk = (g->n + chunks - 1) / chunks;
    J->scratch = J->part = NULL;
    J->wflip = NULL;
    J->fw.off = J->bw.off = NULL;
    if (set_wide(op, &J->fw, g->c, g->h + 2 * g->ph, g->w + 2 * g->pw, g->oh, g->ow, g, itemsize) < 0 ||
        vg_mul_sizes(op, "the wide gradient of an image", g->o, J->fw.mr, &bytes) < 0 ||
        add_sizes(op, "the scratch of an image", bytes, J->fw.size, &bytes) < 0)
        return -1;
    if (J->gx) { /* go padded by kh - 1 - ph and kw - 1 - pw (cropped where that is negative), to H + kh - 1 rows */
        npy_intp hg, wg, out;
        if (add_sizes(op, "the padded gradient's height", g->h, g->kh - 1, &hg) < 0 ||
            add_sizes(op, "the padded gradient's width", g->w, g->kw - 1, &wg) < 0 ||
            set_wide(op, &J->bw, g->o, hg, wg, g->h, g->w, g, itemsize) < 0 ||
            vg_mul_sizes(op, "the wide input gradient of an image", g->c, J->bw.mr, &out) < 0 ||
            add_sizes(op, "the scratch of an image", J->bw.size, out, &gpad) < 0 ||
            add_sizes(op, "the scratch of an image", bytes, gpad, &bytes) < 0)
            return -1;
    }
    npy_intp lanes; /* the weight gradient's lanes: wsize x 64 bytes (conv_kernels.h, wide_corr) */
    if (vg_mul_sizes(op, "the weight gradient's lanes", wsize, 64 / itemsize, &lanes) < 0 ||
        add_sizes(op, "the scratch of an image", bytes, lanes, &bytes) < 0 ||
        (J->relu_y && add_sizes(op, "the scratch of an image", bytes, g->o * g->p, &bytes) < 0))
        return -1;
    const int threads = vg_threads_for(chunks, (double)g->np * (double)wsize * (J->gx ? 2 : 1));
    if (vg_mul_sizes(op, "the scratch of an image", bytes, itemsize, &bytes) < 0 ||
        vg_mul_sizes(op, "the scratch of the threads", bytes, threads, &all) < 0 ||
        vg_mul_sizes(op, "the partial sums", chunks, wsize + g->o, &part) < 0 ||
        vg_mul_sizes(op, "the partial sums", part, itemsize, &part) < 0)
        return -1;
    int status = -1;
    J->scratch_bytes = (bytes + 63) / 64 * 64;
    if (set_offsets(op, &J->fw, g) < 0 || (J->gx && set_offsets(op, &J->bw, g) < 0) ||
        (J->scratch = vg_scratch(op, J->scratch_bytes * threads)) == NULL || (J->part = vg_scratch(op, part)) == NULL ||
        (J->gx && (J->wflip = vg_scratch(op, wsize * itemsize)) == NULL))
        goto done;
    memset(J->scratch, 0, (size_t)(J->scratch_bytes * threads)); /* the padding, which no task writes */
    PyThreadState *gil = vg_release_gil(g->n * g->o * g->p);
    if (J->gx) {
        if (t == NPY_FLOAT) {
            flip_filters_f32((float *)J->wflip, J->w, g);
            J->exact_gx = !all_finite_f32(J->w, wsize);
        } else {
            flip_filters_f64((double *)J->wflip, J->w, g);
            J->exact_gx = !all_finite_f64(J->w, wsize);
        }
    }
    vg_parallel(threads, chunks, TASK(t, direct_backward_task), J);
    if (t == NPY_FLOAT)
        sum_parts_f32(gw, gb, J->part, chunks, wsize, g->o);
    else
        sum_parts_f64(gw, gb, J->part, chunks, wsize, g->o);
    vg_restore_gil(gil);
    status = 0;
done:
    free(J->fw.off);
    free(J->bw.off);
    free(J->scratch);
    free(J->part);
    free((void *)J->wflip);
    return status;
}

/* gb[o] += the sum of the first `len` of row o of go2 (O, row stride ld): a chunk's part of the bias gradient,
   pairwise. */
static void add_row_sums(int t, void *gb, const void *go2, npy_intp O, npy_intp ld, npy_intp len)
{
    for (npy_intp o = 0; o < O; o++) {
        if (t == NPY_FLOAT)
            ((float *)gb)[o] += vg_pairwise_sum_f32((const float *)go2 + o * ld, len);
        else
            ((double *)gb)[o] += vg_pairwise_sum_f64((const double *)go2 + o * ld, len);
    }
}

/* a += b, n elements. */
static void add_to(int t, void *a, const void *b, npy_intp n)
{
    for (npy_intp i = 0; i < n; i++) {
        if (t == NPY_FLOAT)
            ((float *)a)[i] += ((const float *)b)[i];
        else
            ((double *)a)[i] += ((const double *)b)[i];
    }
}

/* The im2col backward pass, a chunk of images at a time; -1 with an exception. As forward_blas: the loops
   on the pool, the products by vg_matmul, the chunks' weight gradients added in chunk order. */
static int backward_blas(PyObject *module, const char *op, int t, conv_job *J, PyArrayObject *w, void *gw, void *gb)
{
    const geometry *g = J->g;
    const npy_intp chunk = blas_chunk(g, vg_itemsize(t)), wsize = g->o * g->k;
    npy_intp cdims[2] = {g->k, 0}, gdims[2] = {g->o, 0};
    if (vg_mul_sizes(op, "a chunk of columns", chunk, g->p, &cdims[1]) < 0)
        return -1;
    gdims[1] = cdims[1];
    PyArrayObject *cols = vg_empty(op, 2, cdims, t);
    PyArrayObject *go2 = cols ? vg_empty(op, 2, gdims, t) : NULL;
    PyObject *w2 = go2 ? filters_as_matrix(w, g) : NULL;
    int status = w2 ? 0 : -1;
    if (status == 0) {
        J->cols = PyArray_DATA(cols);
        J->go2 = PyArray_DATA(go2);
        J->ld = cdims[1];
        memset(gw, 0, (size_t)(wsize * vg_itemsize(t)));
        if (gb)
            memset(gb, 0, (size_t)(g->o * vg_itemsize(t)));
    }
    for (J->first = 0; status == 0 && J->first < g->n; J->first += chunk) {
        const npy_intp count = g->n - J->first < chunk ? g->n - J->first : chunk;
        const int threads = vg_threads_for(count, (double)g->k * (double)g->p * count);
        const npy_intp work = g->k * g->p * count;
        PyThreadState *gil = vg_release_gil(work);
        vg_parallel(threads, count, TASK(t, im2col_task), J);
        vg_parallel(threads, count, TASK(t, fold_task), J); /* go into go2 */
        vg_restore_gil(gil);
        PyObject *cview = count == chunk ? Py_NewRef(cols) : first_columns(cols, count * g->p);
        PyObject *gview = count == chunk ? Py_NewRef(go2) : first_columns(go2, count * g->p);
        PyArrayObject *gw_chunk = NULL, *gcols = NULL;
        if (cview && gview && (gw_chunk = product(module, op, gview, 0, cview, 1)) != NULL && /* go2 @ cols^T */
            (J->gx == NULL || (gcols = product(module, op, w2, 1, gview, 0)) != NULL)) {    /* w2^T @ go2 */
            if (gb)
                add_row_sums(t, gb, J->go2, g->o, J->ld, count * g->p);
            add_to(t, gw, PyArray_DATA(gw_chunk), wsize);
            if (gcols) {
                J->gcols = PyArray_DATA(gcols);
                J->ldp = count * g->p;
                gil = vg_release_gil(work);
                vg_parallel(threads, count, TASK(t, col2im_task), J);
                vg_restore_gil(gil);
            }
        } else
            status = -1;
        Py_XDECREF(cview);
        Py_XDECREF(gview);
        Py_XDECREF(gw_chunk);
        Py_XDECREF(gcols);
    }
    Py_XDECREF(cols);
    Py_XDECREF(go2);
    Py_XDECREF(w2);
    return status;
}

/* conv2d_grad(go, x, w, sh, sw, ph, pw, with_bias, needs_x) -> (gx or None, gw[, gb]); gx is None when
   needs_x is false (the input is data: its gradient would be work wasted). With `relu`, conv2d_relu_grad:
   the same arguments and then y, conv2d_relu's output, and go is the gradient of y. */
static PyObject *convolve_grad(PyObject *module, const char *op, PyObject *const *args, Py_ssize_t nargs, int relu)
{
    PyArrayObject *in[4] = {NULL, NULL, NULL, NULL}; /* go, x, w, and y with relu */
    PyArrayObject *gx = NULL, *gw = NULL, *gb = NULL, *masked = NULL;
    PyObject *result = NULL;
    geometry g;
    int t, with_bias, needs_x;
    if (vg_check_nargs(op, nargs, relu ? 10 : 9) < 0 || parse_window(op, args + 3, &g) < 0 ||
        (with_bias = PyObject_IsTrue(args[7])) < 0 || (needs_x = PyObject_IsTrue(args[8])) < 0)
        return NULL;
    PyObject *const arrays[4] = {args[0], args[1], args[2], relu ? args[9] : NULL};
    if ((t = vg_prepare(op, arrays, relu ? 4 : 3, in)) < 0)
        return NULL;
    const npy_intp itemsize = vg_itemsize(t);
    if (vg_check_nchw(op, "the input x", in[1]) < 0 || set_geometry(op, PyArray_DIMS(in[1]), in[2], itemsize, &g) < 0)
        goto done;
    npy_intp go_dims[4] = {g.n, g.o, g.oh, g.ow};
    if (PyArray_NDIM(in[0]) != 4 || !PyArray_CompareLists(PyArray_DIMS(in[0]), go_dims, 4)) {
        PyObject *want = PyArray_IntTupleFromIntp(4, go_dims);
        PyObject *got = PyArray_IntTupleFromIntp(PyArray_NDIM(in[0]), PyArray_DIMS(in[0]));
        if (want && got)
            PyErr_Format(PyExc_ValueError, "%s: expected an upstream gradient of shape %S, got %S", op, want, got);
        Py_XDECREF(want);
        Py_XDECREF(got);
        goto done;
    }
    if (relu && (PyArray_NDIM(in[3]) != 4 || !PyArray_CompareLists(PyArray_DIMS(in[3]), go_dims, 4))) {
        vg_shape_error(op, "the output y %s must have the upstream gradient's shape %s", VG_SHAPE(in[3]),
                       VG_SHAPE(in[0]));
        goto done;
    }
    if ((needs_x && (gx = vg_empty(op, 4, PyArray_DIMS(in[1]), t)) == NULL) ||
        (gw = vg_empty(op, 4, PyArray_DIMS(in[2]), t)) == NULL || (with_bias && (gb = vg_empty(op, 1, &g.o, t)) == NULL))
        goto done;
    conv_job J = {.g = &g, .level = vg_simd_level(), .x = PyArray_DATA(in[1]), .w = PyArray_DATA(in[2]),
                  .go = PyArray_DATA(in[0]), .gx = gx ? PyArray_DATA(gx) : NULL,
                  .relu_y = relu ? PyArray_DATA(in[3]) : NULL};
    void *gb_data = gb ? PyArray_DATA(gb) : NULL;
    int status = 0;
    if (g.np == 0 || g.o == 0 || g.c == 0) { /* no products at all: the sums are 0 (or of go alone) */
        if (relu && gb_data && g.np > 0 && g.o > 0) { /* the bias's gradient: of go through the ReLU */
            if ((masked = vg_empty(op, 4, go_dims, t)) == NULL)
                goto done;
            if (t == NPY_FLOAT)
                relu_grad_of_f32(PyArray_DATA(masked), J.go, J.relu_y, PyArray_SIZE(masked));
            else
                relu_grad_of_f64(PyArray_DATA(masked), J.go, J.relu_y, PyArray_SIZE(masked));
            J.go = PyArray_DATA(masked);
        }
        memset(PyArray_DATA(gw), 0, (size_t)(PyArray_SIZE(gw) * itemsize));
        if (gx)
            memset(PyArray_DATA(gx), 0, (size_t)(PyArray_SIZE(gx) * itemsize));
        if (gb_data) {
            memset(gb_data, 0, (size_t)(g.o * itemsize));
            /* (go is empty unless O and OH OW are not: then no image to count through, however large N is) */
            for (npy_intp n = 0; g.o > 0 && g.p > 0 && n < g.n; n++)
                add_row_sums(t, gb_data, (const char *)J.go + n * g.o * g.p * itemsize, g.o, g.p, g.p);
        }
    } else if (use_direct(&g))
        status = backward_direct(op, t, &J, PyArray_DATA(gw), gb_data, itemsize);
    else
        status = backward_blas(module, op, t, &J, in[2], PyArray_DATA(gw), gb_data);
    if (status == 0) {
        PyObject *gx_or_none = needs_x ? (PyObject *)gx : Py_None;
        result = with_bias ? PyTuple_Pack(3, gx_or_none, gw, gb) : PyTuple_Pack(2, gx_or_none, gw);
    }
done:
    vg_release(in, 4);
    Py_XDECREF(gx);
    Py_XDECREF(gw);
    Py_XDECREF(gb);
    Py_XDECREF(masked);
    return result;
}

VG_BOUNDARY(conv2d_grad)
{
    return convolve_grad(module, "Convolution backward", args, nargs, 0);
}

VG_BOUNDARY(conv2d_relu_grad)
{
    return convolve_grad(module, "ConvolutionReLU backward", args, nargs, 1);
}
