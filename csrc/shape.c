/*
 * shape.c — ops that move values around without arithmetic: Expand, Squeeze, Unsqueeze.
 *
 *     Expand(dim, repeats): y = x repeated `repeats` times along its singleton dimension dim
 *                           gx = go summed over dim (keeping it as a singleton dimension)
 *     Squeeze(dim):         y = x without its singleton dimension dim      gx = unsqueeze(go, dim)
 *     Unsqueeze(dim):       y = x with a new singleton dimension at dim    gx = squeeze(go, dim)
 *     Id:                   y = x (the same object)                        gx = go
 *
 * Squeeze and Unsqueeze return views that share memory with their input and keep its dtype, as NumPy's
 * squeeze and expand_dims do. Expand copies float32 and float64 (np.repeat keeps other dtypes: those are
 * declined to the op's Reference). Expand's gradient is go.sum(axis=dim, keepdims=True) in NumPy's order:
 * vg_sum_middle_axis for C-contiguous go, np.add.reduce itself for other layouts.
 */
#include <string.h>

#include "vgrad.h"

/* Split dims around axis: outer = prod(dims[:axis]), inner = prod(dims[axis+1:]). */
static void split_at_axis(PyArrayObject *arr, int axis, npy_intp *outer, npy_intp *inner)
{
    *outer = *inner = 1;
    for (int i = 0; i < axis; i++)
        *outer *= PyArray_DIM(arr, i);
    for (int i = axis + 1; i < PyArray_NDIM(arr); i++)
        *inner *= PyArray_DIM(arr, i);
}

/* ---- kernels ------------------------------------------------------------------------------------- */

/* x: outer x 1 x inner -> y: outer x repeats x inner; type-agnostic, block copies of `inner` items. */
static void expand_forward_kernel(char *restrict y, const char *restrict x, npy_intp outer, npy_intp repeats,
                                  npy_intp inner, npy_intp itemsize)
{
    const npy_intp block = inner * itemsize;
    for (npy_intp o = 0; o < outer; o++)
        for (npy_intp r = 0; r < repeats; r++)
            memcpy(y + (o * repeats + r) * block, x + o * block, (size_t)block);
}

/* The gradient, go summed over the expanded axis, is vg_sum_middle_axis (reduce_kernels.h). */

/* ---- boundary ------------------------------------------------------------------------------------ */

VG_BOUNDARY(expand_forward)
{
    PyArrayObject *x, *y = NULL;
    Py_ssize_t dim, repeats;
    int t;
    if (vg_check_nargs("Expand", nargs, 3) < 0 || vg_parse_int("Expand", "dim", args[1], &dim) < 0 ||
        vg_parse_int("Expand", "repeats", args[2], &repeats) < 0 ||
        (t = vg_prepare_exact(module, "Expand", args, 1, &x, VG_MIXED_OK)) < 0)
        return NULL;
    if (vg_normalize_axis("Expand", &dim, PyArray_NDIM(x)) < 0)
        goto done;
    if (repeats < 0) {
        PyErr_Format(PyExc_ValueError, "Expand: repeats must be >= 0, got %zd", repeats);
        goto done;
    }
    if (PyArray_DIM(x, (int)dim) != 1) {
        PyObject *s = PyArray_IntTupleFromIntp(PyArray_NDIM(x), PyArray_DIMS(x));
        if (s)
            PyErr_Format(PyExc_ValueError,
                         "Expand: can only expand a singleton dimension, but dim %zd of shape %S has size %zd",
                         dim, s, (Py_ssize_t)PyArray_DIM(x, (int)dim));
        Py_XDECREF(s);
        goto done;
    }
    npy_intp dims[NPY_MAXDIMS], outer, inner;
    memcpy(dims, PyArray_DIMS(x), sizeof(npy_intp) * PyArray_NDIM(x));
    dims[dim] = repeats;
    if ((y = vg_empty("Expand", PyArray_NDIM(x), dims, t)) == NULL)
        goto done;
    if (PyArray_SIZE(y) == 0) /* nothing to copy: the loops would still count through outer x repeats */
        goto done;
    split_at_axis(x, (int)dim, &outer, &inner);
    NPY_BEGIN_THREADS_DEF;
    NPY_BEGIN_THREADS_THRESHOLDED(PyArray_SIZE(y));
    expand_forward_kernel(PyArray_DATA(y), PyArray_DATA(x), outer, repeats, inner, PyArray_ITEMSIZE(x));
    NPY_END_THREADS;
done:
    Py_DECREF(x);
    return (PyObject *)y;
}

VG_BOUNDARY(expand_backward)
{
    const char *op = "Expand backward";
    PyArrayObject *go = NULL, *gx = NULL;
    Py_ssize_t dim;
    int t;
    if (vg_check_nargs(op, nargs, 2) < 0 || vg_parse_int(op, "dim", args[1], &dim) < 0 ||
        (t = vg_compute_type_exact(module, op, args, 1, VG_MIXED_OK)) < 0)
        return NULL;
    if (PyArray_Check(args[0]) && !vg_is_plain_c(args[0], t)) {
        /* go.sum(axis=dim, keepdims=True) in NumPy's order for this layout */
        if (vg_normalize_axis(op, &dim, PyArray_NDIM((PyArrayObject *)args[0])) < 0)
            return NULL;
        return vg_add_reduce(module, args[0], (int)dim, 1);
    }
    if ((go = vg_as_contiguous(op, args[0], t)) == NULL)
        return NULL;
    if (vg_normalize_axis(op, &dim, PyArray_NDIM(go)) < 0)
        goto done;
    npy_intp dims[NPY_MAXDIMS], outer, inner, len = PyArray_DIM(go, (int)dim);
    memcpy(dims, PyArray_DIMS(go), sizeof(npy_intp) * PyArray_NDIM(go));
    dims[dim] = 1;
    if ((gx = vg_empty(op, PyArray_NDIM(go), dims, t)) != NULL) {
        const vg_loops *L = &vg_numpy(module)->loops;
        split_at_axis(go, (int)dim, &outer, &inner);
        NPY_BEGIN_THREADS_DEF;
        NPY_BEGIN_THREADS_THRESHOLDED(PyArray_SIZE(go));
        if (t == NPY_FLOAT)
            vg_sum_middle_axis_f32(L, PyArray_DATA(gx), PyArray_DATA(go), outer, len, inner);
        else
            vg_sum_middle_axis_f64(L, PyArray_DATA(gx), PyArray_DATA(go), outer, len, inner);
        NPY_END_THREADS;
    }
done:
    Py_DECREF(go);
    return (PyObject *)gx;
}

/* x as an array of an accepted dtype, unconverted (views keep the caller's dtype). */
static PyArrayObject *as_viewable(const char *op, PyObject *obj)
{
    if (vg_compute_type(op, &obj, 1) < 0)
        return NULL;
    return (PyArrayObject *)PyArray_FROM_OF(obj, NPY_ARRAY_ENSUREARRAY);
}

/* A view of x with the dimensions `dims` (x's own, with one singleton dimension added or removed). */
static PyObject *view_with_dims(PyArrayObject *x, npy_intp *dims, int ndim)
{
    PyArray_Dims shape = {dims, ndim};
    return PyArray_Newshape(x, &shape, NPY_ANYORDER);
}

VG_BOUNDARY(identity)
{
    if (vg_check_nargs("Id", nargs, 1) < 0 || vg_compute_type("Id", args, 1) < 0)
        return NULL;
    Py_INCREF(args[0]);
    return args[0];
}

VG_BOUNDARY(squeeze)
{
    PyArrayObject *x;
    Py_ssize_t dim;
    PyObject *y = NULL;
    if (vg_check_nargs("Squeeze", nargs, 2) < 0 || vg_parse_int("Squeeze", "dim", args[1], &dim) < 0 ||
        (x = as_viewable("Squeeze", args[0])) == NULL)
        return NULL;
    int ndim = PyArray_NDIM(x);
    if (vg_normalize_axis("Squeeze", &dim, ndim) < 0)
        goto done;
    if (PyArray_DIM(x, (int)dim) != 1) {
        PyObject *s = PyArray_IntTupleFromIntp(ndim, PyArray_DIMS(x));
        if (s)
            PyErr_Format(PyExc_ValueError, "Squeeze: dim %zd of shape %S has size %zd, not 1", dim, s,
                         (Py_ssize_t)PyArray_DIM(x, (int)dim));
        Py_XDECREF(s);
        goto done;
    }
    npy_intp dims[NPY_MAXDIMS];
    for (int i = 0, j = 0; i < ndim; i++)
        if (i != dim)
            dims[j++] = PyArray_DIM(x, i);
    y = view_with_dims(x, dims, ndim - 1);
done:
    Py_DECREF(x);
    return y;
}

VG_BOUNDARY(unsqueeze)
{
    PyArrayObject *x;
    Py_ssize_t dim;
    PyObject *y = NULL;
    if (vg_check_nargs("Unsqueeze", nargs, 2) < 0 || vg_parse_int("Unsqueeze", "dim", args[1], &dim) < 0 ||
        (x = as_viewable("Unsqueeze", args[0])) == NULL)
        return NULL;
    int ndim = PyArray_NDIM(x);
    if (ndim >= NPY_MAXDIMS) {
        PyErr_Format(PyExc_ValueError, "Unsqueeze: the input already has the maximum of %d dimensions",
                     NPY_MAXDIMS);
        goto done;
    }
    /* The new axis may go anywhere from 0 to ndim (inclusive), so normalise against ndim + 1. */
    if (vg_normalize_axis("Unsqueeze", &dim, ndim + 1) < 0)
        goto done;
    npy_intp dims[NPY_MAXDIMS];
    for (int i = 0, j = 0; i <= ndim; i++)
        dims[i] = (i == dim) ? 1 : PyArray_DIM(x, j++);
    y = view_with_dims(x, dims, ndim + 1);
done:
    Py_DECREF(x);
    return y;
}
