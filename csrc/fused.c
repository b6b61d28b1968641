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
 * it by itself, so the course's uint8 pixels stay on the fast path. Each boundary function is one vg_call
 * (vgrad.h).
 */

#include "vgrad.h"

/* ---- kernels ------------------------------------------------------------------------------------- */

#define VG_TEMPLATE "fused_kernels.h"
#include "instantiate.h"

/* ---- boundary ------------------------------------------------------------------------------------ */

/* ValueError naming the op unless arr (a matrix) has `expected` columns. */
static int check_columns(const char *op, const char *what, PyArrayObject *arr, npy_intp expected)
{
    if (PyArray_DIM(arr, 1) == expected)
        return 0;
    return vg_shape_error(op, "%s of shape %s should have %zd columns", what, VG_SHAPE(arr), (Py_ssize_t)expected);
}

/* Affine's input x, for its shape: the weights and bias (and go) must be float32/float64 (others are
   declined by vg_begin); x may be of any dtype np.matmul takes (the course feeds uint8 pixels): the products
   are np.matmul's own, which promotes, and come out float32 or float64, except for long double (declined
   too). An ndarray as it is, anything else converted; kept by the call. */
static PyArrayObject *affine_input(vg_call *c, PyObject *x)
{
    if (PyArray_Check(x) && PyArray_TYPE((PyArrayObject *)x) == NPY_LONGDOUBLE) {
        vg_decline(c->module, c->op, "long double inputs make long double products");
        return NULL;
    }
    if (vg_compute_type(c->op, &x, 1) < 0)
        return NULL;
    return vg_keep(c, PyArray_Check(x) ? Py_NewRef(x) : (PyObject *)vg_as_contiguous(c->op, x, NPY_DOUBLE));
}

/* affine_forward(w, b, x) -> np.matmul(x, w.T) + b */
VG_BOUNDARY(affine_forward)
{
    vg_call c;
    PyArrayObject *w, *b, *x, *bias, *y;
    if (vg_begin(&c, module, "Affine", args, nargs, 3, 2, VG_MIXED_OK | VG_AS_GIVEN) < 0 ||
        (x = affine_input(&c, args[2])) == NULL)
        goto done;
    w = c.in[0], b = c.in[1];
    if (vg_check_ndim(c.op, "the weights", w, 2) < 0 || vg_check_ndim(c.op, "the input", x, 2) < 0 ||
        check_columns(c.op, "the input", x, PyArray_DIM(w, 1)) < 0)
        goto done;
    const npy_intp m = PyArray_DIM(w, 0), n = PyArray_DIM(x, 0);
    if (PyArray_SIZE(b) != m) {
        vg_shape_error(c.op, "the bias of shape %s has %zd elements; the weights %s need %zd", VG_SHAPE(b),
                       (Py_ssize_t)PyArray_SIZE(b), VG_SHAPE(w), (Py_ssize_t)m);
        goto done;
    }
    /* the product as vugrad's BatchMM makes it, from the arguments as given */
    if ((y = vg_result(&c, vg_matmul(module, c.op, args[2], 0, args[0], 1))) == NULL)
        goto done;
    /* the sum's type, as NumPy promotes the product's and the bias's */
    const int t = (PyArray_TYPE(y) == NPY_FLOAT && c.type == NPY_FLOAT) ? NPY_FLOAT : NPY_DOUBLE;
    if ((bias = vg_keep(&c, vg_as_contiguous(c.op, args[1], t))) == NULL)
        goto done;
    if (PyArray_TYPE(y) != t) { /* x and w float32, b float64: the sum is float64 */
        PyObject *cast = PyArray_Cast(y, t);
        if (cast == NULL)
            goto done;
        Py_SETREF(c.results[0], cast);
        y = (PyArrayObject *)cast;
    }
    PyThreadState *gil = vg_release_gil(n * m);
    VG_CALL(t, affine_forward, PyArray_DATA(y), PyArray_DATA(bias), n, m);
    vg_restore_gil(gil);
done:
    return vg_finish(&c);
}

/* affine_backward(go, w, x, bshape, need_x) -> (np.matmul(go.T, x), go.sum(axis=0) shaped bshape,
   np.matmul(go, w) or None) */
VG_BOUNDARY(affine_backward)
{
    vg_call c;
    PyArrayObject *go, *w, *x, *gb;
    npy_intp bdims[NPY_MAXDIMS];
    int bndim, need_x;
    if (vg_begin(&c, module, "Affine backward", args, nargs, 5, 2, VG_MIXED_OK | VG_AS_GIVEN) < 0 ||
        (x = affine_input(&c, args[2])) == NULL || vg_arg_bool(&c, 4, &need_x) < 0 ||
        vg_arg_shape(&c, 3, "bshape", -1, bdims, &bndim) < 0)
        goto done;
    go = c.in[0], w = c.in[1];
    if (vg_check_ndim(c.op, "the upstream gradient", go, 2) < 0 || vg_check_ndim(c.op, "the weights", w, 2) < 0 ||
        vg_check_ndim(c.op, "the input", x, 2) < 0 || check_columns(c.op, "the input", x, PyArray_DIM(w, 1)) < 0 ||
        check_columns(c.op, "the upstream gradient", go, PyArray_DIM(w, 0)) < 0)
        goto done;
    const npy_intp n = PyArray_DIM(go, 0), m = PyArray_DIM(go, 1);
    if (PyArray_DIM(x, 0) != n) {
        vg_shape_error(c.op, "the upstream gradient %s and the input %s have different numbers of rows",
                       VG_SHAPE(go), VG_SHAPE(x));
        goto done;
    }
    npy_intp bsize = 1; /* (vg_arg_shape checked that the product fits) */
    for (int i = 0; i < bndim; i++)
        bsize *= bdims[i];
    if (bsize != m) {
        vg_shape_error(c.op, "bshape %s does not hold the %zd biases", VG_DIMS(bndim, bdims), (Py_ssize_t)m);
        goto done;
    }
    /* the gradient BatchMM and Expand receive in vugrad: C-ordered, of its own dtype (the bias's gradient,
       go.sum(axis=0), keeps it; the products promote as np.matmul does) */
    const int tg = vg_compute_type(c.op, args, 1);
    PyObject *go_c;
    if (tg < 0 || (go_c = vg_keep(&c, vg_as_contiguous(c.op, args[0], tg))) == NULL ||
        vg_result(&c, vg_matmul(module, c.op, go_c, 1, args[2], 0)) == NULL ||
        (gb = vg_output_of(&c, bndim, bdims, tg)) == NULL)
        goto done;
    PyThreadState *gil = vg_release_gil(n * m);
    VG_CALL(tg, vg_sum_middle_axis, &vg_numpy(module)->loops, PyArray_DATA(gb), PyArray_DATA((PyArrayObject *)go_c),
            1, n, m);
    vg_restore_gil(gil);
    vg_result(&c, need_x ? vg_matmul(module, c.op, go_c, 0, args[1], 0) : Py_NewRef(Py_None));
done:
    return vg_finish(&c);
}

/* logsoftmax_forward(x) -> (y, expd, sumd, idxs) */
VG_BOUNDARY(logsoftmax_forward)
{
    vg_call c;
    PyArrayObject *x, *y, *expd, *sumd, *idxs, *lse;
    if (vg_begin(&c, module, "LogSoftmax", args, nargs, 1, 1, VG_MIXED_OK) < 0 ||
        vg_check_ndim(c.op, "the input", c.in[0], 2) < 0)
        goto done;
    x = c.in[0];
    npy_intp rows = PyArray_DIM(x, 0), cols = PyArray_DIM(x, 1);
    if (cols == 0 && rows > 0) {
        vg_shape_error(c.op, "the rows of a %s input are empty", VG_SHAPE(x));
        goto done;
    }
    if (c.type == NPY_DOUBLE && PyArray_Check(args[0]) && !PyArray_IS_C_CONTIGUOUS((PyArrayObject *)args[0])) {
        vg_decline(module, c.op, "NumPy lays exp(x - max) out, and sums it, in the order of x's memory layout");
        goto done;
    }
    if ((y = vg_output(&c, 2, PyArray_DIMS(x))) == NULL || (expd = vg_output(&c, 2, PyArray_DIMS(x))) == NULL ||
        (sumd = vg_output(&c, 1, &rows)) == NULL || (idxs = vg_output_of(&c, 1, &rows, NPY_INTP)) == NULL ||
        (lse = vg_scratch_array(&c, 1, &rows)) == NULL)
        goto done;
    PyThreadState *gil = vg_release_gil(rows * cols);
    VG_CALL(c.type, logsoftmax_forward, &vg_numpy(module)->loops, PyArray_DATA(y), PyArray_DATA(expd),
            PyArray_DATA(sumd), PyArray_DATA(lse), PyArray_DATA(idxs), PyArray_DATA(x), rows, cols);
    vg_restore_gil(gil);
done:
    return vg_finish(&c);
}

/* logsoftmax_backward(go, expd, sumd, idxs) -> gx */
VG_BOUNDARY(logsoftmax_backward)
{
    vg_call c;
    PyArrayObject *go, *expd, *sumd, *gx;
    const npy_intp *idxs;
    if (vg_begin(&c, module, "LogSoftmax backward", args, nargs, 4, 3, VG_SAME_FLOAT) < 0)
        goto done;
    go = c.in[0], expd = c.in[1], sumd = c.in[2];
    if (vg_check_ndim(c.op, "expd", expd, 2) < 0 ||
        vg_check_same_shape(c.op, "the upstream gradient and expd", "", go, expd) < 0)
        goto done;
    const npy_intp rows = PyArray_DIM(expd, 0), cols = PyArray_DIM(expd, 1);
    if (PyArray_SIZE(sumd) != rows) {
        vg_shape_error(c.op, "sumd must hold one sum per row (%zd), got shape %s", (Py_ssize_t)rows,
                       VG_SHAPE(sumd));
        goto done;
    }
    if ((idxs = vg_arg_indices(&c, 3, "idxs", rows, cols, VG_INDEX_WRAP)) == NULL ||
        (gx = vg_output(&c, 2, PyArray_DIMS(expd))) == NULL)
        goto done;
    if (rows * cols == 0) /* an empty gradient: nothing to compute, whatever the number of (empty) rows */
        goto done;
    PyThreadState *gil = vg_release_gil(rows * cols);
    VG_CALL(c.type, logsoftmax_backward, &vg_numpy(module)->loops, PyArray_DATA(gx), PyArray_DATA(go),
            PyArray_DATA(expd), PyArray_DATA(sumd), idxs, rows, cols);
    vg_restore_gil(gil);
done:
    return vg_finish(&c);
}

/* logceloss_forward(logprobs, targets) -> np.asarray(logprobs[arange, targets].sum()) * -1.0 */
VG_BOUNDARY(logceloss_forward)
{
    vg_call c;
    PyArrayObject *lp, *picked, *loss;
    const npy_intp *targets;
    if (vg_begin(&c, module, "LogCELoss", args, nargs, 2, 1, VG_MIXED_OK) < 0 ||
        vg_check_ndim(c.op, "the log-probabilities", c.in[0], 2) < 0)
        goto done;
    lp = c.in[0];
    npy_intp rows = PyArray_DIM(lp, 0), cols = PyArray_DIM(lp, 1);
    if ((targets = vg_arg_indices(&c, 1, "targets", rows, cols, VG_INDEX_WRAP)) == NULL ||
        (loss = vg_output(&c, 0, NULL)) == NULL || (picked = vg_scratch_array(&c, 1, &rows)) == NULL)
        goto done;
    PyThreadState *gil = vg_release_gil(rows);
    VG_CALL(c.type, logceloss_forward, &vg_numpy(module)->loops, PyArray_DATA(loss), PyArray_DATA(picked),
            PyArray_DATA(lp), targets, rows, cols);
    vg_restore_gil(gil);
done:
    return vg_finish(&c);
}

/* logceloss_backward(go, targets, shape) -> zeros of shape with go * -1.0 at (i, targets[i]) */
VG_BOUNDARY(logceloss_backward)
{
    vg_call c;
    PyArrayObject *go, *glp;
    const npy_intp *targets;
    npy_intp dims[NPY_MAXDIMS];
    if (vg_begin(&c, module, "LogCELoss backward", args, nargs, 3, 1, VG_MIXED_OK) < 0)
        goto done;
    go = c.in[0];
    if (PyArray_SIZE(go) != 1) {
        vg_shape_error(c.op, "the upstream gradient must be a scalar, got shape %s", VG_SHAPE(go));
        goto done;
    }
    if (vg_arg_shape(&c, 2, "shape", 2, dims, NULL) < 0 ||
        (targets = vg_arg_indices(&c, 1, "targets", dims[0], dims[1], VG_INDEX_WRAP)) == NULL ||
        (glp = vg_output_zeros(&c, 2, dims)) == NULL)
        goto done;
    PyThreadState *gil = vg_release_gil(dims[0]);
    VG_CALL(c.type, logceloss_backward, PyArray_DATA(glp), PyArray_DATA(go), targets, dims[0], dims[1]);
    vg_restore_gil(gil);
done:
    return vg_finish(&c);
}
