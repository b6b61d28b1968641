/*
 * elementwise.c — the element-wise ops, forward and backward side by side, one table row each.
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
 * The formulas are written in the order NumPy's reference evaluates them (vgrad/ops.py), so float64 results
 * agree with the reference to the last bit or so. NaN and inf propagate as in the reference.
 */
#include "vgrad.h"

/* ---- kernels ------------------------------------------------------------------------------------- */

/* exp and sigmoid compute their exponentials with vg_exp (vexp.c), which vectorises: see their forward
   kernels below the tables. Their gradients are in EXP_GRADS. */
#define UNARY_OPS(X)                                    \
    X(neg,     -x,                  -go)                \
    X(log,     log(x),              go / s)             \
    X(relu,    (x > 0 || x != x) ? x : 0, s > 0 ? go : 0) /* NaN stays NaN, -0 gives +0 (as np.maximum) */

#define BINARY_OPS(X)   \
    X(add, a + b)       \
    X(sub, a - b)       \
    X(mul, a * b)       \
    X(div, a / b)

#define BINARY_GRADS(X)                     \
    X(mul, go * b, go * a)                  \
    X(div, go / b, -go * a / (b * b))

#define EXP_GRADS(X)                        \
    X(exp,     go * s)             /* y = e^x, s = y */            \
    X(sigmoid, go * s * (1 - s))   /* y = 1 / (1 + e^-x), s = y */

#define DEFINE_UNARY(name, fwd, bwd)                                                                    \
    static inline void name##_forward_kernel_f32(float *restrict y, const float *restrict xs, npy_intp n) \
    { DEFINE_UNARY_LOOP(float, fwd) }                                                                   \
    static inline void name##_forward_kernel_f64(double *restrict y, const double *restrict xs, npy_intp n) \
    { DEFINE_UNARY_LOOP(double, fwd) }                                                                  \
    DEFINE_UNARY_GRAD(name, bwd)
#define DEFINE_UNARY_GRAD(name, bwd)                                                                    \
    static inline void name##_backward_kernel_f32(float *restrict gx, const float *gos, const float *ss, \
                                                  npy_intp n)                                           \
    { DEFINE_UNARY_GRAD_LOOP(float, bwd) }                                                              \
    static inline void name##_backward_kernel_f64(double *restrict gx, const double *gos,              \
                                                  const double *ss, npy_intp n)                         \
    { DEFINE_UNARY_GRAD_LOOP(double, bwd) }
#define DEFINE_UNARY_LOOP(T, fwd) \
    for (npy_intp i = 0; i < n; i++) { const T x = xs[i]; y[i] = (fwd); }
#define DEFINE_UNARY_GRAD_LOOP(T, bwd) \
    for (npy_intp i = 0; i < n; i++) { const T go = gos[i], s = ss[i]; (void)s; gx[i] = (bwd); }
UNARY_OPS(DEFINE_UNARY)
EXP_GRADS(DEFINE_UNARY_GRAD)

#define DEFINE_EXP_FORWARDS(T, S)                                                                       \
    static void exp_forward_kernel_##S(T *restrict y, const T *restrict x, npy_intp n)                 \
    {                                                                                                   \
        vg_exp_##S(y, x, n, 1, 0, -HUGE_VAL);                                                           \
    }                                                                                                   \
    static void sigmoid_forward_kernel_##S(T *restrict y, const T *restrict x, npy_intp n)             \
    {                                                                                                   \
        /* y = e^-x; below -40, 1 + e^-x is 1 exactly in float64 (float32: -20), so floor it there */  \
        vg_exp_##S(y, x, n, -1, 0, sizeof(T) == sizeof(float) ? -20 : -40);                             \
        for (npy_intp i = 0; i < n; i++)                                                                \
            y[i] = 1 / (1 + y[i]);                                                                      \
    }
VG_INSTANTIATE(DEFINE_EXP_FORWARDS)

#define DEFINE_BINARY(name, fwd)                                                                        \
    static inline void name##_forward_kernel_f32(float *restrict y, const float *as, const float *bs,  \
                                                 npy_intp n)                                            \
    { DEFINE_BINARY_LOOP(float, fwd) }                                                                  \
    static inline void name##_forward_kernel_f64(double *restrict y, const double *as, const double *bs, \
                                                 npy_intp n)                                            \
    { DEFINE_BINARY_LOOP(double, fwd) }
#define DEFINE_BINARY_LOOP(T, fwd) \
    for (npy_intp i = 0; i < n; i++) { const T a = as[i], b = bs[i]; y[i] = (fwd); }
BINARY_OPS(DEFINE_BINARY)

#define DEFINE_BINARY_GRAD(name, ga_expr, gb_expr)                                                      \
    static inline void name##_backward_kernel_f32(float *restrict ga, float *restrict gb,               \
                                                  const float *gos, const float *as, const float *bs,   \
                                                  npy_intp n)                                           \
    { DEFINE_BINARY_GRAD_LOOP(float, ga_expr, gb_expr) }                                                \
    static inline void name##_backward_kernel_f64(double *restrict ga, double *restrict gb,            \
                                                  const double *gos, const double *as, const double *bs, \
                                                  npy_intp n)                                           \
    { DEFINE_BINARY_GRAD_LOOP(double, ga_expr, gb_expr) }
#define DEFINE_BINARY_GRAD_LOOP(T, ga_expr, gb_expr) \
    for (npy_intp i = 0; i < n; i++) {               \
        const T go = gos[i], a = as[i], b = bs[i];   \
        ga[i] = (ga_expr);                           \
        gb[i] = (gb_expr);                           \
    }
BINARY_GRADS(DEFINE_BINARY_GRAD)

/* ---- boundary ------------------------------------------------------------------------------------ */

typedef void (*map1_f32)(float *, const float *, npy_intp);
typedef void (*map1_f64)(double *, const double *, npy_intp);
typedef void (*map2_f32)(float *, const float *, const float *, npy_intp);
typedef void (*map2_f64)(double *, const double *, const double *, npy_intp);
typedef void (*map3to2_f32)(float *, float *, const float *, const float *, const float *, npy_intp);
typedef void (*map3to2_f64)(double *, double *, const double *, const double *, const double *, npy_intp);

/* y = f(x) */
static PyObject *map1(const char *op, PyObject *const *args, Py_ssize_t nargs, map1_f32 k32, map1_f64 k64)
{
    PyArrayObject *x;
    int t;
    if (vg_check_nargs(op, nargs, 1) < 0 || (t = vg_prepare(op, args, 1, &x)) < 0)
        return NULL;
    PyArrayObject *y = vg_empty(op, PyArray_NDIM(x), PyArray_DIMS(x), t);
    if (y != NULL) {
        npy_intp n = PyArray_SIZE(x);
        NPY_BEGIN_THREADS_DEF;
        NPY_BEGIN_THREADS_THRESHOLDED(n);
        if (t == NPY_FLOAT)
            k32(PyArray_DATA(y), PyArray_DATA(x), n);
        else
            k64(PyArray_DATA(y), PyArray_DATA(x), n);
        NPY_END_THREADS;
    }
    Py_DECREF(x);
    return (PyObject *)y;
}

/* y = f(a, b) for two arrays of one shape; `what` names them in a shape error. */
static PyObject *map2(const char *op, const char *what, const char *hint, PyObject *const *args,
                      Py_ssize_t nargs, map2_f32 k32, map2_f64 k64)
{
    PyArrayObject *in[2];
    int t;
    if (vg_check_nargs(op, nargs, 2) < 0 || (t = vg_prepare(op, args, 2, in)) < 0)
        return NULL;
    PyArrayObject *y = NULL;
    if (vg_check_same_shape(op, what, hint, in[0], in[1]) == 0)
        y = vg_empty(op, PyArray_NDIM(in[0]), PyArray_DIMS(in[0]), t);
    if (y != NULL) {
        npy_intp n = PyArray_SIZE(in[0]);
        NPY_BEGIN_THREADS_DEF;
        NPY_BEGIN_THREADS_THRESHOLDED(n);
        if (t == NPY_FLOAT)
            k32(PyArray_DATA(y), PyArray_DATA(in[0]), PyArray_DATA(in[1]), n);
        else
            k64(PyArray_DATA(y), PyArray_DATA(in[0]), PyArray_DATA(in[1]), n);
        NPY_END_THREADS;
    }
    vg_release(in, 2);
    return (PyObject *)y;
}

/* (ga, gb) = f(go, a, b) for three arrays of one shape. */
static PyObject *map3to2(const char *op, PyObject *const *args, Py_ssize_t nargs,
                         map3to2_f32 k32, map3to2_f64 k64)
{
    PyArrayObject *in[3], *out[2] = {NULL, NULL};
    int t;
    if (vg_check_nargs(op, nargs, 3) < 0 || (t = vg_prepare(op, args, 3, in)) < 0)
        return NULL;
    PyObject *result = NULL;
    if (vg_check_same_shape(op, "the inputs a and b", "", in[1], in[2]) < 0 ||
        vg_check_same_shape(op, "the upstream gradient and the input a", "", in[0], in[1]) < 0)
        goto done;
    for (int i = 0; i < 2; i++)
        if ((out[i] = vg_empty(op, PyArray_NDIM(in[0]), PyArray_DIMS(in[0]), t)) == NULL)
            goto done;
    npy_intp n = PyArray_SIZE(in[0]);
    NPY_BEGIN_THREADS_DEF;
    NPY_BEGIN_THREADS_THRESHOLDED(n);
    if (t == NPY_FLOAT)
        k32(PyArray_DATA(out[0]), PyArray_DATA(out[1]), PyArray_DATA(in[0]), PyArray_DATA(in[1]),
            PyArray_DATA(in[2]), n);
    else
        k64(PyArray_DATA(out[0]), PyArray_DATA(out[1]), PyArray_DATA(in[0]), PyArray_DATA(in[1]),
            PyArray_DATA(in[2]), n);
    NPY_END_THREADS;
    result = PyTuple_Pack(2, out[0], out[1]);
done:
    vg_release(in, 3);
    vg_release(out, 2);
    return result;
}

#define UNARY_BOUNDARY(name, Op, saved)                                                                 \
    VG_BOUNDARY(name##_forward)                                                                         \
    {                                                                                                   \
        return map1(Op, args, nargs, name##_forward_kernel_f32, name##_forward_kernel_f64);            \
    }                                                                                                   \
    VG_BOUNDARY(name##_backward)                                                                        \
    {                                                                                                   \
        return map2(Op " backward", "the upstream gradient and the saved " saved, "", args, nargs,         \
                    name##_backward_kernel_f32, name##_backward_kernel_f64);                            \
    }
UNARY_BOUNDARY(exp, "Exp", "expd")
UNARY_BOUNDARY(log, "Log", "x")
UNARY_BOUNDARY(sigmoid, "Sigmoid", "sigx")
UNARY_BOUNDARY(relu, "ReLU", "x")

VG_BOUNDARY(neg_forward)
{
    return map1("Sub backward", args, nargs, neg_forward_kernel_f32, neg_forward_kernel_f64);
}

#define BINARY_BOUNDARY(name, Op)                                                                       \
    VG_BOUNDARY(name##_forward)                                                                         \
    {                                                                                                   \
        return map2(Op, "the inputs", "; use Expand to repeat a singleton dimension first", args, nargs,   \
                    name##_forward_kernel_f32, name##_forward_kernel_f64);                              \
    }
BINARY_BOUNDARY(add, "Add")
BINARY_BOUNDARY(sub, "Sub")
BINARY_BOUNDARY(mul, "Multiply")
BINARY_BOUNDARY(div, "Div")

VG_BOUNDARY(mul_backward)
{
    return map3to2("Multiply backward", args, nargs, mul_backward_kernel_f32, mul_backward_kernel_f64);
}

VG_BOUNDARY(div_backward)
{
    return map3to2("Div backward", args, nargs, div_backward_kernel_f32, div_backward_kernel_f64);
}
