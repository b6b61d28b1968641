/*
 * accumulate.c — the one step of backpropagation that vgrad/core.py hands to C: adding a gradient into the
 * gradient a node already has, `current += grad` (the multivariate chain rule: every op that uses a node
 * adds its part, dL/dx = sum over the consumers c of dL/dc dc/dx). NumPy's += costs about a microsecond of
 * dispatch for the small arrays of course networks, more than the addition itself; here the common case
 * (same float dtype, both C-contiguous, native byte order, no overlap) is a plain loop (accumulate_kernels.h),
 * and anything else is NumPy's += itself, so the result is the same. The boundary is one vg_call (vgrad.h)
 * with no array arguments: add_into takes whatever += takes.
 */
#include "vgrad.h"

#define VG_TEMPLATE "accumulate_kernels.h"
#include "instantiate.h"

/* True if the buffers of two C-contiguous arrays of one size share memory without being the same buffer
   (x += x is fine element by element; x += shifted x is not). */
static int partly_overlap(PyArrayObject *a, PyArrayObject *b)
{
    const char *pa = PyArray_BYTES(a), *pb = PyArray_BYTES(b);
    npy_intp bytes = PyArray_NBYTES(a);
    return pa != pb && pa < pb + bytes && pb < pa + bytes;
}

/* Both arrays in the layout the kernel takes: one float type, C-contiguous, native, one shape, no partial
   overlap; current writable. */
static int plain_pair(PyObject *current, PyObject *grad)
{
    if (!PyArray_CheckExact(current) || !PyArray_CheckExact(grad))
        return 0;
    PyArrayObject *c = (PyArrayObject *)current, *g = (PyArrayObject *)grad;
    const int type = PyArray_TYPE(c);
    return (type == NPY_DOUBLE || type == NPY_FLOAT) && PyArray_TYPE(g) == type && PyArray_ISCARRAY(c) &&
           PyArray_ISCARRAY_RO(g) && PyArray_ISNOTSWAPPED(c) && PyArray_ISNOTSWAPPED(g) && PyArray_SAMESHAPE(c, g) &&
           !partly_overlap(c, g);
}

/* add_into(current, grad) -> current after current += grad; current must be writable. */
VG_BOUNDARY(add_into)
{
    vg_call c;
    if (vg_begin(&c, module, "add_into", args, nargs, 2, 0, 0) < 0)
        goto done;
    PyObject *current = args[0], *grad = args[1];
    if (!plain_pair(current, grad)) {
        vg_result(&c, PyNumber_InPlaceAdd(current, grad));
        goto done;
    }
    PyArrayObject *a = (PyArrayObject *)current;
    const npy_intp n = PyArray_SIZE(a);
    PyThreadState *gil = vg_release_gil(n);
    VG_CALL(PyArray_TYPE(a), add_into, PyArray_DATA(a), PyArray_DATA((PyArrayObject *)grad), n);
    vg_restore_gil(gil);
    vg_result(&c, Py_NewRef(current));
done:
    return vg_finish(&c);
}
