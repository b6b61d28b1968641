/*
 * elementwise.c — the element-wise ops, forward and backward side by side (the kernels are in
 * elementwise_kernels.h, written once for float and double).
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
 * bits). Other dtypes are declined (vg_prepare_exact): the op's NumPy Reference computes them. Results are
 * C-ordered, or Fortran-ordered where every input is (vg_prepare_elementwise), as NumPy lays them out, so that
 * a sum further on adds them in NumPy's order.
 */
#include "vgrad.h"

/* ---- kernels ------------------------------------------------------------------------------------- */

#define T float
#define SFX f32
#include "elementwise_kernels.h"
#undef T
#undef SFX
#define T double
#define SFX f64
#include "elementwise_kernels.h"
#undef T
#undef SFX

/* ---- boundary ------------------------------------------------------------------------------------ */

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

#define UNARY(name) ((unary_kernel){name##_f32, name##_f64})
#define BINARY(name) ((binary_kernel){name##_f32, name##_f64})

/* y = f(x). A float64 array that NumPy would not pass to its loop in one contiguous call goes to `ufunc`
   itself when one is given (exp and log: their loops' code paths depend on the layout). */
static PyObject *map1(PyObject *module, const char *op, PyObject *const *args, Py_ssize_t nargs, PyObject *ufunc,
                      unary_kernel k)
{
    PyArrayObject *x;
    int t, fortran;
    if (vg_check_nargs(op, nargs, 1) < 0)
        return NULL;
    if (ufunc != NULL && PyArray_Check(args[0]) && PyArray_TYPE((PyArrayObject *)args[0]) == NPY_DOUBLE &&
        !vg_is_plain_c(args[0], NPY_DOUBLE))
        return vg_call_ufunc(ufunc, args[0]);
    if ((t = vg_prepare_elementwise(module, op, args, 1, &x, VG_MIXED_OK, &fortran)) < 0)
        return NULL;
    PyArrayObject *y = vg_empty_order(op, PyArray_NDIM(x), PyArray_DIMS(x), t, fortran);
    if (y != NULL) {
        const vg_loops *L = &vg_numpy(module)->loops;
        npy_intp n = PyArray_SIZE(x);
        NPY_BEGIN_THREADS_DEF;
        NPY_BEGIN_THREADS_THRESHOLDED(n);
        if (t == NPY_FLOAT)
            k.f32(L, PyArray_DATA(y), PyArray_DATA(x), n);
        else
            k.f64(L, PyArray_DATA(y), PyArray_DATA(x), n);
        NPY_END_THREADS;
    }
    Py_DECREF(x);
    return (PyObject *)y;
}

/* y = f(a, b) for two arrays of one shape; `what` names them in a shape error. mixing: VG_MIXED_OK when f is
   one operation, VG_SAME_FLOAT otherwise (vg_prepare_exact). */
static PyObject *map2(PyObject *module, const char *op, const char *what, const char *hint, PyObject *const *args,
                      Py_ssize_t nargs, int mixing, binary_kernel k)
{
    PyArrayObject *in[2];
    int t, fortran;
    if (vg_check_nargs(op, nargs, 2) < 0 || (t = vg_prepare_elementwise(module, op, args, 2, in, mixing, &fortran)) < 0)
        return NULL;
    PyArrayObject *y = NULL;
    if (vg_check_same_shape(op, what, hint, in[0], in[1]) == 0)
        y = vg_empty_order(op, PyArray_NDIM(in[0]), PyArray_DIMS(in[0]), t, fortran);
    if (y != NULL) {
        npy_intp n = PyArray_SIZE(in[0]);
        NPY_BEGIN_THREADS_DEF;
        NPY_BEGIN_THREADS_THRESHOLDED(n);
        if (t == NPY_FLOAT)
            k.f32(PyArray_DATA(y), PyArray_DATA(in[0]), PyArray_DATA(in[1]), n);
        else
            k.f64(PyArray_DATA(y), PyArray_DATA(in[0]), PyArray_DATA(in[1]), n);
        NPY_END_THREADS;
    }
    vg_release(in, 2);
    return (PyObject *)y;
}

/* (ga, gb) = f(go, a, b) for three arrays of one shape. */
static PyObject *map3to2(PyObject *module, const char *op, PyObject *const *args, Py_ssize_t nargs, int mixing,
                         gradient_pair_kernel k)
{
    PyArrayObject *in[3], *out[2] = {NULL, NULL};
    int t, fortran;
    if (vg_check_nargs(op, nargs, 3) < 0 || (t = vg_prepare_elementwise(module, op, args, 3, in, mixing, &fortran)) < 0)
        return NULL;
    PyObject *result = NULL;
    if (vg_check_same_shape(op, "the inputs a and b", "", in[1], in[2]) < 0 ||
        vg_check_same_shape(op, "the upstream gradient and the input a", "", in[0], in[1]) < 0)
        goto done;
    for (int i = 0; i < 2; i++)
        if ((out[i] = vg_empty_order(op, PyArray_NDIM(in[0]), PyArray_DIMS(in[0]), t, fortran)) == NULL)
            goto done;
    npy_intp n = PyArray_SIZE(in[0]);
    NPY_BEGIN_THREADS_DEF;
    NPY_BEGIN_THREADS_THRESHOLDED(n);
    if (t == NPY_FLOAT)
        k.f32(PyArray_DATA(out[0]), PyArray_DATA(out[1]), PyArray_DATA(in[0]), PyArray_DATA(in[1]),
              PyArray_DATA(in[2]), n);
    else
        k.f64(PyArray_DATA(out[0]), PyArray_DATA(out[1]), PyArray_DATA(in[0]), PyArray_DATA(in[1]),
              PyArray_DATA(in[2]), n);
    NPY_END_THREADS;
    result = PyTuple_Pack(2, out[0], out[1]);
done:
    vg_release(in, 3);
    vg_release(out, 2);
    return result;
}

#define GRADIENT(Op, saved, mixing, name) \
    map2(module, Op " backward", "the upstream gradient and the saved " saved, "", args, nargs, mixing, BINARY(name))

VG_BOUNDARY(exp_forward)
{
    return map1(module, "Exp", args, nargs, vg_numpy(module)->exp, UNARY(exp_forward));
}

VG_BOUNDARY(exp_backward)
{
    return GRADIENT("Exp", "expd", VG_MIXED_OK, exp_backward); /* go * expd */
}

VG_BOUNDARY(log_forward)
{
    return map1(module, "Log", args, nargs, vg_numpy(module)->log, UNARY(log_forward));
}

VG_BOUNDARY(log_backward)
{
    return GRADIENT("Log", "x", VG_MIXED_OK, log_backward); /* go / x */
}

VG_BOUNDARY(sigmoid_forward)
{
    /* any layout: np.exp(-x) runs on the negation, a new contiguous array */
    return map1(module, "Sigmoid", args, nargs, NULL, UNARY(sigmoid_forward));
}

VG_BOUNDARY(sigmoid_backward)
{
    return GRADIENT("Sigmoid", "sigx", VG_SAME_FLOAT, sigmoid_backward);
}

VG_BOUNDARY(relu_forward)
{
    return map1(module, "ReLU", args, nargs, NULL, UNARY(relu_forward));
}

VG_BOUNDARY(relu_backward)
{
    return GRADIENT("ReLU", "x", VG_SAME_FLOAT, relu_backward); /* np.where keeps go's dtype */
}

VG_BOUNDARY(neg_forward)
{
    return map1(module, "Sub backward", args, nargs, NULL, UNARY(neg_forward));
}

#define ARITHMETIC(Op, name) \
    map2(module, Op, "the inputs", "; use Expand to repeat a singleton dimension first", args, nargs, VG_MIXED_OK, \
         BINARY(name))

VG_BOUNDARY(add_forward)
{
    return ARITHMETIC("Add", add_forward);
}

VG_BOUNDARY(sub_forward)
{
    return ARITHMETIC("Sub", sub_forward);
}

VG_BOUNDARY(mul_forward)
{
    return ARITHMETIC("Multiply", mul_forward);
}

VG_BOUNDARY(div_forward)
{
    return ARITHMETIC("Div", div_forward);
}

VG_BOUNDARY(mul_backward)
{
    return map3to2(module, "Multiply backward", args, nargs, VG_MIXED_OK, /* go * b, go * a */
                   (gradient_pair_kernel){mul_backward_f32, mul_backward_f64});
}

VG_BOUNDARY(div_backward)
{
    return map3to2(module, "Div backward", args, nargs, VG_SAME_FLOAT,
                   (gradient_pair_kernel){div_backward_f32, div_backward_f64});
}
