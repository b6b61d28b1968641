/*
 * select.c — Select: pick one element from each row of a matrix (a gather), forward and backward (the
 * kernels are in select_kernels.h, written once for float and double).
 *
 *     y_i = x[i, k_i]            gx[i, j] = go_i if j == k_i else 0
 *
 * Indices are integers, one per row: a vector (n,) for the forward; the backward also takes the (n, 1)
 * column vugrad keeps in the context. Negative ones count from the end of the row as in NumPy
 * (vg_arg_indices with VG_INDEX_WRAP). The output always has shape (n,): vugrad's squeeze() turns a batch of
 * one into a 0-d array, which its own backward then cannot handle. Each boundary function is one vg_call
 * (vgrad.h).
 */
#include "vgrad.h"

/* ---- kernels ------------------------------------------------------------------------------------- */

#define VG_TEMPLATE "select_kernels.h"
#include "instantiate.h"

/* ---- boundary ------------------------------------------------------------------------------------ */

/* select_forward(x, indices) -> x[i, indices[i]] for every row i */
VG_BOUNDARY(select_forward)
{
    vg_call c;
    PyArrayObject *x, *y;
    const npy_intp *k;
    if (vg_begin(&c, module, "Select", args, nargs, 2, 1, VG_MIXED_OK) < 0 ||
        vg_check_ndim(c.op, "the input", c.in[0], 2) < 0)
        goto done;
    x = c.in[0];
    npy_intp rows = PyArray_DIM(x, 0), cols = PyArray_DIM(x, 1);
    if ((k = vg_arg_indices(&c, 1, "indices", rows, cols, VG_INDEX_WRAP | VG_INDEX_VECTOR)) == NULL ||
        (y = vg_output(&c, 1, &rows)) == NULL)
        goto done;
    PyThreadState *gil = vg_release_gil(rows);
    VG_CALL(c.type, select_forward, PyArray_DATA(y), PyArray_DATA(x), k, rows, cols);
    vg_restore_gil(gil);
done:
    return vg_finish(&c);
}

/* select_backward(go, indices, input_size) -> zeros with go[i] at (i, indices[i]) */
VG_BOUNDARY(select_backward)
{
    vg_call c;
    PyArrayObject *go, *gx;
    const npy_intp *k;
    npy_intp dims[NPY_MAXDIMS];
    if (vg_begin(&c, module, "Select backward", args, nargs, 3, 1, VG_MIXED_OK) < 0 ||
        vg_arg_shape(&c, 2, "input_size", 2, dims, NULL) < 0)
        goto done;
    go = c.in[0];
    if (PyArray_NDIM(go) != 1 || PyArray_DIM(go, 0) != dims[0]) {
        vg_shape_error(c.op, "the upstream gradient must have shape (%zd,), got %s", (Py_ssize_t)dims[0],
                       VG_SHAPE(go));
        goto done;
    }
    if ((k = vg_arg_indices(&c, 1, "indices", dims[0], dims[1], VG_INDEX_WRAP)) == NULL ||
        (gx = vg_output_zeros(&c, 2, dims)) == NULL)
        goto done;
    PyThreadState *gil = vg_release_gil(dims[0]);
    VG_CALL(c.type, select_backward, PyArray_DATA(gx), PyArray_DATA(go), k, dims[0], dims[1]);
    vg_restore_gil(gil);
done:
    return vg_finish(&c);
}
