/*
 * select.c — Select: pick one element from each row of a matrix (a gather), forward and backward.
 *
 *     y_i = x[i, k_i]            gx[i, j] = go_i if j == k_i else 0
 *
 * Indices are integers, one per row: a vector (n,) for the forward; the backward also takes the (n, 1)
 * column vugrad keeps in the context. Negative ones count from the end of the row as in NumPy. The output always has shape (n,): vugrad's squeeze() turns a batch of one into a
 * 0-d array, which its own backward then cannot handle.
 */
#include "vgrad.h"

#define DEFINE_SELECT_KERNELS(T, S)                                                                     \
    static void select_forward_##S(T *restrict y, const T *restrict x, const npy_intp *restrict k,     \
                                   npy_intp rows, npy_intp cols)                                        \
    {                                                                                                   \
        for (npy_intp i = 0; i < rows; i++)                                                             \
            y[i] = x[i * cols + k[i]];                                                                  \
    }                                                                                                   \
    /* gx zero-filled by the caller */                                                                  \
    static void select_backward_##S(T *restrict gx, const T *restrict go, const npy_intp *restrict k,  \
                                    npy_intp rows, npy_intp cols)                                       \
    {                                                                                                   \
        for (npy_intp i = 0; i < rows; i++)                                                             \
            gx[i * cols + k[i]] = go[i];                                                                \
    }
VG_INSTANTIATE(DEFINE_SELECT_KERNELS)

PyArrayObject *vg_row_indices(const char *op, PyObject *obj, npy_intp rows, npy_intp cols)
{
    PyArrayObject *idx = vg_as_indices(op, "indices", obj, rows);
    if (idx == NULL)
        return NULL;
    PyArrayObject *own = (PyArrayObject *)PyArray_NewCopy(idx, NPY_CORDER);
    Py_DECREF(idx);
    if (own == NULL)
        return NULL;
    npy_intp *k = PyArray_DATA(own);
    for (npy_intp i = 0; i < rows; i++) {
        npy_intp v = k[i] < 0 ? k[i] + cols : k[i];
        if (v < 0 || v >= cols) {
            PyErr_Format(PyExc_IndexError, "%s: index %zd (row %zd) is out of range for rows of length %zd", op,
                         (Py_ssize_t)k[i], (Py_ssize_t)i, (Py_ssize_t)cols);
            Py_DECREF(own);
            return NULL;
        }
        k[i] = v;
    }
    return own;
}

VG_BOUNDARY(select_forward)
{
    PyArrayObject *x, *idx = NULL, *y = NULL;
    int t;
    if (vg_check_nargs("Select", nargs, 2) < 0 ||
        (t = vg_prepare_exact(module, "Select", args, 1, &x, VG_MIXED_OK)) < 0)
        return NULL;
    if (vg_check_ndim("Select", "the input", x, 2) < 0)
        goto done;
    npy_intp rows = PyArray_DIM(x, 0), cols = PyArray_DIM(x, 1);
    if ((idx = vg_row_indices("Select", args[1], rows, cols)) == NULL)
        goto done;
    /* Judged after conversion, so that a nested list is refused as the 2-D array it makes. */
    if (PyArray_NDIM(idx) != 1) {
        PyErr_Format(PyExc_ValueError, "Select: indices must be a vector with one index per row, got %d dimensions",
                     PyArray_NDIM(idx));
        goto done;
    }
    if ((y = vg_empty("Select", 1, &rows, t)) == NULL)
        goto done;
    VG_CALL(t, select_forward, PyArray_DATA(y), PyArray_DATA(x), PyArray_DATA(idx), rows, cols);
done:
    Py_DECREF(x);
    Py_XDECREF(idx);
    return (PyObject *)y;
}

VG_BOUNDARY(select_backward)
{
    const char *op = "Select backward";
    PyArrayObject *go, *idx = NULL, *gx = NULL;
    PyArray_Dims shape = {NULL, 0};
    int t;
    if (vg_check_nargs(op, nargs, 3) < 0 || (t = vg_prepare_exact(module, op, args, 1, &go, VG_MIXED_OK)) < 0)
        return NULL;
    if (vg_parse_shape(op, "input_size", args[2], &shape) < 0)
        goto done;
    if (shape.len != 2) {
        PyErr_Format(PyExc_ValueError, "%s: input_size must have 2 dimensions, got %R", op, args[2]);
        goto done;
    }
    npy_intp rows = shape.ptr[0], cols = shape.ptr[1];
    if (PyArray_NDIM(go) != 1 || PyArray_DIM(go, 0) != rows) {
        PyObject *s = PyArray_IntTupleFromIntp(PyArray_NDIM(go), PyArray_DIMS(go));
        if (s)
            PyErr_Format(PyExc_ValueError, "%s: the upstream gradient must have shape (%zd,), got %S", op,
                         (Py_ssize_t)rows, s);
        Py_XDECREF(s);
        goto done;
    }
    if ((idx = vg_row_indices(op, args[1], rows, cols)) == NULL || (gx = vg_zeros(op, 2, shape.ptr, t)) == NULL)
        goto done;
    VG_CALL(t, select_backward, PyArray_DATA(gx), PyArray_DATA(go), PyArray_DATA(idx), rows, cols);
done:
    PyDimMem_FREE(shape.ptr);
    Py_DECREF(go);
    Py_XDECREF(idx);
    return (PyObject *)gx;
}
