/*
 * fused.c — the course MLP's multi-op pieces as single ops, forward and backward side by side. They compute
 * exactly what the chains of ops they replace compute (the same operations in the same order, so float64
 * losses agree with vugrad's to the last bits), with one graph node instead of three to ten.
 *
 *     Affine (Linear's BatchMM + Expand + Add):   y = x W^T + b     (W: m x k, b: m, x: n x k)
 *         gW = go^T x,   gb = sum_i go_i (rows added in order, as Expand's backward),   gx = go W
 *     LogSoftmax (logsoftmax's ten ops):   y_ij = (x_ij - m_i) - log sum_k exp(x_ik - m_i),  m_i = max_k x_ik
 *         gx_ij = go_ij - exp(y_ij) sum_k go_ik          (the max cancels out of the gradient)
 *     LogCELoss (logceloss's Select + Sum + Multiply by -1):   L = -sum_i lp[i, t_i]
 *         glp[i, j] = -go if j == t_i else 0
 */

#include "vgrad.h"

/* ---- kernels ------------------------------------------------------------------------------------- */

#define DEFINE_FUSED_KERNELS(T, S)                                                                      \
    /* y: rows x cols (x W^T from BLAS) += b on every row */                                            \
    static void add_bias_##S(T *restrict y, const T *restrict b, npy_intp rows, npy_intp cols)         \
    {                                                                                                   \
        for (npy_intp i = 0; i < rows; i++)                                                             \
            for (npy_intp j = 0; j < cols; j++)                                                         \
                y[i * cols + j] += b[j];                                                                \
    }                                                                                                   \
    /* x -> y: rows x cols (cols > 0); y doubles as scratch for the exponentials */                     \
    static void logsoftmax_forward_##S(T *restrict y, const T *restrict x, npy_intp rows, npy_intp cols) \
    {                                                                                                   \
        for (npy_intp i = 0; i < rows; i++) {                                                           \
            const T *xi = x + i * cols;                                                                 \
            T *yi = y + i * cols;                                                                       \
            T m = xi[0];                                                                                \
            for (npy_intp j = 1; j < cols && m == m; j++)                                               \
                if (!(xi[j] <= m)) /* larger, or NaN: as RowMax */                                      \
                    m = xi[j];                                                                          \
            vg_exp_##S(yi, xi, cols, 1, -m, -HUGE_VAL); /* exp(x - m) */                                \
            const T lse = log(vg_pairwise_sum_##S(yi, cols));                                           \
            for (npy_intp j = 0; j < cols; j++)                                                         \
                yi[j] = (xi[j] - m) - lse;                                                              \
        }                                                                                               \
    }                                                                                                   \
    static void logsoftmax_backward_##S(T *restrict gx, const T *restrict go, const T *restrict y,     \
                                        npy_intp rows, npy_intp cols)                                   \
    {                                                                                                   \
        for (npy_intp i = 0; i < rows; i++) {                                                           \
            const T *goi = go + i * cols, *yi = y + i * cols;                                           \
            T *g = gx + i * cols;                                                                       \
            const T total = vg_pairwise_sum_##S(goi, cols);                                             \
            vg_exp_##S(g, yi, cols, 1, 0, -HUGE_VAL); /* the softmax, exp(y) */                         \
            for (npy_intp j = 0; j < cols; j++)                                                         \
                g[j] = goi[j] - g[j] * total;                                                           \
        }                                                                                               \
    }                                                                                                   \
    /* scratch: rows values, for the pairwise sum of the selected log-probabilities */                  \
    static T logceloss_forward_##S(T *restrict scratch, const T *restrict lp, const npy_intp *restrict t, \
                                   npy_intp rows, npy_intp cols)                                        \
    {                                                                                                   \
        for (npy_intp i = 0; i < rows; i++)                                                             \
            scratch[i] = lp[i * cols + t[i]];                                                           \
        return -vg_pairwise_sum_##S(scratch, rows);                                                     \
    }                                                                                                   \
    /* glp zero-filled by the caller */                                                                 \
    static void logceloss_backward_##S(T *restrict glp, T go, const npy_intp *restrict t, npy_intp rows, \
                                       npy_intp cols)                                                   \
    {                                                                                                   \
        for (npy_intp i = 0; i < rows; i++)                                                             \
            glp[i * cols + t[i]] = -go;                                                                 \
    }
VG_INSTANTIATE(DEFINE_FUSED_KERNELS)

/* ---- boundary ------------------------------------------------------------------------------------ */

/* ValueError naming the op unless arr (a matrix) has `expected` columns. */
static int check_columns(const char *op, const char *what, PyArrayObject *arr, npy_intp expected)
{
    if (PyArray_DIM(arr, 1) == expected)
        return 0;
    PyObject *s = PyArray_IntTupleFromIntp(2, PyArray_DIMS(arr));
    if (s)
        PyErr_Format(PyExc_ValueError, "%s: %s of shape %S should have %zd columns", op, what, s,
                     (Py_ssize_t)expected);
    Py_XDECREF(s);
    return -1;
}

VG_BOUNDARY(affine_forward)
{
    const char *op = "Affine";
    PyArrayObject *in[3]; /* w, b, x */
    PyObject *y = NULL;
    int t;
    if (vg_check_nargs(op, nargs, 3) < 0 || (t = vg_prepare(op, args, 3, in)) < 0)
        return NULL;
    if (vg_check_ndim(op, "the weights", in[0], 2) < 0 || vg_check_ndim(op, "the input", in[2], 2) < 0 ||
        check_columns(op, "the input", in[2], PyArray_DIM(in[0], 1)) < 0)
        goto done;
    npy_intp m = PyArray_DIM(in[0], 0), n = PyArray_DIM(in[2], 0);
    if (PyArray_SIZE(in[1]) != m) {
        PyErr_Format(PyExc_ValueError, "%s: the bias has %zd elements; the weights need %zd", op,
                     (Py_ssize_t)PyArray_SIZE(in[1]), (Py_ssize_t)m);
        goto done;
    }
    if ((y = vg_product(in[2], 0, in[0], 1)) == NULL)
        goto done;
    VG_CALL(t, add_bias, PyArray_DATA((PyArrayObject *)y), PyArray_DATA(in[1]), n, m);
done:
    vg_release(in, 3);
    return y;
}

/* affine_backward(go, w, x, bshape, need_x) -> (gw, gb, gx or None) */
VG_BOUNDARY(affine_backward)
{
    const char *op = "Affine backward";
    PyArrayObject *in[3], *gb = NULL; /* go, w, x */
    PyArray_Dims bshape = {NULL, 0};
    PyObject *gw = NULL, *gx = NULL, *result = NULL;
    int t;
    if (vg_check_nargs(op, nargs, 5) < 0 || (t = vg_prepare(op, args, 3, in)) < 0)
        return NULL;
    int need_x = PyObject_IsTrue(args[4]);
    if (need_x < 0 || vg_parse_shape(op, "bshape", args[3], &bshape) < 0)
        goto done;
    if (vg_check_ndim(op, "the upstream gradient", in[0], 2) < 0 || vg_check_ndim(op, "the weights", in[1], 2) < 0 ||
        vg_check_ndim(op, "the input", in[2], 2) < 0 ||
        check_columns(op, "the input", in[2], PyArray_DIM(in[1], 1)) < 0 ||
        check_columns(op, "the upstream gradient", in[0], PyArray_DIM(in[1], 0)) < 0)
        goto done;
    npy_intp n = PyArray_DIM(in[0], 0), m = PyArray_DIM(in[0], 1);
    if (PyArray_DIM(in[2], 0) != n) {
        PyErr_Format(PyExc_ValueError, "%s: the upstream gradient has %zd rows, the input %zd", op, (Py_ssize_t)n,
                     (Py_ssize_t)PyArray_DIM(in[2], 0));
        goto done;
    }
    npy_intp bsize = 1;
    for (int i = 0; i < bshape.len; i++)
        bsize *= bshape.ptr[i];
    if (bsize != m) {
        PyErr_Format(PyExc_ValueError, "%s: bshape %R does not hold the %zd biases", op, args[3], (Py_ssize_t)m);
        goto done;
    }
    if ((gw = vg_product(in[0], 1, in[2], 0)) == NULL || (gb = vg_empty(op, bshape.len, bshape.ptr, t)) == NULL)
        goto done;
    VG_CALL(t, vg_sum_middle_axis, PyArray_DATA(gb), PyArray_DATA(in[0]), 1, n, m);
    if (need_x) {
        if ((gx = vg_product(in[0], 0, in[1], 0)) == NULL)
            goto done;
    }
    else {
        gx = Py_None;
        Py_INCREF(gx);
    }
    result = PyTuple_Pack(3, gw, (PyObject *)gb, gx);
done:
    PyDimMem_FREE(bshape.ptr);
    vg_release(in, 3);
    Py_XDECREF(gw);
    Py_XDECREF(gb);
    Py_XDECREF(gx);
    return result;
}

VG_BOUNDARY(logsoftmax_forward)
{
    const char *op = "LogSoftmax";
    PyArrayObject *x, *y = NULL;
    int t;
    if (vg_check_nargs(op, nargs, 1) < 0 || (t = vg_prepare(op, args, 1, &x)) < 0)
        return NULL;
    if (vg_check_ndim(op, "the input", x, 2) < 0)
        goto done;
    npy_intp rows = PyArray_DIM(x, 0), cols = PyArray_DIM(x, 1);
    if (cols == 0 && rows > 0) {
        PyErr_Format(PyExc_ValueError, "%s: the rows of a (%zd, 0) input are empty", op, (Py_ssize_t)rows);
        goto done;
    }
    if ((y = vg_empty(op, 2, PyArray_DIMS(x), t)) == NULL)
        goto done;
    NPY_BEGIN_THREADS_DEF;
    NPY_BEGIN_THREADS_THRESHOLDED(rows * cols);
    VG_CALL(t, logsoftmax_forward, PyArray_DATA(y), PyArray_DATA(x), rows, cols);
    NPY_END_THREADS;
done:
    Py_DECREF(x);
    return (PyObject *)y;
}

VG_BOUNDARY(logsoftmax_backward)
{
    const char *op = "LogSoftmax backward";
    PyArrayObject *in[2], *gx = NULL; /* go, y */
    int t;
    if (vg_check_nargs(op, nargs, 2) < 0 || (t = vg_prepare(op, args, 2, in)) < 0)
        return NULL;
    if (vg_check_ndim(op, "the output", in[1], 2) == 0 &&
        vg_check_same_shape(op, "the upstream gradient and the output", "", in[0], in[1]) == 0 &&
        (gx = vg_empty(op, 2, PyArray_DIMS(in[1]), t)) != NULL) {
        npy_intp rows = PyArray_DIM(in[1], 0), cols = PyArray_DIM(in[1], 1);
        NPY_BEGIN_THREADS_DEF;
        NPY_BEGIN_THREADS_THRESHOLDED(rows * cols);
        VG_CALL(t, logsoftmax_backward, PyArray_DATA(gx), PyArray_DATA(in[0]), PyArray_DATA(in[1]), rows, cols);
        NPY_END_THREADS;
    }
    vg_release(in, 2);
    return (PyObject *)gx;
}

VG_BOUNDARY(logceloss_forward)
{
    const char *op = "LogCELoss";
    PyArrayObject *lp, *targets = NULL, *scratch = NULL, *loss = NULL;
    int t;
    if (vg_check_nargs(op, nargs, 2) < 0 || (t = vg_prepare(op, args, 1, &lp)) < 0)
        return NULL;
    if (vg_check_ndim(op, "the log-probabilities", lp, 2) < 0)
        goto done;
    npy_intp rows = PyArray_DIM(lp, 0), cols = PyArray_DIM(lp, 1);
    if ((targets = vg_row_indices(op, args[1], rows, cols)) == NULL ||
        (scratch = vg_empty(op, 1, &rows, t)) == NULL || (loss = vg_empty(op, 0, NULL, t)) == NULL)
        goto done;
    if (t == NPY_FLOAT)
        *(float *)PyArray_DATA(loss) =
            logceloss_forward_f32(PyArray_DATA(scratch), PyArray_DATA(lp), PyArray_DATA(targets), rows, cols);
    else
        *(double *)PyArray_DATA(loss) =
            logceloss_forward_f64(PyArray_DATA(scratch), PyArray_DATA(lp), PyArray_DATA(targets), rows, cols);
done:
    Py_DECREF(lp);
    Py_XDECREF(targets);
    Py_XDECREF(scratch);
    return (PyObject *)loss;
}

/* logceloss_backward(go, targets, shape) */
VG_BOUNDARY(logceloss_backward)
{
    const char *op = "LogCELoss backward";
    PyArrayObject *go, *targets = NULL, *glp = NULL;
    npy_intp dims[2];
    PyArray_Dims shape = {NULL, 0};
    int t;
    if (vg_check_nargs(op, nargs, 3) < 0 || (t = vg_prepare(op, args, 1, &go)) < 0)
        return NULL;
    if (PyArray_SIZE(go) != 1) {
        PyErr_Format(PyExc_ValueError, "%s: the upstream gradient must be a scalar, got %zd elements", op,
                     (Py_ssize_t)PyArray_SIZE(go));
        goto done;
    }
    if (vg_parse_shape(op, "shape", args[2], &shape) < 0)
        goto done;
    if (shape.len != 2) {
        PyErr_Format(PyExc_ValueError, "%s: shape must have 2 dimensions, got %R", op, args[2]);
        goto done;
    }
    dims[0] = shape.ptr[0];
    dims[1] = shape.ptr[1];
    if ((targets = vg_row_indices(op, args[1], dims[0], dims[1])) == NULL ||
        (glp = vg_zeros(op, 2, dims, t)) == NULL)
        goto done;
    if (t == NPY_FLOAT)
        logceloss_backward_f32(PyArray_DATA(glp), *(float *)PyArray_DATA(go), PyArray_DATA(targets), dims[0],
                               dims[1]);
    else
        logceloss_backward_f64(PyArray_DATA(glp), *(double *)PyArray_DATA(go), PyArray_DATA(targets), dims[0],
                               dims[1]);
done:
    PyDimMem_FREE(shape.ptr);
    Py_DECREF(go);
    Py_XDECREF(targets);
    return (PyObject *)glp;
}
