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
 * follows the rule for maxima (vgrad.h), np.argmax's: the first maximum wins, and a NaN counts as the
 * maximum (the first NaN in a row is taken). Dtypes other than float32/float64 are declined (the Reference
 * keeps NumPy's dtypes). Each boundary function is one vg_call (vgrad.h).
 */
#include "vgrad.h"

/* ---- kernels ------------------------------------------------------------------------------------- */

#define VG_TEMPLATE "reduce_kernels.h"
#include "instantiate.h"

/* ---- boundary ------------------------------------------------------------------------------------ */

/* sum_forward(x) -> x.sum() as a 0-d array */
VG_BOUNDARY(sum_forward)
{
    vg_call c;
    PyArrayObject *x, *y;
    if (vg_begin(&c, module, "Sum", args, nargs, 1, 1, VG_AS_GIVEN) < 0)
        goto done;
    x = c.in[0];
    if (!vg_is_plain_c((PyObject *)x, c.type) && !vg_is_plain_f((PyObject *)x, c.type)) {
        vg_result(&c, vg_add_reduce(module, (PyObject *)x, -1, 0)); /* NumPy's order for this layout */
        goto done;
    }
    if ((y = vg_output(&c, 0, NULL)) == NULL) /* (summed in memory order, as np.sum does) */
        goto done;
    PyThreadState *gil = vg_release_gil(PyArray_SIZE(x));
    VG_CALL(c.type, sum_forward, &vg_numpy(module)->loops, PyArray_DATA(y), PyArray_DATA(x), PyArray_SIZE(x));
    vg_restore_gil(gil);
done:
    return vg_finish(&c);
}

/* sum_backward(go, xsize) -> an array of shape xsize filled with the scalar go */
VG_BOUNDARY(sum_backward)
{
    vg_call c;
    PyArrayObject *go, *gx;
    npy_intp dims[NPY_MAXDIMS];
    int ndim;
    if (vg_begin(&c, module, "Sum backward", args, nargs, 2, 1, VG_MIXED_OK) < 0)
        goto done;
    go = c.in[0];
    if (PyArray_SIZE(go) != 1) {
        vg_shape_error(c.op, "the upstream gradient must be a scalar, got shape %s", VG_SHAPE(go));
        goto done;
    }
    if (vg_arg_shape(&c, 1, "xsize", -1, dims, &ndim) < 0 || (gx = vg_output(&c, ndim, dims)) == NULL)
        goto done;
    PyThreadState *gil = vg_release_gil(PyArray_SIZE(gx));
    VG_CALL(c.type, sum_backward, PyArray_DATA(gx), PyArray_DATA(go), PyArray_SIZE(gx));
    vg_restore_gil(gil);
done:
    return vg_finish(&c);
}

/* ValueError unless go is a vector with one element per row. */
static int check_row_gradient(const char *op, PyArrayObject *go, npy_intp rows)
{
    if (PyArray_NDIM(go) == 1 && PyArray_DIM(go, 0) == rows)
        return 0;
    return vg_shape_error(op, "the upstream gradient must have shape (%zd,), got %s", (Py_ssize_t)rows,
                          VG_SHAPE(go));
}

/* rowsum_forward(x) -> x.sum(axis=1) */
VG_BOUNDARY(rowsum_forward)
{
    vg_call c;
    PyArrayObject *x, *y;
    if (vg_begin(&c, module, "RowSum", args, nargs, 1, 1, VG_AS_GIVEN) < 0 ||
        vg_check_ndim(c.op, "the input", c.in[0], 2) < 0)
        goto done;
    x = c.in[0];
    if (!vg_is_plain_c((PyObject *)x, c.type)) {
        vg_result(&c, vg_add_reduce(module, (PyObject *)x, 1, 0)); /* NumPy's order for this layout */
        goto done;
    }
    const npy_intp rows = PyArray_DIM(x, 0), cols = PyArray_DIM(x, 1);
    if ((y = vg_output(&c, 1, &rows)) == NULL)
        goto done;
    PyThreadState *gil = vg_release_gil(rows * cols);
    VG_CALL(c.type, rowsum_forward, &vg_numpy(module)->loops, PyArray_DATA(y), PyArray_DATA(x), rows, cols);
    vg_restore_gil(gil);
done:
    return vg_finish(&c);
}

/* rowsum_backward(go, xshape) -> go[:, None] repeated over the columns */
VG_BOUNDARY(rowsum_backward)
{
    vg_call c;
    PyArrayObject *go, *gx;
    npy_intp dims[NPY_MAXDIMS];
    if (vg_begin(&c, module, "RowSum backward", args, nargs, 2, 1, VG_MIXED_OK) < 0 ||
        vg_arg_shape(&c, 1, "xshape", 2, dims, NULL) < 0 || check_row_gradient(c.op, c.in[0], dims[0]) < 0 ||
        (gx = vg_output(&c, 2, dims)) == NULL)
        goto done;
    go = c.in[0];
    PyThreadState *gil = vg_release_gil(PyArray_SIZE(gx));
    VG_CALL(c.type, rowsum_backward, PyArray_DATA(gx), PyArray_DATA(go), dims[0], dims[1]);
    vg_restore_gil(gil);
done:
    return vg_finish(&c);
}

/* rowmax_forward(x) -> (np.amax(x, axis=1), np.argmax(x, axis=1)) */
VG_BOUNDARY(rowmax_forward)
{
    vg_call c;
    PyArrayObject *x, *y, *idx;
    if (vg_begin(&c, module, "RowMax", args, nargs, 1, 1, VG_MIXED_OK) < 0 ||
        vg_check_ndim(c.op, "the input", c.in[0], 2) < 0)
        goto done;
    x = c.in[0];
    npy_intp rows = PyArray_DIM(x, 0), cols = PyArray_DIM(x, 1);
    if (cols == 0 && rows > 0) {
        vg_shape_error(c.op, "the rows of a %s input are empty and have no maximum", VG_SHAPE(x));
        goto done;
    }
    if ((y = vg_output(&c, 1, &rows)) == NULL || (idx = vg_output_of(&c, 1, &rows, NPY_INTP)) == NULL)
        goto done;
    PyThreadState *gil = vg_release_gil(rows * cols);
    const int signed_zero_tie = VG_CALL(c.type, rowmax_forward, PyArray_DATA(y), PyArray_DATA(idx), PyArray_DATA(x),
                                        rows, cols);
    vg_restore_gil(gil);
    if (signed_zero_tie) { /* which zero np.amax returns depends on its SIMD lanes: ask it */
        PyObject *amax = vg_maximum_reduce(module, PyArray_Check(args[0]) ? args[0] : (PyObject *)x, 1);
        if (amax == NULL)
            goto done;
        Py_SETREF(c.results[0], amax);
    }
done:
    return vg_finish(&c);
}

/* rowmax_backward(go, idxs, xshape) -> zeros with go[i] at (i, idxs[i]) */
VG_BOUNDARY(rowmax_backward)
{
    vg_call c;
    PyArrayObject *go, *gx;
    const npy_intp *idx;
    npy_intp dims[NPY_MAXDIMS];
    if (vg_begin(&c, module, "RowMax backward", args, nargs, 3, 1, VG_MIXED_OK) < 0 ||
        vg_arg_shape(&c, 2, "xshape", 2, dims, NULL) < 0 || check_row_gradient(c.op, c.in[0], dims[0]) < 0 ||
        (idx = vg_arg_indices(&c, 1, "idxs", dims[0], dims[1], 0)) == NULL ||
        (gx = vg_output_zeros(&c, 2, dims)) == NULL)
        goto done;
    go = c.in[0];
    PyThreadState *gil = vg_release_gil(dims[0]);
    VG_CALL(c.type, rowmax_backward, PyArray_DATA(gx), PyArray_DATA(go), idx, dims[0], dims[1]);
    vg_restore_gil(gil);
done:
    return vg_finish(&c);
}

/* normalize_forward(x) -> (x / sumd, sumd) with sumd = x.sum(axis=1, keepdims=True) */
VG_BOUNDARY(normalize_forward)
{
    vg_call c;
    PyArrayObject *x, *y, *s;
    if (vg_begin(&c, module, "Normalize", args, nargs, 1, 1, VG_MIXED_OK) < 0 ||
        vg_check_ndim(c.op, "the input", c.in[0], 2) < 0)
        goto done;
    x = c.in[0];
    const npy_intp rows = PyArray_DIM(x, 0), cols = PyArray_DIM(x, 1), sdims[2] = {rows, 1};
    if ((y = vg_output(&c, 2, PyArray_DIMS(x))) == NULL)
        goto done;
    if (PyArray_Check(args[0]) && !vg_is_plain_c(args[0], c.type)) { /* the sums in NumPy's order for this layout */
        PyObject *sums = vg_keep(&c, vg_add_reduce(module, args[0], 1, 1));
        if (sums == NULL || (s = vg_result(&c, vg_as_contiguous(c.op, sums, c.type))) == NULL)
            goto done;
    }
    else {
        if ((s = vg_output(&c, 2, sdims)) == NULL)
            goto done;
        VG_CALL(c.type, rowsum_forward, &vg_numpy(module)->loops, PyArray_DATA(s), PyArray_DATA(x), rows, cols);
    }
    PyThreadState *gil = vg_release_gil(rows * cols);
    VG_CALL(c.type, normalize_forward, PyArray_DATA(y), PyArray_DATA(x), PyArray_DATA(s), rows, cols);
    vg_restore_gil(gil);
    if (PyArray_Check(args[0]) && PyArray_IS_F_CONTIGUOUS((PyArrayObject *)args[0]) &&
        !PyArray_IS_C_CONTIGUOUS((PyArrayObject *)args[0])) { /* NumPy's x / sumd keeps x's Fortran order */
        PyObject *fortran = PyArray_NewCopy(y, NPY_FORTRANORDER);
        if (fortran == NULL)
            goto done;
        Py_SETREF(c.results[0], fortran);
    }
done:
    return vg_finish(&c);
}

/* An argument NumPy's go * x would read as a C-ordered array (so that the product it sums is C-ordered). */
static int c_ordered(PyObject *obj)
{
    return !PyArray_Check(obj) || PyArray_IS_C_CONTIGUOUS((PyArrayObject *)obj);
}

/* normalize_backward(go, x, sumd) -> go / sumd - (go * x / sumd**2).sum(axis=1, keepdims=True) */
VG_BOUNDARY(normalize_backward)
{
    vg_call c;
    PyArrayObject *go, *x, *sumd, *gx;
    if (vg_begin(&c, module, "Normalize backward", args, nargs, 3, 3, VG_SAME_FLOAT) < 0)
        goto done;
    go = c.in[0], x = c.in[1], sumd = c.in[2];
    if (vg_check_ndim(c.op, "x", x, 2) < 0 || vg_check_same_shape(c.op, "the upstream gradient and x", "", go, x) < 0)
        goto done;
    const npy_intp rows = PyArray_DIM(x, 0), cols = PyArray_DIM(x, 1);
    if (PyArray_SIZE(sumd) != rows) {
        vg_shape_error(c.op, "sumd must hold one sum per row (%zd), got shape %s", (Py_ssize_t)rows,
                       VG_SHAPE(sumd));
        goto done;
    }
    if (c.type == NPY_DOUBLE && !(c_ordered(args[0]) && c_ordered(args[1]))) {
        vg_decline(module, c.op, "NumPy sums go * x in the order of their memory layout, which is not C order");
        goto done;
    }
    if ((gx = vg_output(&c, 2, PyArray_DIMS(x))) == NULL)
        goto done;
    PyThreadState *gil = vg_release_gil(rows * cols);
    VG_CALL(c.type, normalize_backward, &vg_numpy(module)->loops, PyArray_DATA(gx), PyArray_DATA(go), PyArray_DATA(x),
            PyArray_DATA(sumd), rows, cols);
    vg_restore_gil(gil);
done:
    return vg_finish(&c);
}
