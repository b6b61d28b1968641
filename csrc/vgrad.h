/*
 * vgrad.h — what every C file of vgrad._C shares.
 *
 * The module is split in two layers:
 *   - kernels: pure C loops over contiguous float or double buffers. They take no PyObject, cannot fail,
 *     and are written once for a generic element type T and instantiated for float and double with
 *     VG_INSTANTIATE. Math functions come from <tgmath.h>, so exp(x) is expf for float and exp for double.
 *   - boundary functions (vg_<name>, listed in functions.def): parse the Python arguments, check shapes and
 *     dtypes, convert inputs to C-contiguous arrays of the compute type, allocate outputs, release the GIL
 *     for large loops, and raise clear exceptions naming the op.
 *
 * Compute type: float32 when every input is float32 (or float16); float64 otherwise (float64, mixed
 * float32/float64, integers, bool). complex, object, string and other dtypes are refused with TypeError.
 * The built-in ops of vgrad/ops.py go further (vg_prepare_exact): their kernels take float32 and float64
 * only, and decline other dtypes, which the op's NumPy Reference then computes with NumPy's own dtype rules.
 *
 * float64 is bit-identical to NumPy (and so to vugrad): exp and log run NumPy's own inner loops, sums run
 * NumPy's own pairwise loop in the order NumPy's reduction calls it, matrix products go through np.matmul
 * with the operands vugrad passes, and the element-wise arithmetic is written in the reference formula's
 * order (no -ffast-math; -ffp-contract=off, so that no a * b + c becomes a fused multiply-add). float32
 * keeps faster paths (csrc/vexp.c) and may differ from NumPy in the last bits.
 */
#ifndef VGRAD_H
#define VGRAD_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>

#define PY_ARRAY_UNIQUE_SYMBOL vgrad_ARRAY_API
#ifndef VGRAD_MODULE_C
#define NO_IMPORT_ARRAY
#endif
#include <numpy/arrayobject.h>
#include <tgmath.h>

/* Kernels written once for a generic element type live in template headers (elementwise_kernels.h, ...),
   which a .c file includes twice: with T float and SFX f32, then with T double and SFX f64. Inside them
   VG_T(name) is the name's instance for the element type: VG_T(sigmoid_backward) is sigmoid_backward_f64. */
#define VG_PASTE_(a, b) a##_##b
#define VG_PASTE(a, b) VG_PASTE_(a, b)
#define VG_T(name) VG_PASTE(name, SFX)

/* Instantiate a kernel family written as DEFINE(T, suffix) for both float types (the older style). */
#define VG_INSTANTIATE(DEFINE) DEFINE(float, f32) DEFINE(double, f64)

/* Call the float or double instance of a kernel; data pointers may be passed as void *. */
#define VG_CALL(typenum, kernel, ...) \
    ((typenum) == NPY_FLOAT ? kernel##_f32(__VA_ARGS__) : kernel##_f64(__VA_ARGS__))

/* Boundary functions all have the METH_FASTCALL signature. */
#define VG_BOUNDARY(name) PyObject *vg_##name(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
#define VG_FUNC(name, doc) VG_BOUNDARY(name);
#include "functions.def"
#undef VG_FUNC

/* ---- module state ----------------------------------------------------------------------------------
   Set once at import (module.c's exec slot) and never changed afterwards. */

/* One of NumPy's own 1-d inner loops, as a ufunc stores it (ufunc.functions[i], ufunc.data[i]): a pure C
   function that needs no GIL. args, dims and steps as NumPy passes them (PyUFuncGenericFunction). */
typedef void (*vg_loop_fn)(char **args, const npy_intp *dims, const npy_intp *steps, void *data);
typedef struct {
    vg_loop_fn fn;
    void *data;
} vg_loop;

/* The loops the kernels call, looked up once at import in the ufuncs' type tables, the first entry that
   matches, as NumPy's own loop selector picks it. */
typedef struct {
    vg_loop exp_f64, log_f64; /* 'd->d' of np.exp and np.log */
    vg_loop add_f32, add_f64; /* 'ff->f' and 'dd->d' of np.add; called in reduce mode it is np.sum's sum */
    vg_loop matmul_f32, matmul_f64; /* 'ff->f' and 'dd->d' of np.matmul, the gufunc (n,k),(k,m)->(n,m) */
} vg_loops;

/* NumPy's objects (npyloops.c). */
typedef struct {
    vg_loops loops;
    PyObject *exp, *log, *matmul;           /* the ufuncs, for inputs NumPy would not send through one loop call */
    PyObject *add_reduce, *maximum_reduce;  /* np.add.reduce and np.maximum.reduce, bound methods */
    PyObject *use_reference;                /* the exception type vgrad._C.UseReference */
} vg_numpy_state;

typedef struct {
    vg_numpy_state numpy;
} vg_module_state;

int vg_numpy_state_init(PyObject *module);
int vg_numpy_state_traverse(PyObject *module, visitproc visit, void *arg);
void vg_numpy_state_clear(PyObject *module);

static inline vg_numpy_state *vg_numpy(PyObject *module)
{
    return &((vg_module_state *)PyModule_GetState(module))->numpy;
}

/* ---- argument helpers (convert.c) ---------------------------------------------------------------- */

/* Fail with TypeError unless exactly `expected` positional arguments were given. */
int vg_check_nargs(const char *op, Py_ssize_t nargs, Py_ssize_t expected);

/* The compute type (NPY_FLOAT or NPY_DOUBLE) for these objects, or -1 with TypeError naming the op and the
   offending dtype. Objects that are not arrays are looked at as np.asarray would see them. */
int vg_compute_type(const char *op, PyObject *const *objs, int n);

/* A new reference to obj as an aligned, C-contiguous, native-order array of `typenum`; copies only when
   it must. NULL with an exception naming the op otherwise. */
PyArrayObject *vg_as_contiguous(const char *op, PyObject *obj, int typenum);

/* The same in Fortran order when `fortran` is set (element-wise kernels read any contiguous memory). */
PyArrayObject *vg_as_contiguous_order(const char *op, PyObject *obj, int typenum, int fortran);

/* Convert n objects to the common compute type; fills out[0..n-1] with new references and returns the
   type, or returns -1 (with out[] all NULL) and an exception set. */
int vg_prepare(const char *op, PyObject *const *objs, int n, PyArrayObject **out);

/* A new uninitialised / zero-filled C-contiguous array; a shape no array can have (its sizes multiply past
   NPY_MAX_INTP bytes) is a ValueError naming the op, lack of memory a MemoryError naming it. */
PyArrayObject *vg_empty(const char *op, int ndim, const npy_intp *dims, int typenum);
PyArrayObject *vg_zeros(const char *op, int ndim, const npy_intp *dims, int typenum);
PyArrayObject *vg_empty_order(const char *op, int ndim, const npy_intp *dims, int typenum, int fortran);

/* ---- the buffer cache (alloc.c) ----
   A new array of a shape that can exist (checked by the caller), uninitialised or zero-filled, in C or
   Fortran order. One of at least alloc.c's threshold size takes its data from the cache of freed blocks.
   Steals the reference to descr. A new reference, or NULL with NumPy's exception. */
PyObject *vg_cached_array(int ndim, const npy_intp *dims, PyArray_Descr *descr, int fortran, int zeroed);

/* Fail with ValueError unless a and b have the same shape; `hint` ("" or "; ...") ends the message. */
int vg_check_same_shape(const char *op, const char *what, const char *hint, PyArrayObject *a,
                        PyArrayObject *b);

/* Fail with ValueError unless arr has ndim dimensions. */
int vg_check_ndim(const char *op, const char *what, PyArrayObject *arr, int ndim);

/* A shape given by Python (tuple/list of ints), checked to be non-negative with sizes (those that are not 0)
   whose product fits in npy_intp, so that callers may multiply them; PyDimMem_FREE(dims->ptr). */
int vg_parse_shape(const char *op, const char *what, PyObject *obj, PyArray_Dims *dims);

/* A Python int, range-checked; -1 with an exception otherwise (check PyErr_Occurred). */
int vg_parse_int(const char *op, const char *what, PyObject *obj, Py_ssize_t *value);

/* Normalise a possibly negative axis for an array of ndim dimensions, or fail with ValueError. */
int vg_normalize_axis(const char *op, Py_ssize_t *axis, int ndim);

/* Integer indices as a new C-contiguous intp array of `count` elements (any shape with that many
   elements), or NULL with TypeError (not integers) or ValueError (wrong count) naming the op. */
PyArrayObject *vg_as_indices(const char *op, const char *what, PyObject *obj, npy_intp count);

/* Release every reference in arr[0..n-1] (NULLs allowed). */
void vg_release(PyArrayObject **arr, int n);

/* ---- NumPy's loops and ufuncs (npyloops.c) --------------------------------------------------------- */

/* vg_prepare for the built-in ops of ops.py: an array or NumPy scalar of any dtype other than float32 and
   float64 that NumPy computes with (bool, integers, float16, long double) makes the kernel decline
   (vg_decline), so that the op's NumPy Reference computes it with NumPy's dtype rules. (Python numbers and
   lists are computed in float64, as before: vugrad's ops only ever see arrays.) With VG_SAME_FLOAT the kernel
   also declines float32 together with float64 (or Python numbers): for formulas of several operations,
   where NumPy promotes operation by operation (in -go * a / (b * b), b * b stays float32); with VG_MIXED_OK
   (one operation per element, or np.matmul) they are computed in float64, as NumPy promotes them. Returns
   the compute type, or -1. */
enum { VG_MIXED_OK = 0, VG_SAME_FLOAT = 1 };
int vg_prepare_exact(PyObject *module, const char *op, PyObject *const *objs, int n, PyArrayObject **out, int mixing);

/* vg_prepare_exact for the element-wise kernels, which keep NumPy's layout of the result: when every
   argument is an array in Fortran order (and not also in C order), NumPy's element-wise result is in Fortran
   order, and so are out[] and *fortran is set; otherwise C order. (A later sum then adds in NumPy's order.) */
int vg_prepare_elementwise(PyObject *module, const char *op, PyObject *const *objs, int n, PyArrayObject **out,
                           int mixing, int *fortran);

/* vg_compute_type with vg_prepare_exact's declining: the compute type, or -1 (exception set). */
int vg_compute_type_exact(PyObject *module, const char *op, PyObject *const *objs, int n, int mixing);

/* Raise vgrad._C.UseReference (a TypeError), which the op's method (a with_reference object) catches to run
   the op's NumPy Reference instead: for dtypes the kernel does not take, and float64 memory layouts for
   which it does not reproduce NumPy's order of evaluation. `why` completes "<op>: ...". Returns -1. */
int vg_decline(PyObject *module, const char *op, const char *why);

/* obj is an ndarray of `typenum`, aligned, in native byte order and C-contiguous: the layout for which the
   kernels evaluate in NumPy's order. (The same with F-contiguous for vg_is_plain_f.) */
int vg_is_plain_c(PyObject *obj, int typenum);
int vg_is_plain_f(PyObject *obj, int typenum);

/* ufunc(x) for the one-input ufuncs of the state (exp, log), as an ndarray (a 0-d one where NumPy gives a
   scalar). A new reference, or NULL with an exception. */
PyObject *vg_call_ufunc(PyObject *ufunc, PyObject *x);

/* np.add.reduce(x, axis, keepdims=keepdims) (axis < 0: all axes) and np.maximum.reduce(x, axis): what
   x.sum(...) and np.amax(x, axis) compute, as an ndarray. A new reference, or NULL with an exception. */
PyObject *vg_add_reduce(PyObject *module, PyObject *x, int axis, int keepdims);
PyObject *vg_maximum_reduce(PyObject *module, PyObject *x, int axis);

/* np.matmul(a, b) for a, b as given (arrays or views; transpose_x makes x.T first): the BLAS call (or loop)
   NumPy makes for vugrad's own expression. Aligned, native matrices of one float type go straight to
   np.matmul's inner loop, called as NumPy's gufunc machinery calls it; anything else to np.matmul itself.
   A new reference, or NULL with an exception. */
PyObject *vg_matmul(PyObject *module, const char *op, PyObject *a, int transpose_a, PyObject *b, int transpose_b);

/* Kernel helpers: pure C, no GIL needed, cannot fail. For contiguous x and y of n elements (not overlapping):
     vg_exp_array:  y = exp(x)   float64: NumPy's exp loop (np.exp's results bit for bit); float32: vexp.c
     vg_exp_negated_array: y = exp(-x), as np.exp(-x) computes it (the negation is a new contiguous array)
                    float64: NumPy's exp loop; float32: vexp, floored at exp(-20) (for 1 / (1 + y) only)
     vg_log_array:  y = log(x)   float64: NumPy's log loop; float32: libm's logf
     vg_sum:        x[0] + ... + x[n-1] as np.sum of a contiguous vector adds it: from 0, through NumPy's
                    add loop in reduce mode (its pairwise sum), for both float types. */
void vg_exp_array_f32(const vg_loops *L, float *y, const float *x, npy_intp n);
void vg_exp_array_f64(const vg_loops *L, double *y, const double *x, npy_intp n);
void vg_exp_negated_array_f32(const vg_loops *L, float *y, const float *x, npy_intp n);
void vg_exp_negated_array_f64(const vg_loops *L, double *y, const double *x, npy_intp n);
void vg_log_array_f32(const vg_loops *L, float *y, const float *x, npy_intp n);
void vg_log_array_f64(const vg_loops *L, double *y, const double *x, npy_intp n);
float vg_sum_f32(const vg_loops *L, const float *x, npy_intp n);
double vg_sum_f64(const vg_loops *L, const double *x, npy_intp n);

/* with_reference(kernel_method, reference_method): the callable that ops.py installs as each built-in op's
   forward and backward (npyloops.c). */
int vg_with_reference_type_add(PyObject *module);

/* ---- row indices (select.c) ---------------------------------------------------------------------- */

/* Integer indices, one per row of a rows x cols matrix, as a fresh intp array with negative ones wrapped;
   NULL with TypeError/ValueError/IndexError naming the op otherwise. */
PyArrayObject *vg_row_indices(const char *op, PyObject *obj, npy_intp rows, npy_intp cols);

/* ---- float32 exp over arrays (vexp.c) ------------------------------------------------------------- */

/* y[i] = exp(max(scale * x[i] + offset, floor)), vectorised, within 1 ulp of libm's expf; y and x must not
   overlap. floor = -HUGE_VALF for a plain exp. (float64 uses NumPy's own exp loop: vg_exp_array_f64.) */
void vg_exp_f32(float *restrict y, const float *restrict x, npy_intp n, float scale, float offset, float floor);

/* ---- shared kernels (reduce.c, shape.c) ------------------------------------------------------------------- */

/* Pairwise sum of n contiguous elements: rounding error grows with log(n), not n (the CNN kernels'; the
   built-in ops use vg_sum, NumPy's own). */
float vg_pairwise_sum_f32(const float *x, npy_intp n);
double vg_pairwise_sum_f64(const double *x, npy_intp n);

/* go: outer x len x inner (C-contiguous) -> gx: outer x inner, go.sum(axis=1) in NumPy's order: NumPy's
   iterator makes the innermost axis with a stride its inner loop, so for inner > 1 it adds the rows in
   order to a result that starts at 0, and for inner == 1 it sums each run of len elements (vg_sum). */
void vg_sum_middle_axis_f32(const vg_loops *L, float *restrict gx, const float *restrict go, npy_intp outer,
                            npy_intp len, npy_intp inner);
void vg_sum_middle_axis_f64(const vg_loops *L, double *restrict gx, const double *restrict go, npy_intp outer,
                            npy_intp len, npy_intp inner);

#endif /* VGRAD_H */
