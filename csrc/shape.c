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
 * vg_sum_middle_axis for C-contiguous go, np.add.reduce itself for other layouts. Each boundary function is
 * one vg_call (vgrad.h).
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

/* ---- kernels (Expand's; the others make views) ------------------------------------------------------ */

/* x: outer x 1 x inner -> y: outer x repeats x inner; type-agnostic, block copies of `inner` items. */
static void expand_forward(char *restrict y, const char *restrict x, npy_intp outer, npy_intp repeats, npy_intp inner,
                           npy_intp itemsize)
{
    const npy_intp block = inner * itemsize;
    for (npy_intp o = 0; o < outer; o++)
        for (npy_intp r = 0; r < repeats; r++)
            memcpy(y + (o * repeats + r) * block, x + o * block, (size_t)block);
}

/* The gradient, go summed over the expanded axis, is vg_sum_middle_axis (reduce_kernels.h). */

/* ---- boundary ------------------------------------------------------------------------------------ */

/* expand_forward(x, dim, repeats) -> x repeated along its singleton dimension dim */
VG_BOUNDARY(expand_forward)
{
    vg_call c;
    PyArrayObject *x, *y;
    Py_ssize_t dim, repeats;
    npy_intp dims[NPY_MAXDIMS], outer, inner;
    if (vg_begin(&c, module, "Expand", args, nargs, 3, 0, 0) < 0 || vg_arg_int(&c, 1, "dim", &dim) < 0 ||
        vg_arg_int(&c, 2, "repeats", &repeats) < 0 || vg_arrays(&c, 1, VG_MIXED_OK) < 0 ||
        vg_normalize_axis(c.op, &dim, PyArray_NDIM(c.in[0])) < 0)
        goto done;
    x = c.in[0];
    if (repeats < 0) {
        PyErr_Format(PyExc_ValueError, "%s: repeats must be >= 0, got %zd", c.op, repeats);
        goto done;
    }
    if (PyArray_DIM(x, (int)dim) != 1) {
        vg_shape_error(c.op, "can only expand a singleton dimension, but dim %zd of shape %s has size %zd", dim,
                       VG_SHAPE(x), (Py_ssize_t)PyArray_DIM(x, (int)dim));
        goto done;
    }
    memcpy(dims, PyArray_DIMS(x), sizeof(npy_intp) * (size_t)PyArray_NDIM(x));
    dims[dim] = repeats;
    if ((y = vg_output(&c, PyArray_NDIM(x), dims)) == NULL)
        goto done;
    if (PyArray_SIZE(y) == 0) /* nothing to copy: the loops would still count through outer x repeats */
        goto done;
    split_at_axis(x, (int)dim, &outer, &inner);
    PyThreadState *gil = vg_release_gil(PyArray_SIZE(y));
    expand_forward(PyArray_DATA(y), PyArray_DATA(x), outer, repeats, inner, PyArray_ITEMSIZE(x));
    vg_restore_gil(gil);
done:
    return vg_finish(&c);
}

/* expand_backward(go, dim) -> go.sum(axis=dim, keepdims=True) */
VG_BOUNDARY(expand_backward)
{
    vg_call c;
    PyArrayObject *go, *gx;
    Py_ssize_t dim;
    npy_intp dims[NPY_MAXDIMS], outer, inner;
    if (vg_begin(&c, module, "Expand backward", args, nargs, 2, 0, 0) < 0 || vg_arg_int(&c, 1, "dim", &dim) < 0 ||
        vg_arrays(&c, 1, VG_AS_GIVEN) < 0 || vg_normalize_axis(c.op, &dim, PyArray_NDIM(c.in[0])) < 0)
        goto done;
    go = c.in[0];
    if (!vg_is_plain_c((PyObject *)go, c.type)) {
        vg_result(&c, vg_add_reduce(module, (PyObject *)go, (int)dim, 1)); /* NumPy's order for this layout */
        goto done;
    }
    memcpy(dims, PyArray_DIMS(go), sizeof(npy_intp) * (size_t)PyArray_NDIM(go));
    dims[dim] = 1;
    if ((gx = vg_output(&c, PyArray_NDIM(go), dims)) == NULL)
        goto done;
    split_at_axis(go, (int)dim, &outer, &inner);
    PyThreadState *gil = vg_release_gil(PyArray_SIZE(go));
    VG_CALL(c.type, vg_sum_middle_axis, &vg_numpy(module)->loops, PyArray_DATA(gx), PyArray_DATA(go), outer,
            PyArray_DIM(go, (int)dim), inner);
    vg_restore_gil(gil);
done:
    return vg_finish(&c);
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

/* identity(x) -> x itself, once its dtype is one vgrad computes with */
VG_BOUNDARY(identity)
{
    vg_call c;
    if (vg_begin(&c, module, "Id", args, nargs, 1, 0, 0) < 0 || vg_compute_type(c.op, args, 1) < 0)
        goto done;
    vg_result(&c, Py_NewRef(args[0]));
done:
    return vg_finish(&c);
}

/* squeeze(x, dim) -> a view of x without its singleton dimension dim */
VG_BOUNDARY(squeeze)
{
    vg_call c;
    PyArrayObject *x;
    Py_ssize_t dim;
    npy_intp dims[NPY_MAXDIMS];
    if (vg_begin(&c, module, "Squeeze", args, nargs, 2, 0, 0) < 0 || vg_arg_int(&c, 1, "dim", &dim) < 0 ||
        (x = vg_keep(&c, as_viewable(c.op, args[0]))) == NULL || vg_normalize_axis(c.op, &dim, PyArray_NDIM(x)) < 0)
        goto done;
    const int ndim = PyArray_NDIM(x);
    if (PyArray_DIM(x, (int)dim) != 1) {
        vg_shape_error(c.op, "dim %zd of shape %s has size %zd, not 1", dim, VG_SHAPE(x),
                       (Py_ssize_t)PyArray_DIM(x, (int)dim));
        goto done;
    }
    for (int i = 0, j = 0; i < ndim; i++)
        if (i != dim)
            dims[j++] = PyArray_DIM(x, i);
    vg_result(&c, view_with_dims(x, dims, ndim - 1));
done:
    return vg_finish(&c);
}

/* unsqueeze(x, dim) -> a view of x with a new singleton dimension at dim */
VG_BOUNDARY(unsqueeze)
{
    vg_call c;
    PyArrayObject *x;
    Py_ssize_t dim;
    npy_intp dims[NPY_MAXDIMS];
    if (vg_begin(&c, module, "Unsqueeze", args, nargs, 2, 0, 0) < 0 || vg_arg_int(&c, 1, "dim", &dim) < 0 ||
        (x = vg_keep(&c, as_viewable(c.op, args[0]))) == NULL)
        goto done;
    const int ndim = PyArray_NDIM(x);
    if (ndim >= NPY_MAXDIMS) {
        vg_shape_error(c.op, "the input already has the maximum of %d dimensions", NPY_MAXDIMS);
        goto done;
    }
    /* The new axis may go anywhere from 0 to ndim (inclusive), so normalise against ndim + 1. */
    if (vg_normalize_axis(c.op, &dim, ndim + 1) < 0)
        goto done;
    for (int i = 0, j = 0; i <= ndim; i++)
        dims[i] = (i == dim) ? 1 : PyArray_DIM(x, j++);
    vg_result(&c, view_with_dims(x, dims, ndim + 1));
done:
    return vg_finish(&c);
}
