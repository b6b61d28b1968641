/*
 * matmul.c — matrix products: MatrixMultiply and BatchMM, forward and backward.
 *
 *     MatrixMultiply: c = a b          (a: n x k, b: k x m)     ga = go b^T,    gb = a^T go
 *     BatchMM:        y = v M^T        (M: m x k, v: n x k)     gM = go^T v,    gv = go M
 *
 * The products are np.matmul (its ufunc, looked up once: npyloops.c) on exactly the operands vugrad's
 * formulas pass it: the arrays as given and their .T views. np.matmul picks its BLAS call (gemm or syrk, and
 * the transpose flags) or its own loop for strides BLAS cannot take from those operands, and np.dot would
 * pick differently, so this is what makes float64 products bit-identical to vugrad's. The process keeps one
 * BLAS and one thread pool, NumPy's. Here the boundary only checks the shapes (so that errors name the op)
 * and the dtypes: others than float32/float64 go to the op's Reference (np.matmul of integers stays integer).
 */
#include "vgrad.h"

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

/* Check n operands: dtypes (declining those the op's Reference computes) and that each is a matrix. out[]
   gets them as arrays (no copy for arrays) for the shape checks; the products use them as they are. */
static int prepare_matrices(PyObject *module, const char *op, const char *const *names, PyObject *const *args,
                            Py_ssize_t nargs, int n, PyArrayObject **out)
{
    for (int i = 0; i < n; i++)
        out[i] = NULL;
    if (vg_check_nargs(op, nargs, n) < 0 || vg_compute_type_exact(module, op, args, n, VG_MIXED_OK) < 0)
        return -1;
    for (int i = 0; i < n; i++) {
        out[i] = PyArray_Check(args[i]) ? (PyArrayObject *)Py_NewRef(args[i])
                                        : vg_as_contiguous(op, args[i], vg_compute_type(op, args, n));
        if (out[i] == NULL || vg_check_ndim(op, names[i], out[i], 2) < 0) {
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

#define A(i) ((PyObject *)in[i])

/* np.matmul(a, b) */
VG_BOUNDARY(matmul_forward)
{
    static const char *const names[] = {"a", "b"};
    PyArrayObject *in[2];
    if (prepare_matrices(module, "MatrixMultiply", names, args, nargs, 2, in) < 0)
        return NULL;
    PyObject *c = NULL;
    if (check_match("MatrixMultiply", "a's columns must equal b's rows", in[0], 1, in[1], 0) == 0)
        c = vg_matmul(module, "MatrixMultiply", A(0), 0, A(1), 0);
    vg_release(in, 2);
    return c;
}

/* (np.matmul(go, b.T), np.matmul(a.T, go)) */
VG_BOUNDARY(matmul_backward)
{
    static const char *const names[] = {"the upstream gradient", "a", "b"};
    PyArrayObject *in[3]; /* go, a, b */
    const char *op = "MatrixMultiply backward";
    if (prepare_matrices(module, op, names, args, nargs, 3, in) < 0)
        return NULL;
    PyObject *result = NULL;
    if (check_match(op, "a's columns must equal b's rows", in[1], 1, in[2], 0) == 0 &&
        check_match(op, "go needs a's rows", in[0], 0, in[1], 0) == 0 &&
        check_match(op, "go needs b's columns", in[0], 1, in[2], 1) == 0)
        result = pair(vg_matmul(module, op, A(0), 0, A(2), 1), vg_matmul(module, op, A(1), 1, A(0), 0));
    vg_release(in, 3);
    return result;
}

/* np.matmul(vectors, matrix.T) */
VG_BOUNDARY(batchmm_forward)
{
    static const char *const names[] = {"the matrix", "the vectors"};
    PyArrayObject *in[2]; /* matrix, vectors */
    if (prepare_matrices(module, "BatchMM", names, args, nargs, 2, in) < 0)
        return NULL;
    PyObject *y = NULL;
    if (check_match("BatchMM", "the matrix's columns must equal the vectors' length", in[0], 1, in[1], 1) == 0)
        y = vg_matmul(module, "BatchMM", A(1), 0, A(0), 1);
    vg_release(in, 2);
    return y;
}

/* (np.matmul(go.T, vectors), np.matmul(go, matrix)) */
VG_BOUNDARY(batchmm_backward)
{
    static const char *const names[] = {"the upstream gradient", "the matrix", "the vectors"};
    PyArrayObject *in[3]; /* go, matrix, vectors */
    const char *op = "BatchMM backward";
    if (prepare_matrices(module, op, names, args, nargs, 3, in) < 0)
        return NULL;
    PyObject *result = NULL;
    if (check_match(op, "the matrix's columns must equal the vectors' length", in[1], 1, in[2], 1) == 0 &&
        check_match(op, "go needs one row per vector", in[0], 0, in[2], 0) == 0 &&
        check_match(op, "go needs one column per matrix row", in[0], 1, in[1], 0) == 0)
        result = pair(vg_matmul(module, op, A(0), 1, A(2), 0), vg_matmul(module, op, A(0), 0, A(1), 0));
    vg_release(in, 3);
    return result;
}
