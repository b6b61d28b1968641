/*
 * elementwise_kernels.h — the element-wise ops, one section each: its kernels, forward beside backward, then
 * the functions of vgrad._C that call them. elementwise.c includes this file three times: through
 * instantiate.h with T float, SFX f32 and with T double, SFX f64, which makes the kernels exp_forward_f32,
 * exp_forward_f64, ... (VG_T in vgrad.h); then with VG_BOUNDARIES defined, which makes the functions of
 * vgrad._C (VG_BOUNDARY), once, from the boundary helpers of elementwise.c (map1, gradient, arithmetic,
 * map3to2). So an element-wise op such as Tanh is one section here, and a line per function in functions.def.
 *
 * Kernels: all arrays are contiguous, of n elements; outputs first, then inputs. The one-input forward
 * kernels all take NumPy's loops L (vgrad.h), which exp, log and sigmoid use.
 *
 * Each expression is the reference formula of vgrad/ops.py with its operations in the same order (C
 * evaluates a * b * c as (a * b) * c, as NumPy does), so float64 results equal NumPy's bit for bit. The
 * transcendental functions are NumPy's own loops in float64 (npyloops.c).
 */

/* ---- Exp: y = e^x                 gx = go * expd (expd = y) ---------------------------------------- */
#ifndef VG_BOUNDARIES

static void VG_T(exp_forward)(const vg_loops *L, T *restrict y, const T *restrict x, npy_intp n)
{
    VG_T(vg_exp_array)(L, y, x, n);
}

static void VG_T(exp_backward)(T *restrict gx, const T *go, const T *expd, npy_intp n)
{
    for (npy_intp i = 0; i < n; i++)
        gx[i] = go[i] * expd[i];
}

#else

VG_BOUNDARY(exp_forward)
{
    return map1(module, "Exp", args, nargs, vg_numpy(module)->exp, KERNEL(unary_kernel, exp_forward));
}

VG_BOUNDARY(exp_backward) /* go * expd */
{
    return gradient(module, "Exp backward", "the upstream gradient and the saved expd", args, nargs, VG_MIXED_OK,
                    KERNEL(binary_kernel, exp_backward));
}

#endif

/* ---- Log: y = ln x                gx = go / x ----------------------------------------------------- */
#ifndef VG_BOUNDARIES

static void VG_T(log_forward)(const vg_loops *L, T *restrict y, const T *restrict x, npy_intp n)
{
    VG_T(vg_log_array)(L, y, x, n);
}

static void VG_T(log_backward)(T *restrict gx, const T *go, const T *x, npy_intp n)
{
    for (npy_intp i = 0; i < n; i++)
        gx[i] = go[i] / x[i];
}

#else

VG_BOUNDARY(log_forward)
{
    return map1(module, "Log", args, nargs, vg_numpy(module)->log, KERNEL(unary_kernel, log_forward));
}

VG_BOUNDARY(log_backward) /* go / x */
{
    return gradient(module, "Log backward", "the upstream gradient and the saved x", args, nargs, VG_MIXED_OK,
                    KERNEL(binary_kernel, log_backward));
}

#endif

/* ---- Sigmoid: y = 1 / (1 + np.exp(-x))      gx = go * sigx * (1 - sigx) (sigx = y) ------------------ */
#ifndef VG_BOUNDARIES

static void VG_T(sigmoid_forward)(const vg_loops *L, T *restrict y, const T *restrict x, npy_intp n)
{
    /* in pieces that stay in cache; a multiple of 8 elements, so that the exp loop's SIMD lanes hold the
       same elements as in one call over the whole array */
    for (npy_intp start = 0; start < n; start += 2048) {
        const npy_intp len = n - start < 2048 ? n - start : 2048;
        T *restrict e = y + start;
        VG_T(vg_exp_negated_array)(L, e, x + start, len);
        for (npy_intp i = 0; i < len; i++)
            e[i] = 1 / (1 + e[i]);
    }
}

static void VG_T(sigmoid_backward)(T *restrict gx, const T *go, const T *sigx, npy_intp n)
{
    for (npy_intp i = 0; i < n; i++)
        gx[i] = go[i] * sigx[i] * (1 - sigx[i]);
}

#else

VG_BOUNDARY(sigmoid_forward) /* any layout: np.exp(-x) runs on the negation, a new contiguous array */
{
    return map1(module, "Sigmoid", args, nargs, NULL, KERNEL(unary_kernel, sigmoid_forward));
}

VG_BOUNDARY(sigmoid_backward) /* go * sigx * (1 - sigx) */
{
    return gradient(module, "Sigmoid backward", "the upstream gradient and the saved sigx", args, nargs,
                    VG_SAME_FLOAT, KERNEL(binary_kernel, sigmoid_backward));
}

#endif

/* ---- ReLU: y = np.maximum(x, 0)         gx = go where x > 0, else 0 (shared_kernels.h's formulas) ------ */
#ifndef VG_BOUNDARIES

static void VG_T(relu_forward)(const vg_loops *L, T *restrict y, const T *restrict x, npy_intp n)
{
    (void)L;
    for (npy_intp i = 0; i < n; i++)
        y[i] = VG_T(vg_relu)(x[i]);
}

static void VG_T(relu_backward)(T *restrict gx, const T *go, const T *x, npy_intp n)
{
    for (npy_intp i = 0; i < n; i++)
        gx[i] = VG_T(vg_relu_grad)(go[i], x[i]);
}

#else

VG_BOUNDARY(relu_forward)
{
    return map1(module, "ReLU", args, nargs, NULL, KERNEL(unary_kernel, relu_forward));
}

VG_BOUNDARY(relu_backward) /* go where x > 0; np.where keeps go's dtype */
{
    return gradient(module, "ReLU backward", "the upstream gradient and the saved x", args, nargs, VG_SAME_FLOAT,
                    KERNEL(binary_kernel, relu_backward));
}

#endif

/* ---- Sub's gradient over b: -go ------------------------------------------------------------------------ */
#ifndef VG_BOUNDARIES

static void VG_T(neg_forward)(const vg_loops *L, T *restrict y, const T *restrict x, npy_intp n)
{
    (void)L;
    for (npy_intp i = 0; i < n; i++)
        y[i] = -x[i];
}

#else

VG_BOUNDARY(neg_forward)
{
    return map1(module, "Sub backward", args, nargs, NULL, KERNEL(unary_kernel, neg_forward));
}

#endif

/* ---- Add, Sub: y = a + b, a - b        (ga, gb) = (go, go), (go, -go): no kernel needed --------------- */
#ifndef VG_BOUNDARIES

static void VG_T(add_forward)(T *restrict y, const T *a, const T *b, npy_intp n)
{
    for (npy_intp i = 0; i < n; i++)
        y[i] = a[i] + b[i];
}

static void VG_T(sub_forward)(T *restrict y, const T *a, const T *b, npy_intp n)
{
    for (npy_intp i = 0; i < n; i++)
        y[i] = a[i] - b[i];
}

#else

VG_BOUNDARY(add_forward)
{
    return arithmetic(module, "Add", args, nargs, KERNEL(binary_kernel, add_forward));
}

VG_BOUNDARY(sub_forward)
{
    return arithmetic(module, "Sub", args, nargs, KERNEL(binary_kernel, sub_forward));
}

#endif

/* ---- Multiply: y = a * b               (ga, gb) = (go * b, go * a) ------------------------------------ */
#ifndef VG_BOUNDARIES

static void VG_T(mul_forward)(T *restrict y, const T *a, const T *b, npy_intp n)
{
    for (npy_intp i = 0; i < n; i++)
        y[i] = a[i] * b[i];
}

static void VG_T(mul_backward)(T *restrict ga, T *restrict gb, const T *go, const T *a, const T *b, npy_intp n)
{
    for (npy_intp i = 0; i < n; i++) {
        ga[i] = go[i] * b[i];
        gb[i] = go[i] * a[i];
    }
}

#else

VG_BOUNDARY(mul_forward)
{
    return arithmetic(module, "Multiply", args, nargs, KERNEL(binary_kernel, mul_forward));
}

VG_BOUNDARY(mul_backward) /* (go * b, go * a) */
{
    return map3to2(module, "Multiply backward", args, nargs, VG_MIXED_OK,
                   KERNEL(gradient_pair_kernel, mul_backward));
}

#endif

/* ---- Div: y = a / b                    (ga, gb) = (go / b, -go * a / (b * b)) ------------------------- */
#ifndef VG_BOUNDARIES

static void VG_T(div_forward)(T *restrict y, const T *a, const T *b, npy_intp n)
{
    for (npy_intp i = 0; i < n; i++)
        y[i] = a[i] / b[i];
}

static void VG_T(div_backward)(T *restrict ga, T *restrict gb, const T *go, const T *a, const T *b, npy_intp n)
{
    for (npy_intp i = 0; i < n; i++) {
        ga[i] = go[i] / b[i];
        gb[i] = -go[i] * a[i] / (b[i] * b[i]); /* ((-go) * a) / (b * b) */
    }
}

#else

VG_BOUNDARY(div_forward)
{
    return arithmetic(module, "Div", args, nargs, KERNEL(binary_kernel, div_forward));
}

VG_BOUNDARY(div_backward) /* (go / b, -go * a / (b * b)) */
{
    return map3to2(module, "Div backward", args, nargs, VG_SAME_FLOAT, KERNEL(gradient_pair_kernel, div_backward));
}

#endif
