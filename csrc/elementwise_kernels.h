/*
 * elementwise_kernels.h — the element-wise kernels for one element type: included by elementwise.c with
 * T float, SFX f32 and with T double, SFX f64, which makes exp_forward_f32, exp_forward_f64, ... (VG_T in
 * vgrad.h). All arrays are contiguous, of n elements; outputs first, then inputs. The one-input forward
 * kernels all take NumPy's loops L (vgrad.h), which exp, log and sigmoid use.
 *
 * Each expression is the reference formula of vgrad/ops.py with its operations in the same order (C
 * evaluates a * b * c as (a * b) * c, as NumPy does), so float64 results equal NumPy's bit for bit. The
 * transcendental functions are NumPy's own loops in float64 (npyloops.c).
 */

/* ---- Exp: y = e^x                 gx = go * expd (expd = y) ---------------------------------------- */

static void VG_T(exp_forward)(const vg_loops *L, T *restrict y, const T *restrict x, npy_intp n)
{
    VG_T(vg_exp_array)(L, y, x, n);
}

static void VG_T(exp_backward)(T *restrict gx, const T *go, const T *expd, npy_intp n)
{
    for (npy_intp i = 0; i < n; i++)
        gx[i] = go[i] * expd[i];
}

/* ---- Log: y = ln x                gx = go / x ----------------------------------------------------- */

static void VG_T(log_forward)(const vg_loops *L, T *restrict y, const T *restrict x, npy_intp n)
{
    VG_T(vg_log_array)(L, y, x, n);
}

static void VG_T(log_backward)(T *restrict gx, const T *go, const T *x, npy_intp n)
{
    for (npy_intp i = 0; i < n; i++)
        gx[i] = go[i] / x[i];
}

/* ---- Sigmoid: y = 1 / (1 + np.exp(-x))      gx = go * sigx * (1 - sigx) (sigx = y) ------------------ */

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

/* ---- ReLU: y = np.maximum(x, 0)         gx = go where x > 0, else 0 ----------------------------------- */

static void VG_T(relu_forward)(const vg_loops *L, T *restrict y, const T *restrict x, npy_intp n)
{
    (void)L;
    /* np.maximum(x, 0) propagates NaN and gives its second operand on a tie: -0 becomes +0 */
    for (npy_intp i = 0; i < n; i++)
        y[i] = (x[i] > 0 || x[i] != x[i]) ? x[i] : 0;
}

static void VG_T(relu_backward)(T *restrict gx, const T *go, const T *x, npy_intp n)
{
    /* go[i] is read whatever x[i] is, so that GCC makes this a select, not a branch that random signs
       mispredict half the time (ten times slower) */
    for (npy_intp i = 0; i < n; i++) {
        const T g = go[i];
        gx[i] = x[i] > 0 ? g : 0;
    }
}

/* ---- Sub's gradient over b: -go ------------------------------------------------------------------------ */

static void VG_T(neg_forward)(const vg_loops *L, T *restrict y, const T *restrict x, npy_intp n)
{
    (void)L;
    for (npy_intp i = 0; i < n; i++)
        y[i] = -x[i];
}

/* ---- Add, Sub: y = a + b, a - b        (ga, gb) = (go, go), (go, -go): no kernel needed --------------- */

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

/* ---- Multiply: y = a * b               (ga, gb) = (go * b, go * a) ------------------------------------ */

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

/* ---- Div: y = a / b                    (ga, gb) = (go / b, -go * a / (b * b)) ------------------------- */

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
