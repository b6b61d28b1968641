/*
 * fused.c — the course MLP's multi-op pieces as single ops, forward and backward side by side (kernels in
 * fused_kernels.h). Each performs the floating-point operations of the chain of vugrad ops it replaces, in
 * the same order, on arrays laid out as vugrad's would be, so float64 values and gradients are bit-identical
 * to the unfused graph (vg.unfused()) and to vugrad's; there is one graph node instead of three to ten.
 *
 *     Affine (Linear's BatchMM + Expand + Add):   y = np.matmul(x, w.T) + b      (w: m x k, b: m, x: n x k)
 *         gw = np.matmul(go.T, x),   gb = go.sum(axis=0) (Expand's gradient),   gx = np.matmul(go, w)
 *     LogSoftmax (logsoftmax's ten ops):   diff = x - rowmax(x),  y = diff - log(rowsum(exp(diff)))
 *         S = rowsum(-go),  gdiff = go + (S / sumd) * expd,  T = rowsum(-gdiff),
 *         gx = gdiff + T at each row's argmax                  (see logsoftmax_backward in fused_kernels.h)
 *     LogCELoss (logceloss's Select + Sum + Multiply by -1.0):   L = sum_i lp[i, t_i] * -1.0
 *         glp[i, j] = go * -1.0 if j == t_i else 0
 *
 * In vugrad an op's backward receives a C-ordered gradient (np.zeros plus the contributions), and the sums
 * inside these chains are over C-ordered intermediate arrays, so the backward kernels take go in C order
 * whatever its layout. LogSoftmax's forward sums exp(x - max), whose layout NumPy takes from x's: a float64 x
 * that is not C-ordered is declined to the op's Reference (the NumPy chain itself). Dtypes other than
 * float32/float64 are declined too, except for Affine's input x: its only use is in np.matmul, which promotes
 * it by itself, so the course's uint8 pixels stay on the fast path.
 */

#include "vgrad.h"

/* ---- kernels ------------------------------------------------------------------------------------- */

#define T float
#define SFX f32
#include "fused_kernels.h"
#undef T
#undef SFX
#define T double
#define SFX f64
#include "fused_kernels.h"
#undef T
#undef SFX

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

/* objs[0..n-1] as arrays for shape checks (ndarrays themselves, others converted): new references in out[],
   or -1 with out[] all NULL. */
static int as_arrays(const char *op, PyObject *const *objs, int n, int typenum, PyArrayObject **out)
{
    for (int i = 0; i < n; i++) {
        out[i] = PyArray_Check(objs[i]) ? (PyArrayObject *)Py_NewRef(objs[i]) : vg_as_contiguous(op, objs[i], typenum);
        if (out[i] == NULL) {
            vg_release(out, i);
            return -1;
        }
    }
    return 0;
}

/* The weights and bias (and go) must be float32/float64 (others are declined); the input x may be of any
   dtype np.matmul takes (the course feeds uint8 pixels): the products are np.matmul's own, which promotes,
   and come out float32 or float64, except for long double (declined too). */
static int check_input_dtype(PyObject *module, const char *op, PyObject *x)
{
    if (PyArray_Check(x) && PyArray_TYPE((PyArrayObject *)x) == NPY_LONGDOUBLE)
        return vg_decline(module, op, "long double inputs make long double products");
    return vg_compute_type(op, &x, 1) < 0 ? -1 : 0;
}

/* affine_forward(w, b, x) -> np.matmul(x, w.T) + b */
VG_BOUNDARY(affine_forward)
{
    const char *op = "Affine";
    PyArrayObject *in[3] = {NULL, NULL, NULL}, *bias = NULL; /* w, b, x */
    PyObject *y = NULL;
    int t;
    if (vg_check_nargs(op, nargs, 3) < 0 || (t = vg_compute_type_exact(module, op, args, 2, VG_MIXED_OK)) < 0 ||
        check_input_dtype(module, op, args[2]) < 0 || as_arrays(op, args, 3, NPY_DOUBLE, in) < 0)
        return NULL;
    if (vg_check_ndim(op, "the weights", in[0], 2) < 0 || vg_check_ndim(op, "the input", in[2], 2) < 0 ||
        check_columns(op, "the input", in[2], PyArray_DIM(in[0], 1)) < 0)
        goto fail;
    npy_intp m = PyArray_DIM(in[0], 0), n = PyArray_DIM(in[2], 0);
    if (PyArray_SIZE(in[1]) != m) {
        PyErr_Format(PyExc_ValueError, "%s: the bias has %zd elements; the weights need %zd", op,
                     (Py_ssize_t)PyArray_SIZE(in[1]), (Py_ssize_t)m);
        goto fail;
    }
    if ((y = vg_matmul(module, op, args[2], 0, args[0], 1)) == NULL)
        goto fail;
    /* the sum's type, as NumPy promotes the product's and the bias's */
    t = (PyArray_TYPE((PyArrayObject *)y) == NPY_FLOAT && t == NPY_FLOAT) ? NPY_FLOAT : NPY_DOUBLE;
    if ((bias = vg_as_contiguous(op, args[1], t)) == NULL)
        goto fail;
    if (PyArray_TYPE((PyArrayObject *)y) != t) /* x and w float32, b float64: the sum is float64 */
        Py_SETREF(y, PyArray_Cast((PyArrayObject *)y, t));
    if (y == NULL)
        goto fail;
    VG_CALL(t, affine_add_bias, PyArray_DATA((PyArrayObject *)y), PyArray_DATA(bias), n, m);
    goto done;
fail:
    Py_CLEAR(y);
done:
    vg_release(in, 3);
    Py_XDECREF(bias);
    return y;
}

/* affine_backward(go, w, x, bshape, need_x) -> (np.matmul(go.T, x), go.sum(axis=0) shaped bshape,
   np.matmul(go, w) or None) */
VG_BOUNDARY(affine_backward)
{
    const char *op = "Affine backward";
    PyArrayObject *in[3] = {NULL, NULL, NULL}, *go = NULL, *gb = NULL; /* go, w, x */
    PyArray_Dims bshape = {NULL, 0};
    PyObject *gw = NULL, *gx = NULL, *result = NULL;
    int t;
    if (vg_check_nargs(op, nargs, 5) < 0 || (t = vg_compute_type_exact(module, op, args, 2, VG_MIXED_OK)) < 0 ||
        check_input_dtype(module, op, args[2]) < 0 || as_arrays(op, args, 3, NPY_DOUBLE, in) < 0)
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
    /* the gradient BatchMM and Expand receive in vugrad: C-ordered, of its own dtype (the bias's gradient,
       go.sum(axis=0), keeps it; the products promote as np.matmul does) */
    int tg = vg_compute_type(op, args, 1);
    if (tg < 0 || (go = vg_as_contiguous(op, args[0], tg)) == NULL ||
        (gw = vg_matmul(module, op, (PyObject *)go, 1, args[2], 0)) == NULL ||
        (gb = vg_empty(op, bshape.len, bshape.ptr, tg)) == NULL)
        goto done;
    const vg_loops *L = &vg_numpy(module)->loops;
    if (tg == NPY_FLOAT)
        vg_sum_middle_axis_f32(L, PyArray_DATA(gb), PyArray_DATA(go), 1, n, m);
    else
        vg_sum_middle_axis_f64(L, PyArray_DATA(gb), PyArray_DATA(go), 1, n, m);
    if (need_x) {
        if ((gx = vg_matmul(module, op, (PyObject *)go, 0, args[1], 0)) == NULL)
            goto done;
    }
    else
        gx = Py_NewRef(Py_None);
    result = PyTuple_Pack(3, gw, (PyObject *)gb, gx);
done:
    PyDimMem_FREE(bshape.ptr);
    vg_release(in, 3);
    Py_XDECREF(go);
    Py_XDECREF(gw);
    Py_XDECREF(gb);
    Py_XDECREF(gx);
    return result;
}

/* logsoftmax_forward(x) -> (y, expd, sumd, idxs) */
VG_BOUNDARY(logsoftmax_forward)
{
    const char *op = "LogSoftmax";
    PyArrayObject *x = NULL, *out[5] = {NULL, NULL, NULL, NULL, NULL}; /* y, expd, sumd, idxs, lse */
    PyObject *result = NULL;
    int t;
    if (vg_check_nargs(op, nargs, 1) < 0 || (t = vg_compute_type_exact(module, op, args, 1, VG_MIXED_OK)) < 0 ||
        (x = vg_as_contiguous(op, args[0], t)) == NULL)
        return NULL;
    if (vg_check_ndim(op, "the input", x, 2) < 0)
        goto done;
    npy_intp rows = PyArray_DIM(x, 0), cols = PyArray_DIM(x, 1);
    if (cols == 0 && rows > 0) {
        PyErr_Format(PyExc_ValueError, "%s: the rows of a (%zd, 0) input are empty", op, (Py_ssize_t)rows);
        goto done;
    }
    if (t == NPY_DOUBLE && PyArray_Check(args[0]) && !PyArray_IS_C_CONTIGUOUS((PyArrayObject *)args[0])) {
        vg_decline(module, op, "NumPy lays exp(x - max) out, and sums it, in the order of x's memory layout");
        goto done;
    }
    if ((out[0] = vg_empty(op, 2, PyArray_DIMS(x), t)) == NULL ||
        (out[1] = vg_empty(op, 2, PyArray_DIMS(x), t)) == NULL || (out[2] = vg_empty(op, 1, &rows, t)) == NULL ||
        (out[3] = vg_empty(op, 1, &rows, NPY_INTP)) == NULL || (out[4] = vg_empty(op, 1, &rows, t)) == NULL)
        goto done;
    const vg_loops *L = &vg_numpy(module)->loops;
    NPY_BEGIN_THREADS_DEF;
    NPY_BEGIN_THREADS_THRESHOLDED(rows * cols);
    if (t == NPY_FLOAT)
        logsoftmax_forward_f32(L, PyArray_DATA(out[0]), PyArray_DATA(out[1]), PyArray_DATA(out[2]),
                               PyArray_DATA(out[4]), PyArray_DATA(out[3]), PyArray_DATA(x), rows, cols);
    else
        logsoftmax_forward_f64(L, PyArray_DATA(out[0]), PyArray_DATA(out[1]), PyArray_DATA(out[2]),
                               PyArray_DATA(out[4]), PyArray_DATA(out[3]), PyArray_DATA(x), rows, cols);
    NPY_END_THREADS;
    result = PyTuple_Pack(4, out[0], out[1], out[2], out[3]);
done:
    Py_XDECREF(x);
    vg_release(out, 5);
    return result;
}

/* logsoftmax_backward(go, expd, sumd, idxs) -> gx */
VG_BOUNDARY(logsoftmax_backward)
{
    const char *op = "LogSoftmax backward";
    PyArrayObject *in[3], *idxs = NULL, *gx = NULL; /* go, expd, sumd */
    int t;
    if (vg_check_nargs(op, nargs, 4) < 0 || (t = vg_prepare_exact(module, op, args, 3, in, VG_SAME_FLOAT)) < 0)
        return NULL;
    if (vg_check_ndim(op, "expd", in[1], 2) < 0 ||
        vg_check_same_shape(op, "the upstream gradient and expd", "", in[0], in[1]) < 0)
        goto done;
    npy_intp rows = PyArray_DIM(in[1], 0), cols = PyArray_DIM(in[1], 1);
    if (PyArray_SIZE(in[2]) != rows) {
        PyErr_Format(PyExc_ValueError, "%s: sumd must hold one sum per row (%zd), got %zd elements", op,
                     (Py_ssize_t)rows, (Py_ssize_t)PyArray_SIZE(in[2]));
        goto done;
    }
    if ((idxs = vg_row_indices(op, args[3], rows, cols)) == NULL ||
        (gx = vg_empty(op, 2, PyArray_DIMS(in[1]), t)) == NULL)
        goto done;
    if (rows * cols == 0) /* an empty gradient: nothing to compute, whatever the number of (empty) rows */
        goto done;
    const vg_loops *L = &vg_numpy(module)->loops;
    NPY_BEGIN_THREADS_DEF;
    NPY_BEGIN_THREADS_THRESHOLDED(rows * cols);
    if (t == NPY_FLOAT)
        logsoftmax_backward_f32(L, PyArray_DATA(gx), PyArray_DATA(in[0]), PyArray_DATA(in[1]), PyArray_DATA(in[2]),
                                PyArray_DATA(idxs), rows, cols);
    else
        logsoftmax_backward_f64(L, PyArray_DATA(gx), PyArray_DATA(in[0]), PyArray_DATA(in[1]), PyArray_DATA(in[2]),
                                PyArray_DATA(idxs), rows, cols);
    NPY_END_THREADS;
done:
    vg_release(in, 3);
    Py_XDECREF(idxs);
    return (PyObject *)gx;
}

/* logceloss_forward(logprobs, targets) -> np.asarray(logprobs[arange, targets].sum()) * -1.0 */
VG_BOUNDARY(logceloss_forward)
{
    const char *op = "LogCELoss";
    PyArrayObject *lp, *targets = NULL, *picked = NULL, *loss = NULL;
    int t;
    if (vg_check_nargs(op, nargs, 2) < 0 || (t = vg_prepare_exact(module, op, args, 1, &lp, VG_MIXED_OK)) < 0)
        return NULL;
    if (vg_check_ndim(op, "the log-probabilities", lp, 2) < 0)
        goto done;
    npy_intp rows = PyArray_DIM(lp, 0), cols = PyArray_DIM(lp, 1);
    if ((targets = vg_row_indices(op, args[1], rows, cols)) == NULL ||
        (picked = vg_empty(op, 1, &rows, t)) == NULL || (loss = vg_empty(op, 0, NULL, t)) == NULL)
        goto done;
    const vg_loops *L = &vg_numpy(module)->loops;
    if (t == NPY_FLOAT)
        *(float *)PyArray_DATA(loss) =
            logceloss_forward_f32(L, PyArray_DATA(picked), PyArray_DATA(lp), PyArray_DATA(targets), rows, cols);
    else
        *(double *)PyArray_DATA(loss) =
            logceloss_forward_f64(L, PyArray_DATA(picked), PyArray_DATA(lp), PyArray_DATA(targets), rows, cols);
done:
    Py_DECREF(lp);
    Py_XDECREF(targets);
    Py_XDECREF(picked);
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
    if (vg_check_nargs(op, nargs, 3) < 0 || (t = vg_prepare_exact(module, op, args, 1, &go, VG_MIXED_OK)) < 0)
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
