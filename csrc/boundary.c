/*
 * boundary.c — the one boundary helper, vg_call (documented in vgrad.h), and the shape errors.
 *
 * Every boundary function of functions.def begins with vg_begin (count the positional arguments, pick the
 * compute type, prepare the array arguments: vg_arrays, which a function calls itself when it must read other
 * arguments first), asks the call for its outputs (vg_output), scratch arrays
 * (vg_scratch_array), indices, shapes and ints (vg_arg_*), runs its kernel under the GIL rule (vg_release_gil /
 * vg_restore_gil, in vgrad.h), and ends in `done: return vg_finish(&c);`. The call owns every reference it
 * hands out, so no function releases anything itself, on success or on error: an error anywhere sets an
 * exception and jumps to done, and vg_finish returns NULL. The dtype rules and conversions it applies are
 * convert.c's.
 *
 * Shape errors: vg_shape_error formats "<op>: <message>" with shapes written as Python writes tuples
 * (VG_SHAPE, VG_DIMS), so every message about a shape reads the same way.
 */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "checked.h"

/* ---- the call ------------------------------------------------------------------------------------- */

/* The compute type when every array argument is an ndarray of float32 or float64 (the common case, decided
   without looking at dtypes' objects), else -1: the general rules decide (and may decline or refuse). */
static int float_arrays_type(PyObject *const *objs, int n, int flags)
{
    int singles = 0, doubles = 0;
    for (int i = 0; i < n; i++) {
        if (!PyArray_Check(objs[i]))
            return -1;
        const int t = PyArray_TYPE((PyArrayObject *)objs[i]);
        singles += t == NPY_FLOAT;
        doubles += t == NPY_DOUBLE;
    }
    if (singles + doubles != n || (singles && doubles && (flags & VG_SAME_FLOAT)))
        return -1;
    return doubles ? NPY_DOUBLE : NPY_FLOAT;
}

/* Every argument is an array in Fortran order and one is not also in C order: NumPy's element-wise result is
   then in Fortran order (and a later sum adds it in that order). */
static int fortran_arrays(PyObject *const *objs, int n)
{
    int only_fortran = 0;
    for (int i = 0; i < n; i++) {
        if (!PyArray_Check(objs[i]) || !PyArray_IS_F_CONTIGUOUS((PyArrayObject *)objs[i]))
            return 0;
        only_fortran |= !PyArray_IS_C_CONTIGUOUS((PyArrayObject *)objs[i]);
    }
    return only_fortran;
}

int vg_begin(vg_call *c, PyObject *module, const char *op, PyObject *const *args, Py_ssize_t nargs, int expected,
             int arrays, int flags)
{
    c->module = module;
    c->op = op;
    c->args = args;
    c->nargs = nargs;
    c->type = -1;
    c->fortran = 0;
    c->n_in = c->n_results = c->n_kept = 0;
    if (vg_check_nargs(op, nargs, expected) < 0)
        return -1;
    return arrays == 0 ? 0 : vg_arrays(c, arrays, flags);
}

int vg_arrays(vg_call *c, int arrays, int flags)
{
    const char *op = c->op;
    PyObject *const *args = c->args;
    if (c->n_in != 0 || arrays > VG_MAX_ARRAYS || arrays > c->nargs) {
        PyErr_Format(PyExc_SystemError, "%s: vg_arrays asked for %d arrays", op, arrays);
        return -1;
    }
    int t = float_arrays_type(args, arrays, flags);
    if (t < 0 && (flags & VG_ANY_REAL))
        t = vg_compute_type(op, args, arrays);
    else if (t < 0)
        t = vg_compute_type_exact(c->module, op, args, arrays, flags & VG_SAME_FLOAT);
    if (t < 0)
        return -1;
    c->type = t;
    c->fortran = (flags & VG_KEEP_FORTRAN) && fortran_arrays(args, arrays);
    for (int i = 0; i < arrays; i++) {
        PyArrayObject *a = (flags & VG_AS_GIVEN) && PyArray_Check(args[i])
                               ? (PyArrayObject *)Py_NewRef(args[i])
                               : vg_as_contiguous_order(op, args[i], t, c->fortran);
        if (a == NULL)
            return -1;
        c->in[c->n_in++] = a;
    }
    return 0;
}

PyObject *vg_finish(vg_call *c)
{
    PyObject *r = NULL;
    if (!PyErr_Occurred()) {
        if (c->n_results == 1) {
            r = c->results[0];
            c->n_results = 0;
        }
        else if (c->n_results > 1) {
            if ((r = PyTuple_New(c->n_results)) != NULL) {
                for (int i = 0; i < c->n_results; i++)
                    PyTuple_SET_ITEM(r, i, c->results[i]); /* stolen */
                c->n_results = 0;
            }
        }
        else
            PyErr_Format(PyExc_SystemError, "%s: the boundary function made no result", c->op);
    }
    vg_release(c->in, c->n_in);
    for (int i = 0; i < c->n_results; i++)
        Py_DECREF(c->results[i]);
    for (int i = 0; i < c->n_kept; i++)
        Py_DECREF(c->kept[i]);
    c->n_in = c->n_results = c->n_kept = 0;
    return r;
}

void *vg_result(vg_call *c, void *obj)
{
    if (obj == NULL)
        return NULL;
    if (c->n_results == VG_MAX_RESULTS) {
        Py_DECREF((PyObject *)obj);
        PyErr_Format(PyExc_SystemError, "%s: more than %d results", c->op, VG_MAX_RESULTS);
        return NULL;
    }
    c->results[c->n_results++] = obj;
    return obj;
}

void *vg_keep(vg_call *c, void *obj)
{
    if (obj == NULL)
        return NULL;
    if (c->n_kept == VG_MAX_KEPT) {
        Py_DECREF((PyObject *)obj);
        PyErr_Format(PyExc_SystemError, "%s: more than %d kept references", c->op, VG_MAX_KEPT);
        return NULL;
    }
    c->kept[c->n_kept++] = obj;
    return obj;
}

PyArrayObject *vg_output(vg_call *c, int ndim, const npy_intp *dims)
{
    return vg_result(c, vg_empty_order(c->op, ndim, dims, c->type, c->fortran));
}

PyArrayObject *vg_output_zeros(vg_call *c, int ndim, const npy_intp *dims)
{
    return vg_result(c, vg_zeros(c->op, ndim, dims, c->type));
}

PyArrayObject *vg_output_of(vg_call *c, int ndim, const npy_intp *dims, int typenum)
{
    return vg_result(c, vg_empty(c->op, ndim, dims, typenum));
}

PyArrayObject *vg_scratch_array(vg_call *c, int ndim, const npy_intp *dims)
{
    return vg_keep(c, vg_empty(c->op, ndim, dims, c->type));
}

PyArrayObject *vg_input(vg_call *c, PyObject *obj)
{
    if (vg_compute_type(c->op, &obj, 1) < 0)
        return NULL;
    return vg_keep(c, vg_as_contiguous(c->op, obj, c->type));
}

/* ---- the other arguments ---------------------------------------------------------------------------- */

int vg_arg_int(vg_call *c, int i, const char *what, Py_ssize_t *value)
{
    return vg_parse_int(c->op, what, c->args[i], value);
}

int vg_arg_bool(vg_call *c, int i, int *value)
{
    return (*value = PyObject_IsTrue(c->args[i])) < 0 ? -1 : 0;
}

int vg_arg_shape(vg_call *c, int i, const char *what, int ndim, npy_intp *dims, int *ndim_out)
{
    PyArray_Dims shape;
    if (vg_parse_shape(c->op, what, c->args[i], &shape) < 0)
        return -1;
    const int ok = ndim < 0 || shape.len == ndim;
    if (ok) {
        if (shape.len > 0)
            memcpy(dims, shape.ptr, sizeof(npy_intp) * (size_t)shape.len);
        if (ndim_out != NULL)
            *ndim_out = shape.len;
    }
    else
        vg_shape_error(c->op, "%s must have %d dimensions, got %R", what, ndim, c->args[i]);
    PyDimMem_FREE(shape.ptr);
    return ok ? 0 : -1;
}

const npy_intp *vg_arg_indices(vg_call *c, int i, const char *what, npy_intp count, npy_intp limit, int flags)
{
    PyArrayObject *idx = vg_keep(c, vg_as_indices(c->op, what, c->args[i], count));
    if (idx == NULL)
        return NULL;
    /* judged after conversion, so that a nested list is refused as the 2-D array it makes */
    if ((flags & VG_INDEX_VECTOR) && PyArray_NDIM(idx) != 1) {
        vg_shape_error(c->op, "%s must be a vector with one index per row, got shape %s", what, VG_SHAPE(idx));
        return NULL;
    }
    const npy_intp low = (flags & VG_INDEX_WRAP) ? -limit : 0, *k = PyArray_DATA(idx);
    int negative = 0;
    for (npy_intp j = 0; j < count; j++) {
        if (k[j] < low || k[j] >= limit) {
            PyErr_Format(PyExc_IndexError, "%s: %s[%zd] = %zd is out of range for a length of %zd", c->op, what,
                         (Py_ssize_t)j, (Py_ssize_t)k[j], (Py_ssize_t)limit);
            return NULL;
        }
        negative |= k[j] < 0;
    }
    if (!negative)
        return k;
    /* the indices may be the caller's own array: wrap the negative ones in a copy */
    PyArrayObject *own = vg_keep(c, PyArray_NewCopy(idx, NPY_CORDER));
    if (own == NULL)
        return NULL;
    npy_intp *w = PyArray_DATA(own);
    for (npy_intp j = 0; j < count; j++)
        if (w[j] < 0)
            w[j] += limit;
    return w;
}

/* ---- shape errors -------------------------------------------------------------------------------- */

int vg_shape_error(const char *op, const char *format, ...)
{
    va_list va;
    va_start(va, format);
    PyObject *message = PyUnicode_FromFormatV(format, va);
    va_end(va);
    if (message != NULL) {
        PyErr_Format(PyExc_ValueError, "%s: %U", op, message);
        Py_DECREF(message);
    }
    return -1;
}

const char *vg_shape_text(char *buf, int ndim, const npy_intp *dims)
{
    size_t used = 0, size = VG_SHAPE_CHARS;
    buf[used++] = '(';
    for (int i = 0; i < ndim && i < NPY_MAXDIMS; i++)
        used += (size_t)snprintf(buf + used, size - used, i ? ", %lld" : "%lld", (long long)dims[i]);
    if (ndim == 1)
        buf[used++] = ',';
    buf[used++] = ')';
    buf[used] = '\0';
    return buf;
}

int vg_check_same_shape(const char *op, const char *what, const char *hint, PyArrayObject *a, PyArrayObject *b)
{
    if (PyArray_SAMESHAPE(a, b))
        return 0;
    return vg_shape_error(op, "%s have different shapes %s and %s%s", what, VG_SHAPE(a), VG_SHAPE(b), hint);
}

int vg_check_ndim(const char *op, const char *what, PyArrayObject *arr, int ndim)
{
    if (PyArray_NDIM(arr) == ndim)
        return 0;
    return vg_shape_error(op, "%s must have %d dimensions, got shape %s", what, ndim, VG_SHAPE(arr));
}
