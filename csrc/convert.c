/*
 * convert.c — the dtype rules and conversions the boundary (boundary.c's vg_call) applies, and the parsers of
 * its other arguments. No kernels and no gradients here.
 *
 *   - the compute type: float32 when every input is float32 (or float16), float64 otherwise; complex, object,
 *     string and other dtypes are a TypeError naming the op (vg_compute_type);
 *   - the built-in ops' rule on top (vg_compute_type_exact): dtypes their kernels do not compute (bool,
 *     integers, float16, long double), and float32 mixed with float64 in a formula of several operations,
 *     are declined with vgrad._C.UseReference, and the op's NumPy Reference computes them with NumPy's
 *     dtype rules;
 *   - conversion to aligned, native, contiguous arrays (a copy only when needed), allocation with the op
 *     named in every error, ints, shapes and indices given by Python.
 */
#include "checked.h"

int vg_check_nargs(const char *op, Py_ssize_t nargs, Py_ssize_t expected)
{
    if (nargs == expected)
        return 0;
    PyErr_Format(PyExc_TypeError, "%s: expected %zd arguments, got %zd", op, expected, nargs);
    return -1;
}

/* The dtype np.asarray(obj) would have; a new reference, or NULL with an exception. */
static PyArray_Descr *dtype_of(PyObject *obj)
{
    if (PyArray_Check(obj)) {
        PyArray_Descr *d = PyArray_DESCR((PyArrayObject *)obj);
        Py_INCREF(d);
        return d;
    }
    PyArrayObject *arr = (PyArrayObject *)PyArray_FROM_O(obj);
    if (arr == NULL)
        return NULL;
    PyArray_Descr *d = PyArray_DESCR(arr);
    Py_INCREF(d);
    Py_DECREF(arr);
    return d;
}

int vg_compute_type(const char *op, PyObject *const *objs, int n)
{
    int all_single = 1;
    for (int i = 0; i < n; i++) {
        PyArray_Descr *d = dtype_of(objs[i]);
        if (d == NULL) {
            /* A TypeError from the object's own __array__ says what to do instead (a TensorNode names
               node.value and do_forward): keep its words after the op's name. Anything else gets ours. */
            PyObject *type, *value, *traceback;
            PyErr_Fetch(&type, &value, &traceback);
            PyObject *words = NULL;
            if (type != NULL && PyErr_GivenExceptionMatches(type, PyExc_TypeError) && value != NULL)
                words = PyObject_Str(value);
            Py_XDECREF(type);
            Py_XDECREF(value);
            Py_XDECREF(traceback);
            PyErr_Clear();
            if (words != NULL)
                PyErr_Format(PyExc_TypeError, "%s: cannot use an object of type %s as an array: %U",
                             op, Py_TYPE(objs[i])->tp_name, words);
            else
                PyErr_Format(PyExc_TypeError, "%s: cannot use an object of type %s as an array",
                             op, Py_TYPE(objs[i])->tp_name);
            Py_XDECREF(words);
            return -1;
        }
        int type = d->type_num;
        switch (type) {
        case NPY_HALF:
        case NPY_FLOAT:
            break;
        case NPY_DOUBLE:
        case NPY_LONGDOUBLE:
        case NPY_BOOL:
        case NPY_BYTE: case NPY_UBYTE: case NPY_SHORT: case NPY_USHORT:
        case NPY_INT: case NPY_UINT: case NPY_LONG: case NPY_ULONG:
        case NPY_LONGLONG: case NPY_ULONGLONG:
            all_single = 0;
            break;
        default:
            PyErr_Format(PyExc_TypeError,
                         "%s: unsupported dtype %S; vgrad computes with float32, float64, integer and bool "
                         "arrays", op, (PyObject *)d);
            Py_DECREF(d);
            return -1;
        }
        Py_DECREF(d);
    }
    return all_single ? NPY_FLOAT : NPY_DOUBLE;
}

PyArrayObject *vg_as_contiguous(const char *op, PyObject *obj, int typenum)
{
    return vg_as_contiguous_order(op, obj, typenum, 0);
}

PyArrayObject *vg_as_contiguous_order(const char *op, PyObject *obj, int typenum, int fortran)
{
    /* The common case first, without NumPy's general conversion machinery: already an ndarray of the
       right type, contiguous, aligned and in native byte order. Small arrays make this path matter. */
    if (PyArray_CheckExact(obj)) {
        PyArrayObject *a = (PyArrayObject *)obj;
        if (PyArray_TYPE(a) == typenum && (fortran ? PyArray_ISFARRAY_RO(a) : PyArray_ISCARRAY_RO(a)) &&
            PyArray_ISNOTSWAPPED(a)) {
            Py_INCREF(obj);
            return a;
        }
    }
    /* FORCECAST: long double to double is the one narrowing cast the dtype policy allows. */
    PyObject *arr = PyArray_FROMANY(obj, typenum, 0, 0,
                                    (fortran ? NPY_ARRAY_FARRAY_RO : NPY_ARRAY_IN_ARRAY) | NPY_ARRAY_ENSUREARRAY |
                                        NPY_ARRAY_FORCECAST);
    if (arr == NULL && PyErr_ExceptionMatches(PyExc_MemoryError))
        vg_name_memory_error(op);
    else if (arr == NULL) {
        PyObject *type, *value, *tb;
        PyErr_Fetch(&type, &value, &tb);
        PyErr_Format(PyExc_TypeError, "%s: cannot convert the input to %s: %S", op,
                     typenum == NPY_FLOAT ? "float32" : "float64", value ? value : Py_None);
        Py_XDECREF(type);
        Py_XDECREF(value);
        Py_XDECREF(tb);
    }
    return (PyArrayObject *)arr;
}

void vg_release(PyArrayObject **arr, int n)
{
    for (int i = 0; i < n; i++)
        Py_CLEAR(arr[i]);
}

int vg_prepare(const char *op, PyObject *const *objs, int n, PyArrayObject **out)
{
    for (int i = 0; i < n; i++)
        out[i] = NULL;
    int typenum = vg_compute_type(op, objs, n);
    if (typenum < 0)
        return -1;
    for (int i = 0; i < n; i++) {
        out[i] = vg_as_contiguous(op, objs[i], typenum);
        if (out[i] == NULL) {
            vg_release(out, i);
            return -1;
        }
    }
    return typenum;
}

/* NumPy's refusals ("array is too big", "Unable to allocate 8.00 TiB ..."), with the op that asked. */
static PyArrayObject *named_allocation_error(const char *op, int ndim, const npy_intp *dims)
{
    if (PyErr_ExceptionMatches(PyExc_MemoryError)) {
        vg_name_memory_error(op);
        return NULL;
    }
    PyObject *type, *value, *tb;
    PyErr_Fetch(&type, &value, &tb);
    vg_shape_error(op, "cannot allocate a result of shape %s: %S", VG_DIMS(ndim, dims), value ? value : Py_None);
    Py_XDECREF(type);
    Py_XDECREF(value);
    Py_XDECREF(tb);
    return NULL;
}

/* ValueError naming the op unless an array of this shape and type can exist (checked.h's rule, NumPy's). */
static int check_result_shape(const char *op, int ndim, const npy_intp *dims, int typenum)
{
    npy_intp itemsize = typenum == NPY_INTP ? (npy_intp)sizeof(npy_intp) : vg_itemsize(typenum);
    return vg_check_shape(op, "the result", ndim, dims, itemsize);
}

PyArrayObject *vg_empty(const char *op, int ndim, const npy_intp *dims, int typenum)
{
    if (check_result_shape(op, ndim, dims, typenum) < 0)
        return NULL;
    PyObject *arr = vg_cached_array(ndim, dims, PyArray_DescrFromType(typenum), 0, 0);
    return arr ? (PyArrayObject *)arr : named_allocation_error(op, ndim, dims);
}

PyArrayObject *vg_empty_order(const char *op, int ndim, const npy_intp *dims, int typenum, int fortran)
{
    if (check_result_shape(op, ndim, dims, typenum) < 0)
        return NULL;
    PyObject *arr = vg_cached_array(ndim, dims, PyArray_DescrFromType(typenum), fortran, 0);
    return arr ? (PyArrayObject *)arr : named_allocation_error(op, ndim, dims);
}

PyArrayObject *vg_zeros(const char *op, int ndim, const npy_intp *dims, int typenum)
{
    if (check_result_shape(op, ndim, dims, typenum) < 0)
        return NULL;
    PyObject *arr = vg_cached_array(ndim, dims, PyArray_DescrFromType(typenum), 0, 1);
    return arr ? (PyArrayObject *)arr : named_allocation_error(op, ndim, dims);
}

int vg_parse_shape(const char *op, const char *what, PyObject *obj, PyArray_Dims *dims)
{
    dims->ptr = NULL;
    dims->len = 0;
    if (!PyArray_IntpConverter(obj, dims)) {
        PyErr_Clear();
        PyErr_Format(PyExc_TypeError, "%s: %s must be a shape (a tuple of ints), got %R", op, what, obj);
        return -1;
    }
    /* No negative dimension, and no product of dimensions that overflows (the callers index with them). */
    if (vg_check_shape(op, what, dims->len, dims->ptr, 1) < 0) {
        PyDimMem_FREE(dims->ptr);
        dims->ptr = NULL;
        return -1;
    }
    return 0;
}

int vg_parse_int(const char *op, const char *what, PyObject *obj, Py_ssize_t *value)
{
    if (!PyIndex_Check(obj) || PyBool_Check(obj)) {
        PyErr_Format(PyExc_TypeError, "%s: %s must be an int, got %s", op, what, Py_TYPE(obj)->tp_name);
        return -1;
    }
    Py_ssize_t v = PyNumber_AsSsize_t(obj, PyExc_OverflowError);
    if (v == -1 && PyErr_Occurred()) {
        /* Too large is a bad value; anything else (an array of several ints has __index__ but fails) is
           the wrong type. */
        int overflow = PyErr_ExceptionMatches(PyExc_OverflowError);
        PyErr_Clear();
        if (overflow)
            PyErr_Format(PyExc_ValueError, "%s: %s=%R is out of range", op, what, obj);
        else
            PyErr_Format(PyExc_TypeError, "%s: %s must be an int, got %s", op, what, Py_TYPE(obj)->tp_name);
        return -1;
    }
    *value = v;
    return 0;
}

int vg_normalize_axis(const char *op, Py_ssize_t *axis, int ndim)
{
    if (*axis < -ndim || *axis >= ndim) {
        PyErr_Format(PyExc_ValueError, "%s: dim %zd is out of range for an array with %d dimensions",
                     op, *axis, ndim);
        return -1;
    }
    if (*axis < 0)
        *axis += ndim;
    return 0;
}

PyArrayObject *vg_as_indices(const char *op, const char *what, PyObject *obj, npy_intp count)
{
    PyArray_Descr *d = dtype_of(obj);
    if (d == NULL) {
        PyErr_Clear();
        PyErr_Format(PyExc_TypeError, "%s: %s must be an integer array, got %s", op, what,
                     Py_TYPE(obj)->tp_name);
        return NULL;
    }
    int integer = PyTypeNum_ISINTEGER(d->type_num), is_unsigned = PyTypeNum_ISUNSIGNED(d->type_num);
    if (!integer) {
        PyErr_Format(PyExc_TypeError, "%s: %s must be an integer array, got dtype %S", op, what,
                     (PyObject *)d);
        Py_DECREF(d);
        return NULL;
    }
    Py_DECREF(d);
    /* uint64 values beyond intp's range become negative in the cast; they are caught just below. */
    PyArrayObject *idx = (PyArrayObject *)PyArray_FROMANY(
        obj, NPY_INTP, 0, 0, NPY_ARRAY_IN_ARRAY | NPY_ARRAY_ENSUREARRAY | NPY_ARRAY_FORCECAST);
    if (idx == NULL)
        return NULL;
    if (is_unsigned) {
        const npy_intp *v = PyArray_DATA(idx), n = PyArray_SIZE(idx); /* (a call into NumPy: not per element) */
        for (npy_intp i = 0; i < n; i++) {
            if (v[i] < 0) {
                PyErr_Format(PyExc_IndexError, "%s: %s holds an index too large for any array", op, what);
                Py_DECREF(idx);
                return NULL;
            }
        }
    }
    if (PyArray_SIZE(idx) != count) {
        vg_shape_error(op, "%s must have %zd elements (one per row), got shape %s", what, (Py_ssize_t)count,
                       VG_SHAPE(idx));
        Py_DECREF(idx);
        return NULL;
    }
    return idx;
}

/* ---- the built-in ops' rule: declining to the NumPy Reference, and the layouts the kernels take ---------- */

int vg_decline(PyObject *module, const char *op, const char *why)
{
    PyErr_Format(vg_numpy(module)->use_reference, "%s: %s; the op's NumPy Reference computes it", op, why);
    return -1;
}

/* The dtype NumPy sees for obj if it is an array or a NumPy scalar (a new reference), else NULL. */
static PyArray_Descr *numpy_dtype(PyObject *obj)
{
    if (PyArray_Check(obj)) {
        PyArray_Descr *d = PyArray_DESCR((PyArrayObject *)obj);
        Py_INCREF(d);
        return d;
    }
    if (PyArray_IsScalar(obj, Generic))
        return PyArray_DescrFromScalar(obj);
    return NULL;
}

int vg_compute_type_exact(PyObject *module, const char *op, PyObject *const *objs, int n, int mixing)
{
    int singles = 0, doubles = 0;
    for (int i = 0; i < n; i++) {
        PyArray_Descr *d = numpy_dtype(objs[i]);
        if (d == NULL) {
            /* a Python number or list: computed in float64 (as np.asarray gives it, for floats) */
            PyObject *a = PyArray_FROM_O(objs[i]);
            if (a == NULL)
                PyErr_Clear(); /* vg_compute_type says what is wrong with it */
            else if (PyTypeNum_ISNUMBER(PyArray_TYPE((PyArrayObject *)a)) &&
                     !PyTypeNum_ISCOMPLEX(PyArray_TYPE((PyArrayObject *)a)))
                doubles++;
            Py_XDECREF(a);
            continue;
        }
        int t = d->type_num;
        if (PyTypeNum_ISBOOL(t) || PyTypeNum_ISINTEGER(t) || t == NPY_HALF || t == NPY_LONGDOUBLE) {
            PyErr_Format(vg_numpy(module)->use_reference,
                         "%s: the kernel computes float32 and float64, not %S; the op's NumPy Reference "
                         "computes it", op, (PyObject *)d);
            Py_DECREF(d);
            return -1;
        }
        singles += t == NPY_FLOAT;
        doubles += t == NPY_DOUBLE;
        Py_DECREF(d);
    }
    if (mixing == VG_SAME_FLOAT && singles && doubles) {
        vg_decline(module, op, "its formula mixes float32 and float64 arrays, which NumPy promotes operation by "
                               "operation");
        return -1;
    }
    return vg_compute_type(op, objs, n);
}

int vg_is_plain_c(PyObject *obj, int typenum)
{
    if (!PyArray_Check(obj))
        return 0;
    PyArrayObject *a = (PyArrayObject *)obj;
    return PyArray_TYPE(a) == typenum && PyArray_ISCARRAY_RO(a) && PyArray_ISNOTSWAPPED(a);
}

int vg_is_plain_f(PyObject *obj, int typenum)
{
    if (!PyArray_Check(obj))
        return 0;
    PyArrayObject *a = (PyArrayObject *)obj;
    return PyArray_TYPE(a) == typenum && PyArray_ISFARRAY_RO(a) && PyArray_ISNOTSWAPPED(a);
}
