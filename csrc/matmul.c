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
 * There are no kernels of our own: each boundary function is one vg_call (vgrad.h) around vg_matmul
 * (npyloops.c), the one way vgrad multiplies matrices.
 */
#include "vgrad.h"

/* The operands as given (ndarrays are not copied), their dtypes checked (declining those the op's Reference
   computes), each a matrix: vg_begin for the n arguments of a product; `names` says what each one is. */
static int begin_product(vg_call *c, PyObject *module, const char *op, const char *const *names,
                         PyObject *const *args, Py_ssize_t nargs, int n)
{
    if (vg_begin(c, module, op, args, nargs, n, n, VG_MIXED_OK | VG_AS_GIVEN) < 0)
        return -1;
    for (int i = 0; i < n; i++)
        if (vg_check_ndim(op, names[i], c->in[i], 2) < 0)
            return -1;
    return 0;
}

/* ValueError unless dimension da of a equals dimension db of b; `what` says which must agree. */
static int check_match(const char *op, const char *what, PyArrayObject *a, int da, PyArrayObject *b, int db)
{
    if (PyArray_DIM(a, da) == PyArray_DIM(b, db))
        return 0;
    return vg_shape_error(op, "shapes %s and %s do not fit: %s", VG_SHAPE(a), VG_SHAPE(b), what);
}

/* matmul_forward(a, b) -> np.matmul(a, b) */
VG_BOUNDARY(matmul_forward)
{
    static const char *const names[] = {"a", "b"};
    vg_call c;
    if (begin_product(&c, module, "MatrixMultiply", names, args, nargs, 2) < 0 ||
        check_match(c.op, "a's columns must equal b's rows", c.in[0], 1, c.in[1], 0) < 0)
        goto done;
    PyObject *a = (PyObject *)c.in[0], *b = (PyObject *)c.in[1];
    vg_result(&c, vg_matmul(module, c.op, a, 0, b, 0));
done:
    return vg_finish(&c);
}

/* matmul_backward(go, a, b) -> (np.matmul(go, b.T), np.matmul(a.T, go)) */
VG_BOUNDARY(matmul_backward)
{
    static const char *const names[] = {"the upstream gradient", "a", "b"};
    vg_call c;
    if (begin_product(&c, module, "MatrixMultiply backward", names, args, nargs, 3) < 0 ||
        check_match(c.op, "a's columns must equal b's rows", c.in[1], 1, c.in[2], 0) < 0 ||
        check_match(c.op, "go needs a's rows", c.in[0], 0, c.in[1], 0) < 0 ||
        check_match(c.op, "go needs b's columns", c.in[0], 1, c.in[2], 1) < 0)
        goto done;
    PyObject *go = (PyObject *)c.in[0], *a = (PyObject *)c.in[1], *b = (PyObject *)c.in[2];
    if (vg_result(&c, vg_matmul(module, c.op, go, 0, b, 1)) == NULL)
        goto done;
    vg_result(&c, vg_matmul(module, c.op, a, 1, go, 0));
done:
    return vg_finish(&c);
}

/* batchmm_forward(matrix, vectors) -> np.matmul(vectors, matrix.T) */
VG_BOUNDARY(batchmm_forward)
{
    static const char *const names[] = {"the matrix", "the vectors"};
    vg_call c;
    if (begin_product(&c, module, "BatchMM", names, args, nargs, 2) < 0 ||
        check_match(c.op, "the matrix's columns must equal the vectors' length", c.in[0], 1, c.in[1], 1) < 0)
        goto done;
    PyObject *matrix = (PyObject *)c.in[0], *vectors = (PyObject *)c.in[1];
    vg_result(&c, vg_matmul(module, c.op, vectors, 0, matrix, 1));
done:
    return vg_finish(&c);
}

/* batchmm_backward(go, matrix, vectors) -> (np.matmul(go.T, vectors), np.matmul(go, matrix)) */
VG_BOUNDARY(batchmm_backward)
{
    static const char *const names[] = {"the upstream gradient", "the matrix", "the vectors"};
    vg_call c;
    if (begin_product(&c, module, "BatchMM backward", names, args, nargs, 3) < 0 ||
        check_match(c.op, "the matrix's columns must equal the vectors' length", c.in[1], 1, c.in[2], 1) < 0 ||
        check_match(c.op, "go needs one row per vector", c.in[0], 0, c.in[2], 0) < 0 ||
        check_match(c.op, "go needs one column per matrix row", c.in[0], 1, c.in[1], 0) < 0)
        goto done;
    PyObject *go = (PyObject *)c.in[0], *matrix = (PyObject *)c.in[1], *vectors = (PyObject *)c.in[2];
    if (vg_result(&c, vg_matmul(module, c.op, go, 1, vectors, 0)) == NULL)
        goto done;
    vg_result(&c, vg_matmul(module, c.op, go, 0, matrix, 0));
done:
    return vg_finish(&c);
}
