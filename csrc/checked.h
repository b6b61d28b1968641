/*
 * checked.h — arithmetic on sizes that come from the user (shapes, kernel sizes, strides, padding).
 *
 * A kernel indexes its buffers with products of sizes (n C H W, OH OW, C kh kw N OH OW, ...). If any such
 * product wraps around, a buffer is allocated too small and the kernel writes past it, or the signed
 * overflow is undefined behaviour on its own. So every size a boundary function computes from its
 * arguments is checked first, once per call (never in a kernel's loops), with __builtin_*_overflow: by
 * these helpers, or by vg_window_count (nn.h) for size + 2 pad. Each fails with ValueError naming the op
 * and saying what was asked for.
 *
 * The rule for a whole shape is NumPy's: the dimensions that are not 0 must multiply to a byte count that
 * fits in npy_intp. An array that is empty because one dimension is 0 still may not have other dimensions
 * whose product overflows, so every partial product a kernel computes (OH OW, H W, N C, ...) fits too.
 * Static inline, like nn.h: nothing is added to the module's exported symbols.
 */
#ifndef VGRAD_CHECKED_H
#define VGRAD_CHECKED_H

#include "vgrad.h"

/* *out = a * b for sizes a, b >= 0, or -1 with ValueError "<op>: <what> (a x b) is too large". */
static inline int vg_mul_sizes(const char *op, const char *what, npy_intp a, npy_intp b, npy_intp *out)
{
    if (a >= 0 && b >= 0 && !__builtin_mul_overflow(a, b, out))
        return 0;
    PyErr_Format(PyExc_ValueError, "%s: %s (%zd x %zd) is too large", op, what, (Py_ssize_t)a, (Py_ssize_t)b);
    return -1;
}

/* The bytes of one element of the compute type `typenum` (NPY_FLOAT or NPY_DOUBLE). */
static inline npy_intp vg_itemsize(int typenum)
{
    return typenum == NPY_FLOAT ? (npy_intp)sizeof(float) : (npy_intp)sizeof(double);
}

/* 0 if an array of shape dims[0..ndim-1] with elements of `itemsize` bytes can exist: every dimension >= 0
   and those that are not 0 multiplying (with itemsize) to at most NPY_MAX_INTP bytes. Otherwise -1 with
   ValueError "<op>: <what> (d0, d1, ...) is too large" (or "has a negative dimension"). */
static inline int vg_check_shape(const char *op, const char *what, int ndim, const npy_intp *dims,
                                 npy_intp itemsize)
{
    npy_intp bytes = itemsize;
    int negative = 0, overflow = 0;
    for (int i = 0; i < ndim; i++) {
        if (dims[i] < 0)
            negative = 1;
        else if (dims[i] > 0 && (overflow || __builtin_mul_overflow(bytes, dims[i], &bytes)))
            overflow = 1;
    }
    if (!negative && !overflow)
        return 0;
    return vg_shape_error(op, "%s %s %s", what, VG_DIMS(ndim, dims),
                          negative ? "has a negative dimension" : "is too large");
}

/* If the exception set is a MemoryError (NumPy's "Unable to allocate 8.00 TiB for an array with shape ..."),
   replace it with a MemoryError whose message names the op as well. Other exceptions are left as they are. */
static inline void vg_name_memory_error(const char *op)
{
    if (!PyErr_ExceptionMatches(PyExc_MemoryError))
        return;
    PyObject *type, *value, *tb;
    PyErr_Fetch(&type, &value, &tb);
    PyErr_NormalizeException(&type, &value, &tb);
    PyObject *text = value ? PyObject_Str(value) : NULL;
    if (text && PyUnicode_GetLength(text) > 0)
        PyErr_Format(PyExc_MemoryError, "%s: %U", op, text);
    else {
        PyErr_Clear(); /* (from a failed str(); the out-of-memory message below says it) */
        PyErr_Format(PyExc_MemoryError, "%s: out of memory", op);
    }
    Py_XDECREF(text);
    Py_XDECREF(type);
    Py_XDECREF(value);
    Py_XDECREF(tb);
}

#endif /* VGRAD_CHECKED_H */
