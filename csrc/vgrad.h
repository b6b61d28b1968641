/*
 * vgrad.h — what every C file of vgrad._C shares: the boundary helper, the shape errors, the rule for the
 * GIL, NumPy's loops, and the kernels used by more than one file.
 *
 * Two layers:
 *   - kernels: plain C functions over contiguous float or double buffers, one per op's forward and one per
 *     backward, side by side, outputs first, then inputs, then sizes, with the shapes in a comment. They take
 *     no PyObject, need no GIL, cannot fail. Each is written once for a generic element type T in a template
 *     header (<family>_kernels.h) that instantiate.h compiles for float (name_f32) and double (name_f64);
 *     math functions come from <tgmath.h>, so exp(x) is expf for float and exp for double.
 *   - boundary functions (vg_<name>, listed in functions.def): each is one vg_call (below): take the
 *     positional arguments, prepare the arrays, allocate the outputs, release the GIL for a large kernel, and
 *     end in `done: return vg_finish(&c);`, the one cleanup. Errors name the op and the shapes.
 *
 * The files:
 *   functions.def      the one list of exported functions (declarations here, method table in module.c)
 *   module.c           the module object: method table, multi-phase init, state
 *   boundary.c         vg_call: arguments, arrays, outputs, results, cleanup; shape errors
 *   convert.c          the dtype rules (the compute type; declining to the Reference), conversions, parsers
 *   alloc.c            the memory cache: a NumPy data-memory handler (NEP 49) that keeps freed large
 *                      blocks for the next step; vg_empty/vg_zeros allocate through it
 *   npyloops.c     + npyloops_sum.h          NumPy's own inner loops and ufuncs, called so float64 is
 *                      NumPy's bit for bit (exp, log, the sum, np.matmul); with_reference (an op's method
 *                      that falls back to its NumPy Reference)
 *   instantiate.h      compiles a kernel template for float and for double
 *   shared_kernels.h   declares the kernels more than one file calls (compiled at the end of this header)
 *   elementwise.c  + elementwise_kernels.h   Add Sub Multiply Div Exp Log Sigmoid ReLU (and -x): a section
 *                                             of the .h per op, its kernels and its functions of vgrad._C
 *   reduce.c       + reduce_kernels.h        Sum RowSum RowMax Normalize; the sums shared with other files
 *   rows.c         + rows_kernels.h          row maximum, log-sum-exp, softmax: shared by RowMax,
 *                                             LogSoftmax and the CNN's cross-entropy
 *   select.c       + select_kernels.h        Select; row indices
 *   shape.c                                  Expand Squeeze Unsqueeze Id
 *   matmul.c                                 MatrixMultiply BatchMM (np.matmul's inner loop)
 *   fused.c        + fused_kernels.h         Affine LogSoftmax LogCELoss: chains of ops as one
 *   accumulate.c   + accumulate_kernels.h    add_into: current += grad for core.py
 *   vexp.c                                   a vectorised float32 exp
 *   checked.h                                overflow-checked arithmetic on sizes from user input
 *   nn.h                                     the CNN toolkit's shared pieces: geometry checks, the
 *                                             thread pool's interface
 *   nn.c           + nn_kernels.h            Dropout BatchNormalization CrossEntropy Reshape
 *   pool.c         + pool_kernels.h          MaxPooling AvgPooling
 *   conv.c         + conv_kernels.h          the convolution: direct kernels for stride 1 and small
 *                                             filters, im2col + BLAS by chunks otherwise (picked by shape)
 *   threads.c                                the thread pool of the CNN's batch-parallel loops
 *                                             (VGRAD_NUM_THREADS, OMP_NUM_THREADS; the same bits whatever
 *                                             the count)
 *
 * The helpers every op uses rather than writing its own:
 *   vg_call (vg_begin ... vg_finish)   the boundary: arguments, arrays, outputs, cleanup (boundary.c)
 *   vg_release_gil / vg_restore_gil    the one rule for the GIL: released above VG_GIL_WORK elements (here)
 *   vg_shape_error, VG_SHAPE           every shape error, "<op>: ... (2, 3) ..." (boundary.c)
 *   vg_matmul                          the matrix products, through np.matmul's own loop (npyloops.c)
 *   vg_row_argmax                      the row maximum, NumPy's NaN rule (rows_kernels.h)
 *   vg_rows_logsumexp, vg_rows_log_softmax, vg_rows_softmax   log-sum-exp and softmax (rows_kernels.h)
 *   vg_sum, vg_exp_array, vg_log_array   NumPy's sum, exp and log (npyloops.c)
 *   vg_sum_middle_axis                 x.sum(axis=1) of a 3-d array in NumPy's order (reduce_kernels.h)
 *
 * Compute type: float32 when every input is float32 (or float16); float64 otherwise (float64, mixed
 * float32/float64, integers, bool). complex, object, string and other dtypes are refused with TypeError. The
 * built-in ops of vgrad/ops.py go further: their kernels take float32 and float64 only and decline other
 * dtypes (vgrad._C.UseReference), which the op's NumPy Reference then computes with NumPy's dtype rules.
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

/* Inside a kernel template (see instantiate.h), VG_T(name) is the name's instance for the element type T:
   VG_T(sigmoid_backward) is sigmoid_backward_f32 or sigmoid_backward_f64. */
#define VG_PASTE_(a, b) a##_##b
#define VG_PASTE(a, b) VG_PASTE_(a, b)
#define VG_T(name) VG_PASTE(name, SFX)

/* Call the float or the double instance of a kernel, by the compute type; data pointers may be passed as
   void * (PyArray_DATA). */
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

/* ---- the boundary helper (boundary.c) -----------------------------------------------------------------

   Every boundary function is one vg_call, a struct on its stack that owns every reference the function
   takes, and reads the same way:

       VG_BOUNDARY(sigmoid_backward)              // sigmoid_backward(go, sigx) -> gx
       {
           vg_call c;
           PyArrayObject *gx;
           if (vg_begin(&c, module, "Sigmoid backward", args, nargs, 2, 2, VG_SAME_FLOAT) < 0 ||
               vg_check_same_shape(c.op, "the upstream gradient and sigx", "", c.in[0], c.in[1]) < 0 ||
               (gx = vg_output(&c, PyArray_NDIM(c.in[0]), PyArray_DIMS(c.in[0]))) == NULL)
               goto done;
           PyThreadState *gil = vg_release_gil(PyArray_SIZE(gx));
           VG_CALL(c.type, sigmoid_backward, PyArray_DATA(gx), PyArray_DATA(c.in[0]), PyArray_DATA(c.in[1]),
                   PyArray_SIZE(gx));
           vg_restore_gil(gil);
       done:
           return vg_finish(&c);
       }

   vg_begin counts the positional arguments and prepares the first `arrays` of them, the float arrays, as
   c.in[0..]: it picks the compute type c.type (NPY_FLOAT or NPY_DOUBLE) by the dtype rule of the flags and
   converts them to that type and layout. Each later step either succeeds or sets an exception and returns
   NULL or -1, and the function jumps to `done`; vg_finish then releases everything the call took, and
   returns the results (one object, or a tuple of several, in the order they were made) when no exception is
   set, NULL otherwise. vg_begin leaves c ready for vg_finish even when it fails. */

enum {
    VG_MIXED_OK = 0,      /* float32 with float64 (or a Python number) is computed in float64, as NumPy promotes
                             one operation (or np.matmul) */
    VG_SAME_FLOAT = 1,    /* ... is declined to the op's Reference: a formula of several operations, which
                             NumPy promotes operation by operation (in -go * a / (b * b), b * b stays float32) */
    VG_KEEP_FORTRAN = 2,  /* element-wise: when every array argument is in Fortran order (and not also in C
                             order), c.in[] and the outputs are in Fortran order, as NumPy lays out the result */
    VG_AS_GIVEN = 4,      /* ndarray arguments stay as they are (their dtype checked, no copy): for shape checks
                             and calls of NumPy itself (np.matmul, reductions of other layouts); other objects
                             are converted to C-contiguous arrays of the compute type */
    VG_ANY_REAL = 8,      /* integer and bool arrays are computed in float64 rather than declined: the CNN
                             toolkit's rule (its ops have no NumPy Reference) */
};

enum { VG_MAX_ARRAYS = 6, VG_MAX_RESULTS = 6, VG_MAX_KEPT = 8 };

typedef struct {
    PyObject *module;             /* vgrad._C: vg_numpy(c.module) is its state */
    const char *op;               /* the op's name; every error message begins with it */
    PyObject *const *args;        /* the positional arguments */
    Py_ssize_t nargs;
    int type;                     /* the compute type, NPY_FLOAT or NPY_DOUBLE (-1 without array arguments) */
    int fortran;                  /* VG_KEEP_FORTRAN chose Fortran order */
    int n_in, n_results, n_kept;
    PyArrayObject *in[VG_MAX_ARRAYS];   /* the prepared array arguments (new references) */
    PyObject *results[VG_MAX_RESULTS];  /* what the function returns */
    PyObject *kept[VG_MAX_KEPT];        /* scratch arrays, indices, other references: released at the end */
} vg_call;

/* TypeError unless nargs == expected; then args[0..arrays-1] prepared as c->in[] by `flags` (a mixing rule
   ORed with VG_KEEP_FORTRAN, VG_AS_GIVEN or VG_ANY_REAL). Declining a dtype (the default rule: anything but
   float32/float64 that NumPy computes with) raises vgrad._C.UseReference. 0, or -1 with an exception. */
int vg_begin(vg_call *c, PyObject *module, const char *op, PyObject *const *args, Py_ssize_t nargs, int expected,
             int arrays, int flags);

/* The second half of vg_begin, for a function that reads other arguments first (so that their errors come
   before a dtype is declined): vg_begin(..., 0, 0) then vg_arrays(c, arrays, flags). */
int vg_arrays(vg_call *c, int arrays, int flags);

/* The results if no exception is set (one object, or a tuple of them all), else NULL; releases the rest. */
PyObject *vg_finish(vg_call *c);

/* A new output of the compute type (in Fortran order if c->fortran), uninitialised or zero-filled, appended to
   the results; vg_output_of takes another type (NPY_INTP for indices). A shape no array can have names the op
   (ValueError), and so does a MemoryError. Borrowed (the call owns it), or NULL. */
PyArrayObject *vg_output(vg_call *c, int ndim, const npy_intp *dims);
PyArrayObject *vg_output_zeros(vg_call *c, int ndim, const npy_intp *dims);
PyArrayObject *vg_output_of(vg_call *c, int ndim, const npy_intp *dims, int typenum);

/* An uninitialised C-ordered array of the compute type that is not returned (a kernel's work space). */
PyArrayObject *vg_scratch_array(vg_call *c, int ndim, const npy_intp *dims);

/* Append obj (a new reference, stolen; NULL for a failure whose exception is set) to the results, or keep it
   until the end of the call. Both return obj, borrowed. obj may be any PyObject (void * saves casts). */
void *vg_result(vg_call *c, void *obj);
void *vg_keep(vg_call *c, void *obj);

/* obj as a C-contiguous array of the compute type, kept by the call (a further argument that follows the
   type the array arguments set, e.g. running statistics); NULL with an exception. */
PyArrayObject *vg_input(vg_call *c, PyObject *obj);

/* The positional argument args[i] as an int, a truth value, or a shape. vg_arg_shape: ndim >= 0 requires
   exactly ndim dimensions; dims (NPY_MAXDIMS entries) gets them, *ndim_out (if not NULL) their number; the
   sizes are non-negative and multiply (those not 0) to a size that fits in npy_intp. 0, or -1 with an
   exception naming the op and `what`. */
int vg_arg_int(vg_call *c, int i, const char *what, Py_ssize_t *value);
int vg_arg_bool(vg_call *c, int i, int *value);
int vg_arg_shape(vg_call *c, int i, const char *what, int ndim, npy_intp *dims, int *ndim_out);

/* args[i] as `count` integer indices (any shape with that many elements; a vector with VG_INDEX_VECTOR),
   each in [0, limit), or in [-limit, limit) with VG_INDEX_WRAP, where negative ones count from the end (as
   NumPy's indexing) and are wrapped in the returned copy. TypeError (not integers), ValueError (count, or
   dimensions) or IndexError (range) naming the op and `what`. The data, kept by the call, or NULL. */
enum { VG_INDEX_VECTOR = 1, VG_INDEX_WRAP = 2 };
const npy_intp *vg_arg_indices(vg_call *c, int i, const char *what, npy_intp count, npy_intp limit, int flags);

/* ---- the GIL (boundary.c) ----------------------------------------------------------------------------
   The one rule: a kernel runs without the GIL when it touches more than VG_GIL_WORK elements (or, for a
   matrix product, multiply-adds). Below that, releasing and taking back the GIL (a wait for another thread's
   turn, when one is running Python) costs more than the kernel, and other threads would gain nothing. */
#define VG_GIL_WORK 4096

/* The thread state to give vg_restore_gil: NULL when the GIL is kept. */
static inline PyThreadState *vg_release_gil(npy_intp work)
{
    return work > VG_GIL_WORK ? PyEval_SaveThread() : NULL;
}

static inline void vg_restore_gil(PyThreadState *saved)
{
    if (saved != NULL)
        PyEval_RestoreThread(saved);
}

/* ---- shape errors (boundary.c) --------------------------------------------------------------------------
   Every error about a shape goes through vg_shape_error: ValueError "<op>: <message>", the message formatted
   as by PyUnicode_FromFormat; shapes are written as Python writes tuples by VG_SHAPE(array) or
   VG_DIMS(ndim, dims), passed to a %s. Returns -1:
       return vg_shape_error(c.op, "the upstream gradient must have shape (%zd,), got %s", (Py_ssize_t)n,
                             VG_SHAPE(go)); */
int vg_shape_error(const char *op, const char *format, ...);

#define VG_SHAPE_CHARS (NPY_MAXDIMS * 22 + 4) /* "(" + up to NPY_MAXDIMS of "-9223372036854775808, " + ",)" */
/* dims written as a Python tuple, "(2, 3)", "(4,)" or "()", into buf (VG_SHAPE_CHARS bytes); returns buf. */
const char *vg_shape_text(char *buf, int ndim, const npy_intp *dims);
/* (The buffer is a compound literal: it lives until the end of the block of the call that uses it.) */
#define VG_DIMS(ndim, dims) vg_shape_text((char[VG_SHAPE_CHARS]){0}, (ndim), (dims))
#define VG_SHAPE(arr) VG_DIMS(PyArray_NDIM(arr), PyArray_DIMS(arr))

/* ValueError unless a and b have the same shape: "<op>: <what> have different shapes (..) and (..)<hint>"
   (hint: "" or "; ..."). */
int vg_check_same_shape(const char *op, const char *what, const char *hint, PyArrayObject *a, PyArrayObject *b);

/* ValueError unless arr has ndim dimensions: "<op>: <what> must have <ndim> dimensions, got shape (..)". */
int vg_check_ndim(const char *op, const char *what, PyArrayObject *arr, int ndim);

/* ---- the pieces vg_call is made of (convert.c), for what it does not cover --------------------------- */

/* TypeError unless exactly `expected` positional arguments were given. */
int vg_check_nargs(const char *op, Py_ssize_t nargs, Py_ssize_t expected);

/* The compute type (NPY_FLOAT or NPY_DOUBLE) for these objects, or -1 with TypeError naming the op and the
   offending dtype. Objects that are not arrays are looked at as np.asarray would see them. */
int vg_compute_type(const char *op, PyObject *const *objs, int n);

/* vg_compute_type with the built-in ops' declining (a dtype other than float32/float64 that NumPy computes
   with raises UseReference; with VG_SAME_FLOAT also float32 with float64): the compute type, or -1. */
int vg_compute_type_exact(PyObject *module, const char *op, PyObject *const *objs, int n, int mixing);

/* A new reference to obj as an aligned, native-order array of `typenum`, C-contiguous (or Fortran-contiguous
   when `fortran` is set); copies only when it must. NULL with an exception naming the op otherwise. */
PyArrayObject *vg_as_contiguous(const char *op, PyObject *obj, int typenum);
PyArrayObject *vg_as_contiguous_order(const char *op, PyObject *obj, int typenum, int fortran);

/* Convert n objects to their common compute type (vg_compute_type's rule): out[0..n-1] get new references
   and the type is returned, or -1 (out[] all NULL) with an exception. */
int vg_prepare(const char *op, PyObject *const *objs, int n, PyArrayObject **out);

/* A new uninitialised / zero-filled array (C order, or Fortran order); a shape no array can have (its sizes
   multiply past NPY_MAX_INTP bytes) is a ValueError naming the op, lack of memory a MemoryError naming it. */
PyArrayObject *vg_empty(const char *op, int ndim, const npy_intp *dims, int typenum);
PyArrayObject *vg_zeros(const char *op, int ndim, const npy_intp *dims, int typenum);
PyArrayObject *vg_empty_order(const char *op, int ndim, const npy_intp *dims, int typenum, int fortran);

/* ---- the buffer cache (alloc.c) ----
   A new array of a shape that can exist (checked by the caller), uninitialised or zero-filled, in C or
   Fortran order. One of at least alloc.c's threshold size takes its data from the cache of freed blocks.
   Steals the reference to descr. A new reference, or NULL with NumPy's exception. */
PyObject *vg_cached_array(int ndim, const npy_intp *dims, PyArray_Descr *descr, int fortran, int zeroed);

/* A shape given by Python (tuple/list of ints), checked to be non-negative with sizes (those that are not 0)
   whose product fits in npy_intp, so that callers may multiply them; PyDimMem_FREE(dims->ptr). */
int vg_parse_shape(const char *op, const char *what, PyObject *obj, PyArray_Dims *dims);

/* A Python int, range-checked; -1 with an exception otherwise. */
int vg_parse_int(const char *op, const char *what, PyObject *obj, Py_ssize_t *value);

/* Normalise a possibly negative axis for an array of ndim dimensions, or fail with ValueError. */
int vg_normalize_axis(const char *op, Py_ssize_t *axis, int ndim);

/* Integer indices as a new C-contiguous intp array of `count` elements (any shape with that many elements),
   or NULL with TypeError (not integers) or ValueError (wrong count) naming the op. */
PyArrayObject *vg_as_indices(const char *op, const char *what, PyObject *obj, npy_intp count);

/* Release every reference in arr[0..n-1] (NULLs allowed). */
void vg_release(PyArrayObject **arr, int n);

/* Raise vgrad._C.UseReference (a TypeError), which the op's method (a with_reference object) catches to run
   the op's NumPy Reference instead: for dtypes the kernel does not take, and float64 memory layouts for
   which it does not reproduce NumPy's order of evaluation. `why` completes "<op>: ...". Returns -1. */
int vg_decline(PyObject *module, const char *op, const char *why);

/* obj is an ndarray of `typenum`, aligned, in native byte order and C-contiguous: the layout for which the
   kernels evaluate in NumPy's order. (The same with F-contiguous for vg_is_plain_f.) */
int vg_is_plain_c(PyObject *obj, int typenum);
int vg_is_plain_f(PyObject *obj, int typenum);

/* ---- NumPy's loops and ufuncs (npyloops.c) --------------------------------------------------------- */

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
   A new reference, or NULL with an exception naming the op. */
PyObject *vg_matmul(PyObject *module, const char *op, PyObject *a, int transpose_a, PyObject *b, int transpose_b);

/* with_reference(kernel_method, reference_method): the callable that ops.py installs as each built-in op's
   forward and backward (npyloops.c). */
int vg_with_reference_type_add(PyObject *module);

/* y[i] = exp(max(scale * x[i] + offset, floor)), vectorised, within 1 ulp of libm's expf; y and x must not
   overlap. floor = -HUGE_VALF for a plain exp (vexp.c). */
void vg_exp_f32(float *restrict y, const float *restrict x, npy_intp n, float scale, float offset, float floor);

/* ---- the rule for maxima -------------------------------------------------------------------------------
   NumPy's, for every maximum vgrad takes (RowMax, LogSoftmax, cross-entropy, max pooling): scanning in order,
   a candidate replaces the best so far when it is larger, or when it is a NaN, unless the best already is a
   NaN. So the first maximum wins ties, and the first NaN wins over everything, as np.argmax picks it; the
   value is then a NaN, as np.amax propagates it. (For float arguments the compiler compares in float.) */
static inline int vg_replaces_max(double candidate, double best)
{
    return best == best && !(candidate <= best);
}

/* ---- kernels shared between files ------------------------------------------------------------------
   Declared once for a generic T in shared_kernels.h (NumPy's exp/log/sum loops, the pairwise sum, the sum
   over a middle axis, the row maximum, log-sum-exp and softmax), compiled here for float and double. */
#define VG_TEMPLATE "shared_kernels.h"
#include "instantiate.h"

#endif /* VGRAD_H */
