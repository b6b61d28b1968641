/*
 * elementwise.c — the element-wise ops: their kernels and their functions of vgrad._C are the sections of
 * elementwise_kernels.h (one per op, written once for float and double), which this file compiles; here
 * are the three shapes of call those functions share.
 *
 * Unary ops y = f(x). Backward gets the upstream gradient go and the array s the op saved in its context
 * (x or y, named in the row), and returns gx = go * f'(x):
 *     exp:      y = e^x                  gx = go * y                 (s = expd = y)
 *     log:      y = ln x                 gx = go / x                 (s = x)
 *     sigmoid:  y = 1 / (1 + e^-x)       gx = go * y * (1 - y)       (s = sigx = y)
 *     relu:     y = max(x, 0)            gx = go if x > 0 else 0     (s = x)
 *     neg:      y = -x                   (used for Sub's gradient over b)
 * Binary ops y = f(a, b) on equal shapes; their gradients over (a, b):
 *     add: (go, go)   sub: (go, -go)   mul: (go * b, go * a)   div: (go / b, -go * a / b^2)
 * add and sub need no kernel for their gradients: Python returns go and neg(go).
 *
 * float64 results are NumPy's bit for bit: the arithmetic is the reference formula's, in its order, and exp
 * and log are NumPy's own loops (npyloops.c). Which of its code paths NumPy's exp and log loops take depends
 * on the strides they are called with, so a float64 input that is not C-contiguous (and aligned, in native
 * byte order) goes to np.exp or np.log itself. float32 uses vexp.c and libm (faster; may differ in the last
 * bits). Other dtypes are declined (convert.c): the op's NumPy Reference computes them. Results are
 * C-ordered, or Fortran-ordered where every input is (VG_KEEP_FORTRAN), as NumPy lays them out, so that
 * a sum further on adds them in NumPy's order.
 *
 * Boundary: every op is one of three shapes of call, map1 (y = f(x)), map2 (y = f(a, b)) and map3to2
 * ((ga, gb) = f(go, a, b)), each one vg_call (vgrad.h) given the op's name, dtype rule and kernel.
 */
#include "vgrad.h"

/* ---- kernels: the sections of elementwise_kernels.h for float and double ---------------------------- */

#define VG_TEMPLATE "elementwise_kernels.h"
#include "instantiate.h"

/* ---- boundary ------------------------------------------------------------------------------------ */

/* A kernel's float and double instances, chosen by the compute type. */
typedef struct {
    void (*f32)(const vg_loops *, float *, const float *, npy_intp);
    void (*f64)(const vg_loops *, double *, const double *, npy_intp);
} unary_kernel;
typedef struct {
    void (*f32)(float *, const float *, const float *, npy_intp);
    void (*f64)(double *, const double *, const double *, npy_intp);
} binary_kernel;
typedef struct {
    void (*f32)(float *, float *, const float *, const float *, const float *, npy_intp);
    void (*f64)(double *, double *, const double *, const double *, const double *, npy_intp);
} gradient_pair_kernel;

#define KERNEL(type, name) ((type){name##_f32, name##_f64})

/* y = f(x). A float64 array that NumPy would not pass to its loop in one contiguous call goes to `ufunc`
   itself when one is given (exp and log: their loops' code paths depend on the layout). */
static PyObject *map1(PyObject *module, const char *op, PyObject *const *args, Py_ssize_t nargs, PyObject *ufunc,
                      unary_kernel k)
{
    vg_call c;
    PyArrayObject *x, *y;
    if (ufunc != NULL && nargs == 1 && PyArray_Check(args[0]) && PyArray_TYPE((PyArrayObject *)args[0]) == NPY_DOUBLE &&
        !vg_is_plain_c(args[0], NPY_DOUBLE))
        return vg_call_ufunc(ufunc, args[0]); /* before vg_begin, which would copy it */
    if (vg_begin(&c, module, op, args, nargs, 1, 1, VG_MIXED_OK | VG_KEEP_FORTRAN) < 0)
        goto done;
    x = c.in[0];
    if ((y = vg_output(&c, PyArray_NDIM(x), PyArray_DIMS(x))) == NULL)
        goto done;
    const npy_intp n = PyArray_SIZE(x);
    PyThreadState *gil = vg_release_gil(n);
    if (c.type == NPY_FLOAT)
        k.f32(&vg_numpy(module)->loops, PyArray_DATA(y), PyArray_DATA(x), n);
    else
        k.f64(&vg_numpy(module)->loops, PyArray_DATA(y), PyArray_DATA(x), n);
    vg_restore_gil(gil);
done:
    return vg_finish(&c);
}

/* y = f(a, b) for two arrays of one shape; `what` names them in a shape error, `hint` ("" or "; ...") ends
   it. mixing: VG_MIXED_OK when f is one operation, VG_SAME_FLOAT otherwise. */
static PyObject *map2(PyObject *module, const char *op, const char *what, const char *hint, PyObject *const *args,
                      Py_ssize_t nargs, int mixing, binary_kernel k)
{
    vg_call c;
    PyArrayObject *a, *b, *y;
    if (vg_begin(&c, module, op, args, nargs, 2, 2, mixing | VG_KEEP_FORTRAN) < 0)
        goto done;
    a = c.in[0], b = c.in[1];
    if (vg_check_same_shape(op, what, hint, a, b) < 0 || (y = vg_output(&c, PyArray_NDIM(a), PyArray_DIMS(a))) == NULL)
        goto done;
    const npy_intp n = PyArray_SIZE(a);
    PyThreadState *gil = vg_release_gil(n);
    if (c.type == NPY_FLOAT)
        k.f32(PyArray_DATA(y), PyArray_DATA(a), PyArray_DATA(b), n);
    else
        k.f64(PyArray_DATA(y), PyArray_DATA(a), PyArray_DATA(b), n);
    vg_restore_gil(gil);
done:
    return vg_finish(&c);
}

/* (ga, gb) = f(go, a, b) for three arrays of one shape. */
static PyObject *map3to2(PyObject *module, const char *op, PyObject *const *args, Py_ssize_t nargs, int mixing,
                         gradient_pair_kernel k)
{
    vg_call c;
    PyArrayObject *go, *a, *b, *ga, *gb;
    if (vg_begin(&c, module, op, args, nargs, 3, 3, mixing | VG_KEEP_FORTRAN) < 0)
        goto done;
    go = c.in[0], a = c.in[1], b = c.in[2];
    if (vg_check_same_shape(op, "the inputs a and b", "", a, b) < 0 ||
        vg_check_same_shape(op, "the upstream gradient and the input a", "", go, a) < 0 ||
        (ga = vg_output(&c, PyArray_NDIM(a), PyArray_DIMS(a))) == NULL ||
        (gb = vg_output(&c, PyArray_NDIM(a), PyArray_DIMS(a))) == NULL)
        goto done;
    const npy_intp n = PyArray_SIZE(a);
    PyThreadState *gil = vg_release_gil(n);
    if (c.type == NPY_FLOAT)
        k.f32(PyArray_DATA(ga), PyArray_DATA(gb), PyArray_DATA(go), PyArray_DATA(a), PyArray_DATA(b), n);
    else
        k.f64(PyArray_DATA(ga), PyArray_DATA(gb), PyArray_DATA(go), PyArray_DATA(a), PyArray_DATA(b), n);
    vg_restore_gil(gil);
done:
    return vg_finish(&c);
}

/* An op's gradient go * f'(x), from the upstream gradient and the array the op saved. */
static PyObject *gradient(PyObject *module, const char *op, const char *what, PyObject *const *args,
                          Py_ssize_t nargs, int mixing, binary_kernel k)
{
    return map2(module, op, what, "", args, nargs, mixing, k);
}

/* a (+ - * /) b of one shape. */
static PyObject *arithmetic(PyObject *module, const char *op, PyObject *const *args, Py_ssize_t nargs,
                            binary_kernel k)
{
    return map2(module, op, "the inputs", "; use Expand to repeat a singleton dimension first", args, nargs,
                VG_MIXED_OK, k);
}

/* ---- the functions of vgrad._C, from the sections of elementwise_kernels.h ---------------------------- */

#define VG_BOUNDARIES
#include "elementwise_kernels.h"
#undef VG_BOUNDARIES
