/*
 * nn.h — helpers shared by the neural-network kernels (conv.c, pool.c, nn.c): reading the window
 * geometry (kernel size, stride, padding) a boundary function was given, and the output size it implies.
 * Static inline, so each file gets its own copy and nothing is added to the module's exported symbols.
 */
#ifndef VGRAD_NN_H
#define VGRAD_NN_H

#include "checked.h"

/* Parse args[0..n-1] as ints into out[], each at least `min`; `names` says what each one is. */
static inline int vg_parse_ints_at_least(const char *op, const char *const *names, PyObject *const *args,
                                         int n, Py_ssize_t min, Py_ssize_t *out)
{
    for (int i = 0; i < n; i++) {
        if (vg_parse_int(op, names[i], args[i], &out[i]) < 0)
            return -1;
        if (out[i] < min) {
            PyErr_Format(PyExc_ValueError, "%s: %s must be at least %zd, got %zd", op, names[i], min, out[i]);
            return -1;
        }
    }
    return 0;
}

/* The number of positions of a window of size k, moved by `stride`, over `size` + 2 * pad elements:
   floor((size + 2 pad - k) / stride) + 1. -1 with ValueError when the window does not fit at all, or when
   the padded size is too large for any array (padding=2**62 must not overflow 2 * pad). */
static inline npy_intp vg_window_count(const char *op, const char *axis, npy_intp size, Py_ssize_t k,
                                       Py_ssize_t stride, Py_ssize_t pad)
{
    npy_intp twice, span;
    if (size < 0 || k < 1 || stride < 1 || pad < 0) { /* the callers check these; a kernel must never see them */
        PyErr_Format(PyExc_ValueError, "%s: invalid window along the %s: size %zd, window %zd, stride %zd, "
                     "padding %zd", op, axis, (Py_ssize_t)size, k, stride, pad);
        return -1;
    }
    if (__builtin_mul_overflow((npy_intp)pad, (npy_intp)2, &twice) || __builtin_add_overflow(size, twice, &span)) {
        PyErr_Format(PyExc_ValueError, "%s: the padded %s (%zd + 2 x %zd) is too large", op, axis,
                     (Py_ssize_t)size, pad);
        return -1;
    }
    if (span < k) {
        PyErr_Format(PyExc_ValueError,
                     "%s: the window (size %zd) is larger than the input's %s (%zd, with padding %zd)",
                     op, k, axis, (Py_ssize_t)size, pad);
        return -1;
    }
    return (span - k) / stride + 1; /* 0 <= span - k, stride >= 1: no overflow, and the result is <= span */
}

/* ValueError naming the op and the shape unless arr has exactly 4 dimensions (N, C, H, W). */
static inline int vg_check_nchw(const char *op, const char *what, PyArrayObject *arr)
{
    if (PyArray_NDIM(arr) == 4)
        return 0;
    PyObject *s = PyArray_IntTupleFromIntp(PyArray_NDIM(arr), PyArray_DIMS(arr));
    if (s)
        PyErr_Format(PyExc_ValueError, "%s: %s must be a batch of images (N, C, H, W), got shape %S", op, what,
                     s);
    Py_XDECREF(s);
    return -1;
}

#endif /* VGRAD_NN_H */
