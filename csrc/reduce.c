/*
 * reduce.c — ops that sum or take maxima: Sum, RowSum, RowMax, Normalize; forward and backward side by side
 * (the kernels are in reduce_kernels.h, written once for float and double).
 *
 *     Sum:       y = sum_ij x_ij                          gx_ij = go              (go is a scalar)
 *     RowSum:    y_i = sum_j x_ij                         gx_ij = go_i
 *     RowMax:    y_i = max_j x_ij, idx_i = argmax_j       gx_ij = go_i if j == idx_i else 0
 *     Normalize: y_ij = x_ij / s_i, s_i = sum_j x_ij      gx_ij = go_ij / s_i - sum_k go_ik x_ik / s_i^2
 *
 * Sums are NumPy's own, in NumPy's order (npyloops.c): the kernels run NumPy's add loop on the runs np.sum
 * would give it, for the layouts where those runs are the rows (C-contiguous, aligned, native; for Sum
 * also Fortran order); for other layouts np.add.reduce itself sums the array as given, and Normalize's
 * backward, whose NumPy order depends on how go and x are laid out, declines to the Reference. RowMax
 * follows np.argmax: the first maximum wins, and a NaN counts as the maximum (the first NaN in a row is
 * taken). Dtypes other than float32/float64 are declined (the Reference keeps NumPy's dtypes).
 */
#include "vgrad.h"

/* ---- kernels ------------------------------------------------------------------------------------- */

/* The CNN kernels' pairwise sum (conv.c, nn.c). */
#define DEFINE_PAIRWISE_SUM(T, S)                                                                       \
    T vg_pairwise_sum_##S(const T *x, npy_intp n)                                                       \
    {                                                                                                   \
        if (n < 8) {                                                                                    \
            T r = 0;                                                                                    \
            for (npy_intp i = 0; i < n; i++)                                                            \
                r += x[i];                                                                              \
            return r;                                                                                   \
        }                                                                                               \
        if (n <= 128) { /* eight running sums, added as a balanced tree at the end */                   \
            T r[8];                                                                                     \
            for (int k = 0; k < 8; k++)                                                                 \
                r[k] = x[k];                                                                            \
            npy_intp i;                                                                                 \
            for (i = 8; i < n - (n % 8); i += 8)                                                        \
                for (int k = 0; k < 8; k++)                                                             \
                    r[k] += x[i + k];                                                                   \
            T res = ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7]));                  \
            for (; i < n; i++)                                                                          \
                res += x[i];                                                                            \
            return res;                                                                                 \
        }                                                                                               \
        npy_intp half = n / 2;                                                                          \
        half -= half % 8;                                                                               \
        return vg_pairwise_sum_##S(x, half) + vg_pairwise_sum_##S(x + half, n - half);                  \
    }
VG_INSTANTIATE(DEFINE_PAIRWISE_SUM)

#define T float
#define SFX f32
#include "reduce_kernels.h"
#undef T
#undef SFX
#define T double
#define SFX f64
#include "reduce_kernels.h"
#undef T
#undef SFX

/* ---- boundary ------------------------------------------------------------------------------------ */

/* Sum: x.sum() */
VG_BOUNDARY(sum_forward)
{
    int t;
    if (vg_check_nargs("Sum", nargs, 1) < 0 || (t = vg_compute_type_exact(module, "Sum", args, 1, VG_MIXED_OK)) < 0)
        return NULL;
    PyArrayObject *x;
    if (vg_is_plain_c(args[0], t) || vg_is_plain_f(args[0], t)) /* summed in memory order, as np.sum does */
        x = (PyArrayObject *)Py_NewRef(args[0]);
    else if (PyArray_Check(args[0]))
        return vg_add_reduce(module, args[0], -1, 0);
    else if ((x = vg_as_contiguous("Sum", args[0], t)) == NULL)
        return NULL;
    PyArrayObject *y = vg_empty("Sum", 0, NULL, t);
    if (y != NULL) {
        const vg_loops *L = &vg_numpy(module)->loops;
        npy_intp n = PyArray_SIZE(x);
        NPY_BEGIN_THREADS_DEF;
        NPY_BEGIN_THREADS_THRESHOLDED(n);
        if (t == NPY_FLOAT)
            *(float *)PyArray_DATA(y) = sum_forward_f32(L, PyArray_DATA(x), n);
        else
            *(double *)PyArray_DATA(y) = sum_forward_f64(L, PyArray_DATA(x), n);
        NPY_END_THREADS;
    }
    Py_DECREF(x);
    return (PyObject *)y;
}

VG_BOUNDARY(sum_backward)
{
    PyArrayObject *go, *gx = NULL;
    PyArray_Dims shape = {NULL, 0};
    int t;
    if (vg_check_nargs("Sum backward", nargs, 2) < 0 ||
        (t = vg_prepare_exact(module, "Sum backward", args, 1, &go, VG_MIXED_OK)) < 0)
        return NULL;
    if (PyArray_SIZE(go) != 1) {
        PyObject *s = PyArray_IntTupleFromIntp(PyArray_NDIM(go), PyArray_DIMS(go));
        if (s)
            PyErr_Format(PyExc_ValueError, "Sum backward: the upstream gradient must be a scalar, got shape %S",
                         s);
        Py_XDECREF(s);
        goto done;
    }
    if (vg_parse_shape("Sum backward", "xsize", args[1], &shape) < 0)
        goto done;
    if ((gx = vg_empty("Sum backward", shape.len, shape.ptr, t)) == NULL)
        goto done;
    npy_intp n = PyArray_SIZE(gx);
    NPY_BEGIN_THREADS_DEF;
    NPY_BEGIN_THREADS_THRESHOLDED(n);
    if (t == NPY_FLOAT)
        sum_backward_f32(PyArray_DATA(gx), *(float *)PyArray_DATA(go), n);
    else
        sum_backward_f64(PyArray_DATA(gx), *(double *)PyArray_DATA(go), n);
    NPY_END_THREADS;
done:
    PyDimMem_FREE(shape.ptr);
    Py_DECREF(go);
    return (PyObject *)gx;
}

/* The saved shape of a matrix input (xshape): two non-negative dimensions. */
static int parse_matrix_shape(const char *op, PyObject *obj, npy_intp dims[2])
{
    PyArray_Dims shape;
    if (vg_parse_shape(op, "xshape", obj, &shape) < 0)
        return -1;
    int ok = shape.len == 2;
    if (ok) {
        dims[0] = shape.ptr[0];
        dims[1] = shape.ptr[1];
    }
    else
        PyErr_Format(PyExc_ValueError, "%s: xshape must have 2 dimensions, got %R", op, obj);
    PyDimMem_FREE(shape.ptr);
    return ok ? 0 : -1;
}

/* Fail unless go is a vector with one element per row. */
static int check_row_gradient(const char *op, PyArrayObject *go, npy_intp rows)
{
    if (PyArray_NDIM(go) == 1 && PyArray_DIM(go, 0) == rows)
        return 0;
    PyObject *s = PyArray_IntTupleFromIntp(PyArray_NDIM(go), PyArray_DIMS(go));
    if (s)
        PyErr_Format(PyExc_ValueError, "%s: the upstream gradient must have shape (%zd,), got %S", op,
                     (Py_ssize_t)rows, s);
    Py_XDECREF(s);
    return -1;
}

/* A matrix argument, after its dtype was accepted: ValueError naming the op unless it has 2 dimensions. */
static int check_matrix_argument(const char *op, PyObject *obj)
{
    if (!PyArray_Check(obj))
        return 0; /* checked once converted */
    return vg_check_ndim(op, "the input", (PyArrayObject *)obj, 2);
}

/* RowSum: x.sum(axis=1) */
VG_BOUNDARY(rowsum_forward)
{
    PyArrayObject *x, *y = NULL;
    int t;
    if (vg_check_nargs("RowSum", nargs, 1) < 0 ||
        (t = vg_compute_type_exact(module, "RowSum", args, 1, VG_MIXED_OK)) < 0 ||
        check_matrix_argument("RowSum", args[0]) < 0)
        return NULL;
    if (PyArray_Check(args[0]) && !vg_is_plain_c(args[0], t))
        return vg_add_reduce(module, args[0], 1, 0);
    if ((x = vg_as_contiguous("RowSum", args[0], t)) == NULL)
        return NULL;
    if (vg_check_ndim("RowSum", "the input", x, 2) == 0 && (y = vg_empty("RowSum", 1, PyArray_DIMS(x), t)) != NULL) {
        const vg_loops *L = &vg_numpy(module)->loops;
        npy_intp rows = PyArray_DIM(x, 0), cols = PyArray_DIM(x, 1);
        NPY_BEGIN_THREADS_DEF;
        NPY_BEGIN_THREADS_THRESHOLDED(rows * cols);
        if (t == NPY_FLOAT)
            rowsum_forward_f32(L, PyArray_DATA(y), PyArray_DATA(x), rows, cols);
        else
            rowsum_forward_f64(L, PyArray_DATA(y), PyArray_DATA(x), rows, cols);
        NPY_END_THREADS;
    }
    Py_DECREF(x);
    return (PyObject *)y;
}

VG_BOUNDARY(rowsum_backward)
{
    PyArrayObject *go, *gx = NULL;
    npy_intp dims[2];
    int t;
    if (vg_check_nargs("RowSum backward", nargs, 2) < 0 ||
        (t = vg_prepare_exact(module, "RowSum backward", args, 1, &go, VG_MIXED_OK)) < 0)
        return NULL;
    if (parse_matrix_shape("RowSum backward", args[1], dims) == 0 &&
        check_row_gradient("RowSum backward", go, dims[0]) == 0 &&
        (gx = vg_empty("RowSum backward", 2, dims, t)) != NULL) {
        NPY_BEGIN_THREADS_DEF;
        NPY_BEGIN_THREADS_THRESHOLDED(dims[0] * dims[1]);
        VG_CALL(t, rowsum_backward, PyArray_DATA(gx), PyArray_DATA(go), dims[0], dims[1]);
        NPY_END_THREADS;
    }
    Py_DECREF(go);
    return (PyObject *)gx;
}

/* RowMax: (np.amax(x, axis=1), np.argmax(x, axis=1)) */
VG_BOUNDARY(rowmax_forward)
{
    PyArrayObject *x, *idx = NULL;
    PyObject *y = NULL, *result = NULL;
    int t;
    if (vg_check_nargs("RowMax", nargs, 1) < 0 ||
        (t = vg_prepare_exact(module, "RowMax", args, 1, &x, VG_MIXED_OK)) < 0)
        return NULL;
    if (vg_check_ndim("RowMax", "the input", x, 2) < 0)
        goto done;
    npy_intp rows = PyArray_DIM(x, 0), cols = PyArray_DIM(x, 1);
    if (cols == 0 && rows > 0) {
        PyErr_Format(PyExc_ValueError, "RowMax: the rows of a (%zd, 0) input are empty and have no maximum",
                     (Py_ssize_t)rows);
        goto done;
    }
    if ((y = (PyObject *)vg_empty("RowMax", 1, &rows, t)) == NULL ||
        (idx = vg_empty("RowMax", 1, &rows, NPY_INTP)) == NULL)
        goto done;
    NPY_BEGIN_THREADS_DEF;
    NPY_BEGIN_THREADS_THRESHOLDED(rows * cols);
    int signed_zero_tie = VG_CALL(t, rowmax_forward, PyArray_DATA((PyArrayObject *)y), PyArray_DATA(idx),
                                  PyArray_DATA(x), rows, cols);
    NPY_END_THREADS;
    if (signed_zero_tie) /* which zero np.amax returns depends on its SIMD lanes: ask it */
        Py_XSETREF(y, vg_maximum_reduce(module, PyArray_Check(args[0]) ? args[0] : (PyObject *)x, 1));
    if (y != NULL)
        result = PyTuple_Pack(2, y, idx);
done:
    Py_DECREF(x);
    Py_XDECREF(y);
    Py_XDECREF(idx);
    return result;
}

VG_BOUNDARY(rowmax_backward)
{
    const char *op = "RowMax backward";
    PyArrayObject *go, *idx = NULL, *gx = NULL;
    npy_intp dims[2];
    int t;
    if (vg_check_nargs(op, nargs, 3) < 0 || (t = vg_prepare_exact(module, op, args, 1, &go, VG_MIXED_OK)) < 0)
        return NULL;
    if (parse_matrix_shape(op, args[2], dims) < 0 || check_row_gradient(op, go, dims[0]) < 0 ||
        (idx = vg_as_indices(op, "idxs", args[1], dims[0])) == NULL)
        goto fail;
    const npy_intp *where = PyArray_DATA(idx);
    for (npy_intp i = 0; i < dims[0]; i++) {
        if (where[i] < 0 || where[i] >= dims[1]) {
            PyErr_Format(PyExc_IndexError, "%s: idxs[%zd] = %zd is out of range for rows of length %zd", op,
                         (Py_ssize_t)i, (Py_ssize_t)where[i], (Py_ssize_t)dims[1]);
            goto fail;
        }
    }
    if ((gx = vg_zeros(op, 2, dims, t)) == NULL)
        goto fail;
    VG_CALL(t, rowmax_backward, PyArray_DATA(gx), PyArray_DATA(go), where, dims[0], dims[1]);
fail:
    Py_DECREF(go);
    Py_XDECREF(idx);
    return (PyObject *)gx;
}

/* Normalize: (x / sumd, sumd) with sumd = x.sum(axis=1, keepdims=True) */
VG_BOUNDARY(normalize_forward)
{
    PyArrayObject *x = NULL, *y = NULL, *s = NULL;
    PyObject *result = NULL;
    int t;
    if (vg_check_nargs("Normalize", nargs, 1) < 0 ||
        (t = vg_compute_type_exact(module, "Normalize", args, 1, VG_MIXED_OK)) < 0 ||
        check_matrix_argument("Normalize", args[0]) < 0 || (x = vg_as_contiguous("Normalize", args[0], t)) == NULL)
        return NULL;
    if (vg_check_ndim("Normalize", "the input", x, 2) < 0)
        goto done;
    npy_intp rows = PyArray_DIM(x, 0), cols = PyArray_DIM(x, 1), sdims[2] = {rows, 1};
    const vg_loops *L = &vg_numpy(module)->loops;
    if (PyArray_Check(args[0]) && !vg_is_plain_c(args[0], t)) {
        /* the sums in NumPy's order for this layout */
        PyObject *sums = vg_add_reduce(module, args[0], 1, 1);
        s = sums == NULL ? NULL : vg_as_contiguous("Normalize", sums, t);
        Py_XDECREF(sums);
        if (s == NULL)
            goto done;
    }
    else {
        if ((s = vg_empty("Normalize", 2, sdims, t)) == NULL)
            goto done;
        if (t == NPY_FLOAT)
            rowsum_forward_f32(L, PyArray_DATA(s), PyArray_DATA(x), rows, cols);
        else
            rowsum_forward_f64(L, PyArray_DATA(s), PyArray_DATA(x), rows, cols);
    }
    if ((y = vg_empty("Normalize", 2, PyArray_DIMS(x), t)) == NULL)
        goto done;
    NPY_BEGIN_THREADS_DEF;
    NPY_BEGIN_THREADS_THRESHOLDED(rows * cols);
    VG_CALL(t, normalize_forward, PyArray_DATA(y), PyArray_DATA(x), PyArray_DATA(s), rows, cols);
    NPY_END_THREADS;
    if (PyArray_Check(args[0]) && PyArray_IS_F_CONTIGUOUS((PyArrayObject *)args[0]) &&
        !PyArray_IS_C_CONTIGUOUS((PyArrayObject *)args[0])) /* NumPy's x / sumd keeps x's Fortran order */
        Py_SETREF(y, (PyArrayObject *)PyArray_NewCopy(y, NPY_FORTRANORDER));
    if (y != NULL)
        result = PyTuple_Pack(2, y, s);
done:
    Py_XDECREF(x);
    Py_XDECREF(y);
    Py_XDECREF(s);
    return result;
}

/* An argument NumPy's go * x would read as a C-ordered array (so that the product it sums is C-ordered). */
static int c_ordered(PyObject *obj)
{
    return !PyArray_Check(obj) || PyArray_IS_C_CONTIGUOUS((PyArrayObject *)obj);
}

VG_BOUNDARY(normalize_backward)
{
    const char *op = "Normalize backward";
    PyArrayObject *in[3], *gx = NULL; /* go, x, sumd */
    int t;
    if (vg_check_nargs(op, nargs, 3) < 0 || (t = vg_prepare_exact(module, op, args, 3, in, VG_SAME_FLOAT)) < 0)
        return NULL;
    if (vg_check_ndim(op, "x", in[1], 2) < 0 ||
        vg_check_same_shape(op, "the upstream gradient and x", "", in[0], in[1]) < 0)
        goto done;
    npy_intp rows = PyArray_DIM(in[1], 0), cols = PyArray_DIM(in[1], 1);
    if (PyArray_SIZE(in[2]) != rows) {
        PyErr_Format(PyExc_ValueError, "%s: sumd must hold one sum per row (%zd), got %zd elements", op,
                     (Py_ssize_t)rows, (Py_ssize_t)PyArray_SIZE(in[2]));
        goto done;
    }
    if (t == NPY_DOUBLE && !(c_ordered(args[0]) && c_ordered(args[1]))) {
        vg_decline(module, op, "NumPy sums go * x in the order of their memory layout, which is not C order");
        goto done;
    }
    if ((gx = vg_empty(op, 2, PyArray_DIMS(in[1]), t)) == NULL)
        goto done;
    const vg_loops *L = &vg_numpy(module)->loops;
    NPY_BEGIN_THREADS_DEF;
    NPY_BEGIN_THREADS_THRESHOLDED(rows * cols);
    if (t == NPY_FLOAT)
        normalize_backward_f32(L, PyArray_DATA(gx), PyArray_DATA(in[0]), PyArray_DATA(in[1]), PyArray_DATA(in[2]),
                               rows, cols);
    else
        normalize_backward_f64(L, PyArray_DATA(gx), PyArray_DATA(in[0]), PyArray_DATA(in[1]), PyArray_DATA(in[2]),
                               rows, cols);
    NPY_END_THREADS;
done:
    vg_release(in, 3);
    return (PyObject *)gx;
}
