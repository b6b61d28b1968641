/*
 * matmul.c — matrix products: MatrixMultiply and BatchMM, forward and backward, through BLAS.
 *
 *     MatrixMultiply: c = a b          (a: n x k, b: k x m)     ga = go b^T,    gb = a^T go
 *     BatchMM:        y = v M^T        (M: m x k, v: n x k)     gM = go^T v,    gv = go M
 *
 * The products go through NumPy's PyArray_MatrixProduct2, which calls the BLAS NumPy was built with
 * (OpenBLAS in the wheels), so the process has one BLAS and one thread pool. Transposes are passed as
 * transposed views: BLAS reads them with its own transpose flag instead of us copying them.
 */
#include "vgrad.h"

PyObject *vg_product(PyArrayObject *a, int transpose_a, PyArrayObject *b, int transpose_b)
{
    PyObject *lhs = transpose_a ? PyArray_Transpose(a, NULL) : (Py_INCREF(a), (PyObject *)a);
    PyObject *rhs = transpose_b ? PyArray_Transpose(b, NULL) : (Py_INCREF(b), (PyObject *)b);
    PyObject *c = NULL;
    if (lhs && rhs) {
        /* np.dot treats a 1 x 1 operand as a scalar and calls BLAS axpy, which does nothing when that scalar
           is 0: 0 * inf and 0 * NaN would come out 0 instead of NaN. np.matmul (the reference) has no such
           shortcut, so those products go through it. */
        npy_intp size_a = PyArray_SIZE(a), size_b = PyArray_SIZE(b);
        if ((size_a == 1) != (size_b == 1))
            c = PyNumber_MatrixMultiply(lhs, rhs);
        else
            c = PyArray_MatrixProduct2(lhs, rhs, NULL);
    }
    Py_XDECREF(lhs);
    Py_XDECREF(rhs);
    return c;
}

/* ValueError unless dimension da of a equals dimension db of b. */
static int check_match(const char *op, const char *what, PyArrayObject *a, int da, PyArrayObject *b, int db)
{
    if (PyArray_DIM(a, da) == PyArray_DIM(b, db))
        return 0;
    PyObject *sa = PyArray_IntTupleFromIntp(2, PyArray_DIMS(a));
    PyObject *sb = PyArray_IntTupleFromIntp(2, PyArray_DIMS(b));
    if (sa && sb)
        PyErr_Format(PyExc_ValueError, "%s: shapes %S and %S do not fit: %s", op, sa, sb, what);
    Py_XDECREF(sa);
    Py_XDECREF(sb);
    return -1;
}

/* Convert n operands to the compute type and check that each is a matrix. */
static int prepare_matrices(const char *op, const char *const *names, PyObject *const *args, Py_ssize_t nargs,
                            int n, PyArrayObject **out)
{
    if (vg_check_nargs(op, nargs, n) < 0 || vg_prepare(op, args, n, out) < 0)
        return -1;
    for (int i = 0; i < n; i++) {
        if (vg_check_ndim(op, names[i], out[i], 2) < 0) {
            vg_release(out, n);
            return -1;
        }
    }
    return 0;
}

/* Pack two new references into a tuple, stealing them (NULL if either is NULL). */
static PyObject *pair(PyObject *x, PyObject *y)
{
    PyObject *t = (x && y) ? PyTuple_Pack(2, x, y) : NULL;
    Py_XDECREF(x);
    Py_XDECREF(y);
    return t;
}

VG_BOUNDARY(matmul_forward)
{
    static const char *const names[] = {"a", "b"};
    PyArrayObject *in[2];
    if (prepare_matrices("MatrixMultiply", names, args, nargs, 2, in) < 0)
        return NULL;
    PyObject *c = NULL;
    if (check_match("MatrixMultiply", "a's columns must equal b's rows", in[0], 1, in[1], 0) == 0)
        c = vg_product(in[0], 0, in[1], 0);
    vg_release(in, 2);
    return c;
}

VG_BOUNDARY(matmul_backward)
{
    static const char *const names[] = {"the upstream gradient", "a", "b"};
    PyArrayObject *in[3]; /* go, a, b */
    const char *op = "MatrixMultiply backward";
    if (prepare_matrices(op, names, args, nargs, 3, in) < 0)
        return NULL;
    PyObject *result = NULL;
    if (check_match(op, "a's columns must equal b's rows", in[1], 1, in[2], 0) == 0 &&
        check_match(op, "go needs a's rows", in[0], 0, in[1], 0) == 0 &&
        check_match(op, "go needs b's columns", in[0], 1, in[2], 1) == 0)
        result = pair(vg_product(in[0], 0, in[2], 1), vg_product(in[1], 1, in[0], 0));
    vg_release(in, 3);
    return result;
}

VG_BOUNDARY(batchmm_forward)
{
    static const char *const names[] = {"the matrix", "the vectors"};
    PyArrayObject *in[2]; /* matrix, vectors */
    if (prepare_matrices("BatchMM", names, args, nargs, 2, in) < 0)
        return NULL;
    PyObject *y = NULL;
    if (check_match("BatchMM", "the matrix's columns must equal the vectors' length", in[0], 1, in[1], 1) == 0)
        y = vg_product(in[1], 0, in[0], 1);
    vg_release(in, 2);
    return y;
}

VG_BOUNDARY(batchmm_backward)
{
    static const char *const names[] = {"the upstream gradient", "the matrix", "the vectors"};
    PyArrayObject *in[3]; /* go, matrix, vectors */
    const char *op = "BatchMM backward";
    if (prepare_matrices(op, names, args, nargs, 3, in) < 0)
        return NULL;
    PyObject *result = NULL;
    if (check_match(op, "the matrix's columns must equal the vectors' length", in[1], 1, in[2], 1) == 0 &&
        check_match(op, "go needs one row per vector", in[0], 0, in[2], 0) == 0 &&
        check_match(op, "go needs one column per matrix row", in[0], 1, in[1], 0) == 0)
        result = pair(vg_product(in[0], 1, in[2], 0), vg_product(in[0], 0, in[1], 0));
    vg_release(in, 3);
    return result;
}
