/*
 * accumulate.c — the one step of backpropagation that vgrad/core.py hands to C: adding a gradient into the
 * gradient a node already has, `current += grad` (the multivariate chain rule: every op that uses a node
 * adds its part). NumPy's += costs about a microsecond of dispatch for the small arrays of course networks,
 * more than the addition itself; here the common case (same float dtype, both C-contiguous, native byte
 * order, no overlap) is a plain loop, and anything else is NumPy's += itself, so the result is the same.
 */
#include "vgrad.h"

static void add_into_f32(float *restrict current, const float *restrict grad, npy_intp n)
{
    for (npy_intp i = 0; i < n; i++)
        current[i] += grad[i];
}

static void add_into_f64(double *restrict current, const double *restrict grad, npy_intp n)
{
    for (npy_intp i = 0; i < n; i++)
        current[i] += grad[i];
}

/* True if the buffers of two C-contiguous arrays of one size share memory without being the same buffer
   (x += x is fine element by element; x += shifted x is not). */
static int partly_overlap(PyArrayObject *a, PyArrayObject *b)
{
    const char *pa = PyArray_BYTES(a), *pb = PyArray_BYTES(b);
    npy_intp bytes = PyArray_NBYTES(a);
    return pa != pb && pa < pb + bytes && pb < pa + bytes;
}

/* add_into(current, grad) -> current after current += grad; current must be writable. */
VG_BOUNDARY(add_into)
{
    if (vg_check_nargs("add_into", nargs, 2) < 0)
        return NULL;
    PyObject *current = args[0], *grad = args[1];
    if (PyArray_CheckExact(current) && PyArray_CheckExact(grad)) {
        PyArrayObject *c = (PyArrayObject *)current, *g = (PyArrayObject *)grad;
        int type = PyArray_TYPE(c);
        if ((type == NPY_DOUBLE || type == NPY_FLOAT) && PyArray_TYPE(g) == type && PyArray_ISCARRAY(c) &&
            PyArray_ISCARRAY_RO(g) && PyArray_ISNOTSWAPPED(c) && PyArray_ISNOTSWAPPED(g) &&
            PyArray_SAMESHAPE(c, g) && !partly_overlap(c, g)) {
            npy_intp n = PyArray_SIZE(c);
            if (type == NPY_DOUBLE)
                add_into_f64(PyArray_DATA(c), PyArray_DATA(g), n);
            else
                add_into_f32(PyArray_DATA(c), PyArray_DATA(g), n);
            Py_INCREF(current);
            return current;
        }
    }
    return PyNumber_InPlaceAdd(current, grad);
}
