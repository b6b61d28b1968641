/*
 * pool.c — max and average pooling over windows of a batch of images (NCHW), forward and backward. No
 * padding; the windows are kh x kw, moved by (sh, sw); OH = (H - kh) / sh + 1, OW likewise.
 *
 *     MaxPooling: y[n, c, p, q] = max over the window at (p sh, q sw) of x[n, c]
 *                 idx[n, c, p, q] = h W + w of that maximum within the image x[n, c] (as PyTorch's
 *                 return_indices): the first maximum in row-major order, or the first NaN, as np.argmax
 *                 gx[n, c].flat[idx[n, c, p, q]] += go[n, c, p, q]   (windows may overlap: +=)
 *     AvgPooling: y[n, c, p, q] = (sum over the window) / (kh kw)
 *                 gx[n, c, window at (p, q)] += go[n, c, p, q] / (kh kw)
 */
#include "nn.h"

typedef struct {
    npy_intp planes, h, w; /* planes = N C images of H x W */
    npy_intp kh, kw, sh, sw;
    npy_intp oh, ow;
} pooling; /* every product of these that a kernel computes is checked by set_pooling / the boundary */

/* ---- kernels ------------------------------------------------------------------------------------- */

#define VG_TEMPLATE "pool_kernels.h"
#include "instantiate.h"

/* ---- the kernels on the thread pool (nn.h) -------------------------------------------------------------
   Every plane (one channel of one image) is pooled on its own, so a task is a run of whole planes, and each
   plane's result is the same whichever thread computes it and however the planes are grouped. */

enum pool_kind { MAX_FORWARD, MAX_BACKWARD, AVG_FORWARD, AVG_BACKWARD };

typedef struct {
    enum pool_kind kind;
    int t;
    const pooling *g;
    char *out;            /* y (forward) or gx (backward) */
    const char *in;       /* x (forward) or go (backward) */
    npy_intp *idx_out;    /* max forward: the indices it writes */
    const npy_intp *idx;  /* max backward: the indices it reads */
    npy_intp per_task;    /* planes per task */
} pool_job;

static void pool_task(void *ctx, npy_intp task, int thread)
{
    const pool_job *J = ctx;
    (void)thread;
    pooling sub = *J->g;
    const npy_intp first = task * J->per_task, itemsize = vg_itemsize(J->t);
    sub.planes = sub.planes - first < J->per_task ? sub.planes - first : J->per_task;
    const npy_intp image = first * sub.h * sub.w, pooled = first * sub.oh * sub.ow; /* elements before `first` */
    void *out_image = J->out + image * itemsize, *out_pooled = J->out + pooled * itemsize;
    const void *in_image = J->in + image * itemsize, *in_pooled = J->in + pooled * itemsize;
    switch (J->kind) {
    case MAX_FORWARD:
        VG_CALL(J->t, maxpool_forward, out_pooled, J->idx_out + pooled, in_image, &sub);
        break;
    case MAX_BACKWARD:
        VG_CALL(J->t, maxpool_backward, out_image, in_pooled, J->idx + pooled, &sub);
        break;
    case AVG_FORWARD:
        VG_CALL(J->t, avgpool_forward, out_pooled, in_image, &sub);
        break;
    case AVG_BACKWARD:
        VG_CALL(J->t, avgpool_backward, out_image, in_pooled, &sub);
        break;
    }
}

/* Run one pooling kernel over all planes, on as many threads as the work is worth; with the GIL released.
   `elements` is the larger of the input and output sizes, which the cost is reckoned from. */
static void run_pooling(pool_job *J, npy_intp elements)
{
    const npy_intp planes = J->g->planes;
    if (planes == 0)
        return;
    const double window = (double)J->g->kh * (double)J->g->kw;
    const int threads = vg_threads_for(planes, 10.0 * (double)elements * (J->kind == MAX_BACKWARD ? 1.0 : window));
    /* a few tasks per thread, so that one slowed by another process does not hold the others up */
    const npy_intp tasks = threads == 1 ? 1 : (planes < 4 * threads ? planes : 4 * threads);
    J->per_task = (planes + tasks - 1) / tasks;
    PyThreadState *gil = vg_release_gil(elements);
    vg_parallel(threads, (planes + J->per_task - 1) / J->per_task, pool_task, J);
    vg_restore_gil(gil);
}

/* ---- boundary ------------------------------------------------------------------------------------ */

static const char *const window_names[] = {"kernel_size (rows)", "kernel_size (columns)", "stride (rows)",
                                           "stride (columns)"};

/* Window sizes and strides from args[0..3] and the image size from dims (N, C, H, W), an array's shape or
   one checked by parse_xshape. The output (N, C, OH, OW) must be able to exist with elements of `itemsize`
   bytes (ValueError otherwise), so the kernels' products of sizes cannot overflow. */
static int set_pooling(const char *op, PyObject *const *args, const npy_intp *dims, npy_intp itemsize,
                       pooling *g)
{
    Py_ssize_t v[4];
    npy_intp area;
    if (vg_parse_ints_at_least(op, window_names, args, 4, 1, v) < 0)
        return -1;
    g->kh = v[0], g->kw = v[1], g->sh = v[2], g->sw = v[3];
    g->h = dims[2], g->w = dims[3];
    if (vg_mul_sizes(op, "the number of images (N x C)", dims[0], dims[1], &g->planes) < 0 ||
        (g->oh = vg_window_count(op, "height", g->h, g->kh, g->sh, 0)) < 0 ||
        (g->ow = vg_window_count(op, "width", g->w, g->kw, g->sw, 0)) < 0 ||
        vg_mul_sizes(op, "the window (kh x kw)", g->kh, g->kw, &area) < 0)
        return -1;
    const npy_intp out[4] = {dims[0], dims[1], g->oh, g->ow};
    return vg_check_shape(op, "the output", 4, out, itemsize);
}

/* ValueError unless go has the shape (N, C, OH, OW) the pooling produces. */
static int check_goutput(const char *op, PyArrayObject *go, const npy_intp *xdims, const pooling *g)
{
    npy_intp want[4] = {xdims[0], xdims[1], g->oh, g->ow};
    if (PyArray_NDIM(go) == 4 && PyArray_CompareLists(PyArray_DIMS(go), want, 4))
        return 0;
    PyObject *w = PyArray_IntTupleFromIntp(4, want);
    PyObject *s = PyArray_IntTupleFromIntp(PyArray_NDIM(go), PyArray_DIMS(go));
    if (w && s)
        PyErr_Format(PyExc_ValueError, "%s: expected an upstream gradient of shape %S, got %S", op, w, s);
    Py_XDECREF(w);
    Py_XDECREF(s);
    return -1;
}

/* xshape from a Python shape, checked to be (N, C, H, W) and the shape of an array of `itemsize`-byte
   elements that can exist: the gradient gx is allocated with it and indexed with products of its sizes. */
static int parse_xshape(const char *op, PyObject *obj, npy_intp itemsize, PyArray_Dims *xshape)
{
    if (vg_parse_shape(op, "xshape", obj, xshape) < 0)
        return -1;
    if (xshape->len == 4 && vg_check_shape(op, "xshape", 4, xshape->ptr, itemsize) == 0)
        return 0;
    if (xshape->len != 4)
        PyErr_Format(PyExc_ValueError, "%s: xshape must have 4 dimensions (N, C, H, W), got %R", op, obj);
    PyDimMem_FREE(xshape->ptr);
    xshape->ptr = NULL;
    return -1;
}

/* maxpool2d_forward(x, kh, kw, sh, sw) -> (y, indices) */
VG_BOUNDARY(maxpool2d_forward)
{
    const char *op = "MaxPooling";
    PyArrayObject *x, *y = NULL, *idx = NULL;
    PyObject *result = NULL;
    pooling g;
    int t;
    if (vg_check_nargs(op, nargs, 5) < 0 || (t = vg_prepare(op, args, 1, &x)) < 0)
        return NULL;
    /* (the indices are the larger elements: intp) */
    if (vg_check_nchw(op, "the input x", x) < 0 ||
        set_pooling(op, args + 1, PyArray_DIMS(x), (npy_intp)sizeof(npy_intp), &g) < 0)
        goto done;
    npy_intp dims[4] = {PyArray_DIM(x, 0), PyArray_DIM(x, 1), g.oh, g.ow};
    if ((y = vg_empty(op, 4, dims, t)) == NULL || (idx = vg_empty(op, 4, dims, NPY_INTP)) == NULL)
        goto done;
    pool_job J = {MAX_FORWARD, t, &g, PyArray_DATA(y), PyArray_DATA(x), PyArray_DATA(idx), NULL, 0};
    run_pooling(&J, PyArray_SIZE(x));
    result = PyTuple_Pack(2, y, idx);
done:
    Py_DECREF(x);
    Py_XDECREF(y);
    Py_XDECREF(idx);
    return result;
}

/* maxpool2d_backward(go, indices, xshape) -> gx */
VG_BOUNDARY(maxpool2d_backward)
{
    const char *op = "MaxPooling backward";
    PyArrayObject *go = NULL, *idx = NULL, *gx = NULL;
    PyArray_Dims xshape = {NULL, 0};
    int t;
    if (vg_check_nargs(op, nargs, 3) < 0 || (t = vg_prepare(op, args, 1, &go)) < 0)
        return NULL;
    if (parse_xshape(op, args[2], vg_itemsize(t), &xshape) < 0)
        goto done;
    if (vg_check_nchw(op, "the upstream gradient", go) < 0 ||
        (idx = vg_as_indices(op, "indices", args[1], PyArray_SIZE(go))) == NULL)
        goto done;
    if (PyArray_DIM(go, 0) != xshape.ptr[0] || PyArray_DIM(go, 1) != xshape.ptr[1]) {
        PyErr_Format(PyExc_ValueError, "%s: the upstream gradient and xshape %R differ in N or C", op, args[2]);
        goto done;
    }
    /* xshape is checked (parse_xshape): N C and H W cannot overflow */
    pooling g = {xshape.ptr[0] * xshape.ptr[1], xshape.ptr[2], xshape.ptr[3], 1, 1, 1, 1,
                 PyArray_DIM(go, 2), PyArray_DIM(go, 3)};
    const npy_intp *v = PyArray_DATA(idx), plane = g.h * g.w, n = PyArray_SIZE(idx); /* (a call: not per index) */
    for (npy_intp k = 0; k < n; k++) {
        if (v[k] < 0 || v[k] >= plane) {
            PyErr_Format(PyExc_IndexError, "%s: index %zd lies outside an image of %zd x %zd", op,
                         (Py_ssize_t)v[k], (Py_ssize_t)g.h, (Py_ssize_t)g.w);
            goto done;
        }
    }
    if (PyArray_SIZE(go) == 0) { /* gx is all zeros; the kernel would only count through N C empty planes */
        gx = vg_zeros(op, 4, xshape.ptr, t);
        goto done;
    }
    if ((gx = vg_empty(op, 4, xshape.ptr, t)) == NULL) /* the kernel zeroes each plane */
        goto done;
    pool_job J = {MAX_BACKWARD, t, &g, PyArray_DATA(gx), PyArray_DATA(go), NULL, v, 0};
    run_pooling(&J, PyArray_SIZE(gx));
done:
    PyDimMem_FREE(xshape.ptr);
    Py_XDECREF(go);
    Py_XDECREF(idx);
    return (PyObject *)gx;
}

/* avgpool2d_forward(x, kh, kw, sh, sw) -> y */
VG_BOUNDARY(avgpool2d_forward)
{
    const char *op = "AvgPooling";
    PyArrayObject *x, *y = NULL;
    pooling g;
    int t;
    if (vg_check_nargs(op, nargs, 5) < 0 || (t = vg_prepare(op, args, 1, &x)) < 0)
        return NULL;
    if (vg_check_nchw(op, "the input x", x) < 0 ||
        set_pooling(op, args + 1, PyArray_DIMS(x), vg_itemsize(t), &g) < 0)
        goto done;
    npy_intp dims[4] = {PyArray_DIM(x, 0), PyArray_DIM(x, 1), g.oh, g.ow};
    if ((y = vg_empty(op, 4, dims, t)) == NULL)
        goto done;
    pool_job J = {AVG_FORWARD, t, &g, PyArray_DATA(y), PyArray_DATA(x), NULL, NULL, 0};
    run_pooling(&J, PyArray_SIZE(x));
done:
    Py_DECREF(x);
    return (PyObject *)y;
}

/* avgpool2d_backward(go, xshape, kh, kw, sh, sw) -> gx */
VG_BOUNDARY(avgpool2d_backward)
{
    const char *op = "AvgPooling backward";
    PyArrayObject *go = NULL, *gx = NULL;
    PyArray_Dims xshape = {NULL, 0};
    pooling g;
    int t;
    if (vg_check_nargs(op, nargs, 6) < 0 || (t = vg_prepare(op, args, 1, &go)) < 0)
        return NULL;
    if (parse_xshape(op, args[1], vg_itemsize(t), &xshape) < 0 ||
        set_pooling(op, args + 2, xshape.ptr, vg_itemsize(t), &g) < 0 || check_goutput(op, go, xshape.ptr, &g) < 0 ||
        (gx = vg_empty(op, 4, xshape.ptr, t)) == NULL) /* the kernel zeroes each plane */
        goto done;
    pool_job J = {AVG_BACKWARD, t, &g, PyArray_DATA(gx), PyArray_DATA(go), NULL, NULL, 0};
    run_pooling(&J, PyArray_SIZE(gx));
done:
    PyDimMem_FREE(xshape.ptr);
    Py_XDECREF(go);
    return (PyObject *)gx;
}
