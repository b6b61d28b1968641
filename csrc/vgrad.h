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

/* Instantiate a kernel family written as DEFINE(T, suffix) for both float types. */
#define VG_INSTANTIATE(DEFINE) DEFINE(float, f32) DEFINE(double, f64)

/* Call the float or double instance of a kernel; data pointers may be passed as void *. */
#define VG_CALL(typenum, kernel, ...) \
    ((typenum) == NPY_FLOAT ? kernel##_f32(__VA_ARGS__) : kernel##_f64(__VA_ARGS__))

/* Boundary functions all have the METH_FASTCALL signature. */
#define VG_BOUNDARY(name) PyObject *vg_##name(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
#define VG_FUNC(name, doc) VG_BOUNDARY(name);
#include "functions.def"
#undef VG_FUNC

/* ---- argument helpers (convert.c) ---------------------------------------------------------------- */

/* Fail with TypeError unless exactly `expected` positional arguments were given. */
int vg_check_nargs(const char *op, Py_ssize_t nargs, Py_ssize_t expected);

/* The compute type (NPY_FLOAT or NPY_DOUBLE) for these objects, or -1 with TypeError naming the op and the
   offending dtype. Objects that are not arrays are looked at as np.asarray would see them. */
int vg_compute_type(const char *op, PyObject *const *objs, int n);

/* A new reference to obj as an aligned, C-contiguous, native-order array of `typenum`; copies only when
   it must. NULL with an exception naming the op otherwise. */
PyArrayObject *vg_as_contiguous(const char *op, PyObject *obj, int typenum);

/* Convert n objects to the common compute type; fills out[0..n-1] with new references and returns the
   type, or returns -1 (with out[] all NULL) and an exception set. */
int vg_prepare(const char *op, PyObject *const *objs, int n, PyArrayObject **out);

/* A new uninitialised / zero-filled C-contiguous array; a shape no array can have (its sizes multiply past
   NPY_MAX_INTP bytes) is a ValueError naming the op, lack of memory a MemoryError naming it. */
PyArrayObject *vg_empty(const char *op, int ndim, const npy_intp *dims, int typenum);
PyArrayObject *vg_zeros(const char *op, int ndim, const npy_intp *dims, int typenum);

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

/* ---- matrix products (matmul.c) ------------------------------------------------------------------- */

/* a @ b for 2-D arrays of one float type, either operand optionally transposed (as a view, which BLAS
   reads with its transpose flag: no copy). A new reference, or NULL with an exception. */
PyObject *vg_product(PyArrayObject *a, int transpose_a, PyArrayObject *b, int transpose_b);

/* ---- row indices (select.c) ---------------------------------------------------------------------- */

/* Integer indices, one per row of a rows x cols matrix, as a fresh intp array with negative ones wrapped;
   NULL with TypeError/ValueError/IndexError naming the op otherwise. */
PyArrayObject *vg_row_indices(const char *op, PyObject *obj, npy_intp rows, npy_intp cols);

/* ---- exp over arrays (vexp.c) --------------------------------------------------------------------- */

/* y[i] = exp(max(scale * x[i] + offset, floor)), vectorised, within 1 ulp of libm's exp; y and x must not
   overlap. floor = -HUGE_VAL for a plain exp. */
void vg_exp_f32(float *restrict y, const float *restrict x, npy_intp n, float scale, float offset, float floor);
void vg_exp_f64(double *restrict y, const double *restrict x, npy_intp n, double scale, double offset,
                double floor);

/* ---- shared kernels (reduce.c, shape.c) ------------------------------------------------------------------- */

/* Pairwise sum of n contiguous elements: rounding error grows with log(n), not n (as NumPy's sum). */
float vg_pairwise_sum_f32(const float *x, npy_intp n);
double vg_pairwise_sum_f64(const double *x, npy_intp n);

/* go: outer x len x inner -> gx: outer x inner, summed over the middle axis the way NumPy's sum does
   (rows added in order; pairwise when inner == 1). */
void vg_sum_middle_axis_f32(float *restrict gx, const float *restrict go, npy_intp outer, npy_intp len,
                            npy_intp inner);
void vg_sum_middle_axis_f64(double *restrict gx, const double *restrict go, npy_intp outer, npy_intp len,
                            npy_intp inner);

#endif /* VGRAD_H */
