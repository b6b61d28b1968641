/*
 * npyloops.c — NumPy's own code, called from the kernels, so that float64 results are NumPy's (and so
 * vugrad's) bit for bit; and with_reference, the fallback of the built-in ops to their NumPy Reference.
 *
 * Why NumPy's own loops: np.exp and np.log run NumPy's vectorised implementations (AVX-512/SVML here), which
 * round differently from libm or any exp of ours in ~10% of cases; np.sum adds with its own pairwise
 * algorithm, whose order depends on how its reduction machinery splits the array. So at import we look up,
 * in the ufuncs' type tables, the inner loop NumPy itself selects for float64 (the first entry whose types
 * match, as NumPy's legacy loop selector does) and the kernels call it:
 *   - exp, log: on contiguous, aligned, native arrays, which is how NumPy calls the loop for such an array
 *     (one call over all elements with unit strides); the loop's code path depends only on the strides and
 *     on overlap, never on position, so calling it on consecutive pieces gives the same elements. Inputs
 *     NumPy would treat otherwise (other strides, unaligned, byte-swapped) go to the ufunc object itself.
 *   - add in reduce mode (args[0] == args[2], steps 0): NumPy's pairwise sum of one inner-loop run. NumPy's
 *     reduction starts the result at add's identity 0 and calls the loop once per run of the reduced axis
 *     when that axis is the innermost one of a contiguous array (np.sum of a vector, of a whole contiguous
 *     array, of each row of a C-ordered matrix); vg_sum does exactly that. Other layouts go to np.add.reduce.
 *   - matmul: np.matmul's inner loop for two matrices, called as NumPy's gufunc machinery calls it, which
 *     makes the BLAS call (or runs the loop) np.matmul would make (vg_matmul).
 * The loops are plain C functions that need no GIL; the ufunc objects stay referenced by the module state,
 * which keeps the loops alive. (Gradients: none here; these are the pieces the ops' kernels are made of.)
 *
 * The fallback: each built-in op's forward and backward in ops.py is a with_reference object (defined
 * below) holding the C-backed method and the Reference's. A kernel declines with vgrad._C.UseReference when
 * it gets a dtype it does not compute or a float64 layout whose NumPy evaluation order it does not
 * reproduce (convert.c's rule); with_reference then calls the Reference with the same arguments.
 */
#define PY_UFUNC_UNIQUE_SYMBOL vgrad_UFUNC_API
#include "vgrad.h"
#include "checked.h"

#include <float.h>

#include <numpy/ufuncobject.h>
#include <structmember.h>

/* ---- the loops ---------------------------------------------------------------------------------- */

void vg_exp_array_f64(const vg_loops *L, double *y, const double *x, npy_intp n)
{
    if (n <= 0)
        return;
    char *args[2] = {(char *)x, (char *)y};
    const npy_intp steps[2] = {sizeof(double), sizeof(double)};
    L->exp_f64.fn(args, &n, steps, L->exp_f64.data);
}

void vg_exp_array_f32(const vg_loops *L, float *y, const float *x, npy_intp n)
{
    (void)L;
    vg_exp_f32(y, x, n, 1.0f, 0.0f, -HUGE_VALF);
}

void vg_exp_negated_array_f64(const vg_loops *L, double *y, const double *x, npy_intp n)
{
    double minus_x[512]; /* a multiple of 8 elements: the pieces keep the SIMD lanes' grouping of one call */
    for (npy_intp start = 0; start < n; start += 512) {
        npy_intp len = n - start < 512 ? n - start : 512;
        for (npy_intp i = 0; i < len; i++)
            minus_x[i] = -x[start + i];
        vg_exp_array_f64(L, y + start, minus_x, len);
    }
}

void vg_exp_negated_array_f32(const vg_loops *L, float *y, const float *x, npy_intp n)
{
    (void)L;
    /* Floored at -20: below it 1 + e^v is 1 in float32 anyway, and vexp stays on its fast path. Only
       1 / (1 + y) may use the result (sigmoid's kernels). */
    vg_exp_f32(y, x, n, -1.0f, 0.0f, -20.0f);
}

void vg_log_array_f64(const vg_loops *L, double *y, const double *x, npy_intp n)
{
    if (n <= 0)
        return;
    char *args[2] = {(char *)x, (char *)y};
    const npy_intp steps[2] = {sizeof(double), sizeof(double)};
    L->log_f64.fn(args, &n, steps, L->log_f64.data);
}

void vg_log_array_f32(const vg_loops *L, float *y, const float *x, npy_intp n)
{
    (void)L;
    for (npy_intp i = 0; i < n; i++)
        y[i] = logf(x[i]);
}

#define VG_TEMPLATE "npyloops_sum.h"
#include "instantiate.h"

/* The loop NumPy selects for these types (type numbers, inputs then outputs): the first match in the
   ufunc's table. */
static int find_loop(PyObject *obj, const char *name, const int *types, vg_loop *out)
{
    if (!PyObject_TypeCheck(obj, &PyUFunc_Type)) {
        PyErr_Format(PyExc_TypeError, "vgrad._C: numpy.%s is not a ufunc", name);
        return -1;
    }
    PyUFuncObject *uf = (PyUFuncObject *)obj;
    for (int i = 0; i < uf->ntypes; i++) {
        const char *sig = uf->types + (size_t)i * (size_t)uf->nargs;
        int j = 0;
        while (j < uf->nargs && sig[j] == types[j])
            j++;
        if (j == uf->nargs) {
            out->fn = (vg_loop_fn)uf->functions[i];
            out->data = uf->data == NULL ? NULL : uf->data[i];
            return 0;
        }
    }
    PyErr_Format(PyExc_RuntimeError, "vgrad._C: numpy.%s has no inner loop for these types", name);
    return -1;
}

/* ---- module state ----------------------------------------------------------------------------------- */

int vg_numpy_state_init(PyObject *module)
{
    if (_import_umath() < 0)
        return -1;
    vg_numpy_state *st = vg_numpy(module);
    PyObject *np = PyImport_ImportModule("numpy"), *add = NULL, *maximum = NULL;
    int rc = -1;
    if (np == NULL)
        return -1;
    if ((st->exp = PyObject_GetAttrString(np, "exp")) == NULL ||
        (st->log = PyObject_GetAttrString(np, "log")) == NULL ||
        (st->matmul = PyObject_GetAttrString(np, "matmul")) == NULL ||
        (add = PyObject_GetAttrString(np, "add")) == NULL ||
        (maximum = PyObject_GetAttrString(np, "maximum")) == NULL ||
        (st->add_reduce = PyObject_GetAttrString(add, "reduce")) == NULL ||
        (st->maximum_reduce = PyObject_GetAttrString(maximum, "reduce")) == NULL)
        goto done;
    static const int d_d[] = {NPY_DOUBLE, NPY_DOUBLE}, ff_f[] = {NPY_FLOAT, NPY_FLOAT, NPY_FLOAT},
                     dd_d[] = {NPY_DOUBLE, NPY_DOUBLE, NPY_DOUBLE};
    if (find_loop(st->exp, "exp", d_d, &st->loops.exp_f64) < 0 ||
        find_loop(st->log, "log", d_d, &st->loops.log_f64) < 0 ||
        find_loop(add, "add", ff_f, &st->loops.add_f32) < 0 || find_loop(add, "add", dd_d, &st->loops.add_f64) < 0 ||
        find_loop(st->matmul, "matmul", ff_f, &st->loops.matmul_f32) < 0 ||
        find_loop(st->matmul, "matmul", dd_d, &st->loops.matmul_f64) < 0)
        goto done;
    st->use_reference = PyErr_NewExceptionWithDoc(
        "vgrad._C.UseReference",
        "Raised by a kernel of vgrad._C for inputs it leaves to the op's NumPy Reference: dtypes other than "
        "float32 and float64, and float64 memory layouts whose NumPy order of evaluation it does not reproduce. "
        "Each built-in op's forward and backward catch it and run the Reference instead.",
        PyExc_TypeError, NULL);
    if (st->use_reference == NULL || PyModule_AddObjectRef(module, "UseReference", st->use_reference) < 0)
        goto done;
    rc = vg_with_reference_type_add(module);
done:
    Py_DECREF(np);
    Py_XDECREF(add);
    Py_XDECREF(maximum);
    return rc;
}

int vg_numpy_state_traverse(PyObject *module, visitproc visit, void *arg)
{
    if (PyModule_GetState(module) == NULL)
        return 0;
    vg_numpy_state *st = vg_numpy(module);
    Py_VISIT(st->exp);
    Py_VISIT(st->log);
    Py_VISIT(st->matmul);
    Py_VISIT(st->add_reduce);
    Py_VISIT(st->maximum_reduce);
    Py_VISIT(st->use_reference);
    return 0;
}

void vg_numpy_state_clear(PyObject *module)
{
    if (PyModule_GetState(module) == NULL)
        return;
    vg_numpy_state *st = vg_numpy(module);
    Py_CLEAR(st->exp);
    Py_CLEAR(st->log);
    Py_CLEAR(st->matmul);
    Py_CLEAR(st->add_reduce);
    Py_CLEAR(st->maximum_reduce);
    Py_CLEAR(st->use_reference);
}

/* ---- calling the ufuncs themselves ------------------------------------------------------------------- */

/* NumPy gives a scalar where the result is 0-d; the ops return arrays. Steals r. */
static PyObject *as_ndarray(PyObject *r)
{
    if (r == NULL || PyArray_Check(r))
        return r;
    PyObject *a = PyArray_FROM_O(r);
    Py_DECREF(r);
    return a;
}

PyObject *vg_call_ufunc(PyObject *ufunc, PyObject *x)
{
    return as_ndarray(PyObject_CallOneArg(ufunc, x));
}

PyObject *vg_add_reduce(PyObject *module, PyObject *x, int axis, int keepdims)
{
    PyObject *ax = axis < 0 ? Py_NewRef(Py_None) : PyLong_FromLong(axis);
    if (ax == NULL)
        return NULL;
    /* reduce(array, axis, dtype, out, keepdims) */
    PyObject *args[5] = {x, ax, Py_None, Py_None, keepdims ? Py_True : Py_False};
    PyObject *r = PyObject_Vectorcall(vg_numpy(module)->add_reduce, args, keepdims ? 5 : 2, NULL);
    Py_DECREF(ax);
    return as_ndarray(r);
}

PyObject *vg_maximum_reduce(PyObject *module, PyObject *x, int axis)
{
    PyObject *ax = PyLong_FromLong(axis);
    if (ax == NULL)
        return NULL;
    PyObject *args[2] = {x, ax};
    PyObject *r = PyObject_Vectorcall(vg_numpy(module)->maximum_reduce, args, 2, NULL);
    Py_DECREF(ax);
    return as_ndarray(r);
}

/* x, or x.T when transpose is set, as an array: a new reference. */
static PyObject *operand(PyObject *x, int transpose)
{
    if (!transpose)
        return Py_NewRef(x);
    PyArrayObject *a = (PyArrayObject *)PyArray_FROM_O(x);
    if (a == NULL)
        return NULL;
    PyObject *t = PyArray_Transpose(a, NULL);
    Py_DECREF(a);
    return t;
}

/* A matrix np.matmul would pass to its 'ff->f' or 'dd->d' loop as it is, with no copy: a base-class ndarray
   of that type, aligned, in native byte order (any strides). */
static int loop_operand(PyObject *obj, int typenum)
{
    if (!PyArray_CheckExact(obj))
        return 0;
    PyArrayObject *a = (PyArrayObject *)obj;
    return PyArray_NDIM(a) == 2 && PyArray_TYPE(a) == typenum && PyArray_ISALIGNED(a) && PyArray_ISNOTSWAPPED(a);
}

/* a (m x n) @ b (n x p) by np.matmul's inner loop, with the arguments NumPy's gufunc machinery
   (PyUFunc_GeneralizedFunctionInternal) gives it for two matrices: one outer iteration, the core dimensions
   (m, n, p), and the operands' own strides along them, except 0 along a dimension of size 1; the result is a
   new C-ordered matrix, as np.matmul allocates it. The loop picks its BLAS call (or its own loop) from these.
   sa_m, sa_n: a's strides along m and n; sb_n, sb_p: b's along n and p (bytes). */
static PyObject *matmul_by_loop(const char *op, const vg_loops *L, int t, char *a, npy_intp sa_m, npy_intp sa_n,
                                char *b, npy_intp sb_n, npy_intp sb_p, npy_intp m, npy_intp n, npy_intp p)
{
    const npy_intp dims[2] = {m, p};
    PyArrayObject *c = vg_empty(op, 2, dims, t); /* a result too large to exist or to allocate names the op */
    if (c == NULL)
        return NULL;
    const npy_intp loop_dims[4] = {1, m, n, p};
    const npy_intp steps[9] = {0, 0, 0, m == 1 ? 0 : sa_m, n == 1 ? 0 : sa_n, n == 1 ? 0 : sb_n, p == 1 ? 0 : sb_p,
                               m == 1 ? 0 : PyArray_STRIDE(c, 0), p == 1 ? 0 : PyArray_STRIDE(c, 1)};
    char *args[3] = {a, b, PyArray_BYTES(c)};
    const vg_loop *loop = t == NPY_FLOAT ? &L->matmul_f32 : &L->matmul_f64;
    npy_intp work; /* multiply-adds, for the GIL rule; a product too large to count is large */
    if (__builtin_mul_overflow(m, n, &work) || __builtin_mul_overflow(work, p, &work))
        work = NPY_MAX_INTP;
    PyThreadState *gil = vg_release_gil(work);
    loop->fn(args, loop_dims, steps, loop->data);
    vg_restore_gil(gil);
    if (PyErr_Occurred()) { /* the loop's MemoryError, when a scratch copy failed */
        Py_DECREF(c);
        return NULL;
    }
    return (PyObject *)c;
}

/* What a float32 matrix holds besides normal numbers and zeros: *subnormal when some 0 < |v| < FLT_MIN,
   *nonfinite when some inf or NaN. One loop for any strides (in floats: the matrix is aligned, so they are
   whole ones), which GCC versions for a stride of 1, the usual case, and vectorises there. */
static void scan_f32(PyArrayObject *a, int *subnormal, int *nonfinite)
{
    const npy_intp rows = PyArray_DIM(a, 0), cols = PyArray_DIM(a, 1);
    const npy_intp rs = PyArray_STRIDE(a, 0) / (npy_intp)sizeof(float);
    const npy_intp cs = PyArray_STRIDE(a, 1) / (npy_intp)sizeof(float);
    const float *data = PyArray_DATA(a);
    int sub = 0, bad = 0;
    for (npy_intp i = 0; i < rows; i++)
        for (npy_intp j = 0; j < cols; j++) {
            const float m = fabsf(data[i * rs + j * cs]);
            sub |= (m < FLT_MIN) & (m > 0);
            bad |= !(m <= FLT_MAX);
        }
    *subnormal = sub, *nonfinite = bad;
}

/* A C-ordered copy of the float32 matrix a with its subnormals replaced by zeros of their sign; NULL with an
   exception. */
static PyArrayObject *flushed_f32(const char *op, PyArrayObject *a)
{
    PyArrayObject *c = vg_empty(op, 2, PyArray_DIMS(a), NPY_FLOAT);
    if (c == NULL)
        return NULL;
    const npy_intp rows = PyArray_DIM(a, 0), cols = PyArray_DIM(a, 1);
    const npy_intp rs = PyArray_STRIDE(a, 0), cs = PyArray_STRIDE(a, 1);
    float *out = PyArray_DATA(c);
    for (npy_intp i = 0; i < rows; i++) {
        const char *row = PyArray_BYTES(a) + i * rs;
        for (npy_intp j = 0; j < cols; j++) {
            const float v = *(const float *)(row + j * cs);
            out[i * cols + j] = fabsf(v) < FLT_MIN ? copysignf(0.0f, v) : v;
        }
    }
    return c;
}

PyObject *vg_matmul(PyObject *module, const char *op, PyObject *a, int transpose_a, PyObject *b, int transpose_b)
{
    int t = PyArray_Check(a) ? PyArray_TYPE((PyArrayObject *)a) : -1;
    if ((t == NPY_FLOAT || t == NPY_DOUBLE) && loop_operand(a, t) && loop_operand(b, t)) {
        PyArrayObject *A = (PyArrayObject *)a, *B = (PyArrayObject *)b, *flushed[2] = {NULL, NULL};
        const int am = transpose_a ? 1 : 0, bn = transpose_b ? 1 : 0; /* the axes that are m and n */
        if (PyArray_DIM(A, 1 - am) != PyArray_DIM(B, bn))
            goto by_numpy; /* np.matmul's own error */
        if (t == NPY_FLOAT) {
            /* float32 products count subnormal operands as zeros (the CPU's flush-to-zero, done by hand):
               BLAS's float32 product runs 10 to 50 times slower on them, and a float32 MLP on raw pixels makes
               them in its gradients (saturated sigmoids). Each such product is below float32's precision of a
               sum with any normal term. Not where the other operand holds an inf or NaN, whose product with a
               subnormal is inf or NaN, with a zero NaN. */
            int sub_a, sub_b, bad_a, bad_b;
            scan_f32(A, &sub_a, &bad_a);
            scan_f32(B, &sub_b, &bad_b);
            if ((sub_a && !bad_b && (A = flushed[0] = flushed_f32(op, A)) == NULL) ||
                (sub_b && !bad_a && (B = flushed[1] = flushed_f32(op, B)) == NULL)) {
                Py_XDECREF(flushed[0]);
                return NULL;
            }
        }
        PyObject *c = matmul_by_loop(op, &vg_numpy(module)->loops, t, PyArray_BYTES(A), PyArray_STRIDE(A, am),
                                     PyArray_STRIDE(A, 1 - am), PyArray_BYTES(B), PyArray_STRIDE(B, bn),
                                     PyArray_STRIDE(B, 1 - bn), PyArray_DIM(A, am), PyArray_DIM(A, 1 - am),
                                     PyArray_DIM(B, 1 - bn));
        Py_XDECREF(flushed[0]);
        Py_XDECREF(flushed[1]);
        return c;
    }
by_numpy:;
    PyObject *args[2] = {operand(a, transpose_a), operand(b, transpose_b)};
    PyObject *c = NULL;
    if (args[0] != NULL && args[1] != NULL)
        c = as_ndarray(PyObject_Vectorcall(vg_numpy(module)->matmul, args, 2, NULL));
    Py_XDECREF(args[0]);
    Py_XDECREF(args[1]);
    if (c == NULL && PyErr_ExceptionMatches(PyExc_MemoryError))
        vg_name_memory_error(op);
    else if (c == NULL && PyErr_ExceptionMatches(PyExc_ValueError)) { /* "array is too big" */
        PyObject *type, *value, *tb;
        PyErr_Fetch(&type, &value, &tb);
        PyErr_Format(PyExc_ValueError, "%s: %S", op, value ? value : Py_None);
        Py_XDECREF(type);
        Py_XDECREF(value);
        Py_XDECREF(tb);
    }
    return c;
}

/* ---- with_reference: an op's method that falls back to its Reference --------------------------------- */

typedef struct {
    PyObject_HEAD
    PyObject *kernel;        /* the op's own method (static: a plain function), which calls vgrad._C */
    PyObject *reference;     /* the same method of the op's NumPy Reference */
    PyObject *use_reference; /* the exception that sends a call to the reference */
    vectorcallfunc vectorcall;
} with_reference;

static PyObject *with_reference_vectorcall(PyObject *self, PyObject *const *args, size_t nargsf, PyObject *kwnames)
{
    with_reference *w = (with_reference *)self;
    PyObject *r = PyObject_Vectorcall(w->kernel, args, nargsf, kwnames);
    if (r == NULL && PyErr_ExceptionMatches(w->use_reference)) {
        PyErr_Clear();
        r = PyObject_Vectorcall(w->reference, args, nargsf, kwnames);
    }
    return r;
}

static PyObject *with_reference_new(PyTypeObject *type, PyObject *args, PyObject *kwargs)
{
    PyObject *kernel, *reference;
    if (kwargs != NULL && PyDict_GET_SIZE(kwargs) != 0) {
        PyErr_SetString(PyExc_TypeError, "with_reference() takes no keyword arguments");
        return NULL;
    }
    if (!PyArg_UnpackTuple(args, "with_reference", 2, 2, &kernel, &reference))
        return NULL;
    if (!PyCallable_Check(kernel) || !PyCallable_Check(reference)) {
        PyErr_SetString(PyExc_TypeError, "with_reference(kernel, reference): both must be callable");
        return NULL;
    }
    PyObject *module = PyType_GetModule(type);
    if (module == NULL)
        return NULL;
    with_reference *w = (with_reference *)type->tp_alloc(type, 0);
    if (w == NULL)
        return NULL;
    w->kernel = Py_NewRef(kernel);
    w->reference = Py_NewRef(reference);
    w->use_reference = Py_NewRef(vg_numpy(module)->use_reference);
    w->vectorcall = with_reference_vectorcall;
    return (PyObject *)w;
}

static int with_reference_traverse(PyObject *self, visitproc visit, void *arg)
{
    with_reference *w = (with_reference *)self;
    Py_VISIT(Py_TYPE(self));
    Py_VISIT(w->kernel);
    Py_VISIT(w->reference);
    Py_VISIT(w->use_reference);
    return 0;
}

static int with_reference_clear(PyObject *self)
{
    with_reference *w = (with_reference *)self;
    Py_CLEAR(w->kernel);
    Py_CLEAR(w->reference);
    Py_CLEAR(w->use_reference);
    return 0;
}

static void with_reference_dealloc(PyObject *self)
{
    PyTypeObject *type = Py_TYPE(self);
    PyObject_GC_UnTrack(self);
    with_reference_clear(self);
    type->tp_free(self);
    Py_DECREF(type);
}

/* __name__ and __qualname__ are the kernel method's, so that reprs and tracebacks name the op's method
   (__wrapped__ leads inspect.getsource and inspect.signature to it). */
static PyObject *kernel_attribute(PyObject *self, void *name)
{
    with_reference *w = (with_reference *)self;
    if (w->kernel == NULL)
        Py_RETURN_NONE;
    return PyObject_GetAttrString(w->kernel, (const char *)name);
}

static PyObject *with_reference_repr(PyObject *self)
{
    with_reference *w = (with_reference *)self;
    PyObject *name = w->kernel ? PyObject_GetAttrString(w->kernel, "__qualname__") : NULL;
    if (name == NULL) {
        PyErr_Clear();
        return PyUnicode_FromString("<vgrad op method>");
    }
    PyObject *r = PyUnicode_FromFormat("<vgrad op method %U (its NumPy Reference for other dtypes)>", name);
    Py_DECREF(name);
    return r;
}

static PyMemberDef with_reference_members[] = {
    {"__wrapped__", T_OBJECT_EX, offsetof(with_reference, kernel), READONLY, "the op's C-backed method"},
    {"reference", T_OBJECT_EX, offsetof(with_reference, reference), READONLY, "the Reference's method"},
    {"__vectorcalloffset__", T_PYSSIZET, offsetof(with_reference, vectorcall), READONLY, NULL},
    {NULL, 0, 0, 0, NULL},
};

static PyGetSetDef with_reference_getset[] = {
    {"__name__", kernel_attribute, NULL, NULL, "__name__"},
    {"__qualname__", kernel_attribute, NULL, NULL, "__qualname__"},
    {NULL, NULL, NULL, NULL, NULL},
};

PyDoc_STRVAR(with_reference_doc,
             "with_reference(method, reference)\n--\n\n"
             "A built-in op's forward or backward (vgrad/ops.py): calls `method`, the C-backed one, and when its "
             "kernel declines the arguments (vgrad._C.UseReference: a dtype other than float32/float64, or a float64 "
             "layout whose NumPy order of evaluation it does not reproduce) calls `reference`, the same method of "
             "the op's NumPy Reference, with the same arguments. `__wrapped__` is `method`.");

static PyType_Slot with_reference_slots[] = {
    {Py_tp_doc, (void *)with_reference_doc},
    {Py_tp_new, with_reference_new},
    {Py_tp_call, PyVectorcall_Call},
    {Py_tp_traverse, with_reference_traverse},
    {Py_tp_clear, with_reference_clear},
    {Py_tp_dealloc, with_reference_dealloc},
    {Py_tp_repr, with_reference_repr},
    {Py_tp_members, with_reference_members},
    {Py_tp_getset, with_reference_getset},
    {0, NULL},
};

static PyType_Spec with_reference_spec = {
    .name = "vgrad._C.with_reference",
    .basicsize = sizeof(with_reference),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_HAVE_VECTORCALL | Py_TPFLAGS_IMMUTABLETYPE,
    .slots = with_reference_slots,
};

int vg_with_reference_type_add(PyObject *module)
{
    PyObject *type = PyType_FromModuleAndSpec(module, &with_reference_spec, NULL);
    if (type == NULL)
        return -1;
    int rc = PyModule_AddObjectRef(module, "with_reference", type);
    Py_DECREF(type);
    return rc;
}
