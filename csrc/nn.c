/*
 * nn.c — the remaining layers of a CNN: dropout's mask, batch normalisation, the cross-entropy loss fused
 * with its softmax, and reshape. Forward and backward side by side.
 *
 *     DropoutMask(p, mask):  y = x * noise with noise = mask ? 1 / (1 - p) : 0 (0 everywhere when p = 1)
 *                            gx = go * noise. The mask (keep = true) is drawn by the caller with np.random.
 *     BatchNormalization:    over each channel c of x (N, C, ...), with M = N * (spatial size) values:
 *                            training: mean_c, var_c (biased: / M) of the batch; eval: the given running ones
 *                            xhat = (x - mean_c) * invstd_c,  invstd_c = 1 / sqrt(var_c + eps)
 *                            y = gamma_c * xhat + beta_c
 *                            gbeta_c = sum go,  ggamma_c = sum go * xhat
 *                            gx = gamma_c invstd_c (go - gbeta_c / M - xhat ggamma_c / M)  (training: the batch
 *                            statistics depend on x too) or gamma_c invstd_c go (eval)
 *     CrossEntropy:          loss_i = logsumexp_j(x_ij) - x_i,t_i (logsumexp shifted by the row's maximum so
 *                            nothing overflows); loss = sum_i loss_i / divisor (N for 'mean', 1 for 'sum')
 *                            gx_ij = (go / divisor) (softmax_ij - [j == t_i])
 *     Reshape:               a view (or copy) of x with another shape, x's dtype kept; gx = go reshaped back.
 * Sums over a channel or a batch are accumulated in double, so float32 statistics stay accurate.
 *
 * Dropout, batch norm and the cross-entropy run on the thread pool (nn.h), in tasks that the sizes alone
 * decide: a run of dropout's values, a channel of batch norm, a run of whole rows of the cross-entropy. A
 * task writes only its own outputs, and the cross-entropy's total over the rows is added after the tasks, on
 * one thread, in row order: the results are the same bits for any number of threads.
 */
#include <string.h>

#include "nn.h"

/* ---- kernels ------------------------------------------------------------------------------------- */

/* The total of batch norm's lanes of sums (nn_kernels.h), added in lane order. */
enum { BN_LANES = 8 };

static double vg_lanes_total(const double *lane)
{
    double total = 0;
    for (int v = 0; v < BN_LANES; v++)
        total += lane[v];
    return total;
}

#define VG_TEMPLATE "nn_kernels.h"
#include "instantiate.h"

/* ---- the thread pool (nn.h) ---------------------------------------------------------------------- */

/* The work of one task of dropout or the cross-entropy, and of one value of each, in vg_threads_for's units
   (about 0.1 ns of one core's time each; measured, roughly, on one core). A task of TASK_COST, 20 us, is the
   least vg_threads_for hands a thread (threads.c's MIN_COST_PER_THREAD): taking a task costs nothing beside
   it, and work worth two threads makes two tasks at least. The values per task follow from constants, so
   the tasks depend on the sizes alone, never on the number of threads. */
enum {
    TASK_COST = 200000,
    DROPOUT_COST = 5,        /* about 0.5 ns per value: read x and the mask, write y */
    XENT_FORWARD_COST = 70,  /* about 7 ns: the row maximum, x - max, exp, the row sums, the division */
    XENT_BACKWARD_COST = 10, /* about 1 ns */
    DROPOUT_TASK = TASK_COST / DROPOUT_COST /* values per task */
};

/* The number of tasks that take n items, per_task (>= 1) at a time (the last task may have fewer). */
static npy_intp tasks_of(npy_intp n, npy_intp per_task)
{
    return n / per_task + (n % per_task != 0); /* (n + per_task - 1 could overflow) */
}

/* Run fn's tasks 0 .. tasks - 1 on as many threads as `cost` (vg_threads_for's units: about 0.1 ns of one
   core's time each) is worth, with the GIL released when they touch more than VG_GIL_WORK values. */
static void run_on_pool(vg_task_fn fn, void *ctx, npy_intp tasks, double cost, npy_intp values)
{
    const int threads = vg_threads_for(tasks, cost); /* before the release: it needs the GIL */
    PyThreadState *gil = vg_release_gil(values);
    vg_parallel(threads, tasks, fn, ctx);
    vg_restore_gil(gil);
}

/* ---- dropout ------------------------------------------------------------------------------------- */

/* Dropout on the thread pool: a task per run of DROPOUT_TASK values (the last one shorter). Every value is
   its own, so the runs change nothing but who computes them. */
typedef struct {
    int t;
    double p;
    char *y;
    const char *x;
    const npy_bool *keep;
    npy_intp n;
} dropout_job;

static void dropout_task(void *ctx, npy_intp task, int thread)
{
    const dropout_job *J = ctx;
    (void)thread;
    const npy_intp first = task * DROPOUT_TASK, n = J->n - first < DROPOUT_TASK ? J->n - first : DROPOUT_TASK;
    const npy_intp at = first * vg_itemsize(J->t);
    void *y = J->y + at;
    const void *x = J->x + at;
    VG_CALL(J->t, dropout, y, x, J->keep + first, J->p, n);
}

/* dropout_forward(x, mask, p) and dropout_backward(go, mask, p): y = x * noise */
static PyObject *apply_dropout(const char *op, PyObject *const *args, Py_ssize_t nargs)
{
    PyArrayObject *x, *keep = NULL, *y = NULL;
    int t;
    if (vg_check_nargs(op, nargs, 3) < 0)
        return NULL;
    double p = PyFloat_AsDouble(args[2]);
    if (p == -1.0 && PyErr_Occurred()) {
        PyErr_Format(PyExc_TypeError, "%s: p must be a number, got %s", op, Py_TYPE(args[2])->tp_name);
        return NULL;
    }
    if (!(p >= 0 && p <= 1)) {
        PyErr_Format(PyExc_ValueError, "%s: the dropout probability p must lie in [0, 1], got %R", op, args[2]);
        return NULL;
    }
    if ((t = vg_prepare(op, args, 1, &x)) < 0)
        return NULL;
    keep = (PyArrayObject *)PyArray_FROMANY(args[1], NPY_BOOL, 0, 0,
                                            NPY_ARRAY_IN_ARRAY | NPY_ARRAY_ENSUREARRAY | NPY_ARRAY_FORCECAST);
    if (keep == NULL) {
        PyErr_Clear();
        PyErr_Format(PyExc_TypeError, "%s: the mask must be an array of booleans, got %s", op,
                     Py_TYPE(args[1])->tp_name);
        goto done;
    }
    if (vg_check_same_shape(op, "the input and the mask", "", x, keep) < 0 ||
        (y = vg_empty(op, PyArray_NDIM(x), PyArray_DIMS(x), t)) == NULL)
        goto done;
    const npy_intp n = PyArray_SIZE(x);
    dropout_job J = {.t = t, .p = p, .y = PyArray_DATA(y), .x = PyArray_DATA(x), .keep = PyArray_DATA(keep), .n = n};
    run_on_pool(dropout_task, &J, tasks_of(n, DROPOUT_TASK), (double)DROPOUT_COST * (double)n, n);
done:
    Py_DECREF(x);
    Py_XDECREF(keep);
    return (PyObject *)y;
}

VG_BOUNDARY(dropout_forward)
{
    return apply_dropout("DropoutMask", args, nargs);
}

VG_BOUNDARY(dropout_backward)
{
    return apply_dropout("DropoutMask backward", args, nargs);
}

/* ---- batch norm ---------------------------------------------------------------------------------- */

/* ValueError unless arr is a vector of length C. */
static int check_per_channel(const char *op, const char *what, PyArrayObject *arr, npy_intp C)
{
    if (PyArray_NDIM(arr) == 1 && PyArray_DIM(arr, 0) == C)
        return 0;
    PyObject *s = PyArray_IntTupleFromIntp(PyArray_NDIM(arr), PyArray_DIMS(arr));
    if (s)
        PyErr_Format(PyExc_ValueError, "%s: %s must have shape (%zd,), one value per channel, got %S", op, what,
                     (Py_ssize_t)C, s);
    Py_XDECREF(s);
    return -1;
}

/* x (N, C, ...) as N, C and the spatial size; ValueError if it has fewer than 2 dimensions. For an empty
   x, *N is 0, so that the kernels do not count through C N empty rows (x may be (2**40, 2**10, 0)). *M is
   the number of values per channel, N times the spatial size, of the array as it was given. */
static int channels_of(const char *op, PyArrayObject *x, npy_intp *N, npy_intp *C, npy_intp *Sp, npy_intp *M)
{
    if (PyArray_NDIM(x) < 2) {
        PyObject *s = PyArray_IntTupleFromIntp(PyArray_NDIM(x), PyArray_DIMS(x));
        if (s)
            PyErr_Format(PyExc_ValueError, "%s: the input must be (N, C) or (N, C, ...), got shape %S", op, s);
        Py_XDECREF(s);
        return -1;
    }
    *N = PyArray_DIM(x, 0), *C = PyArray_DIM(x, 1), *Sp = 1;
    for (int i = 2; i < PyArray_NDIM(x); i++)
        if (vg_mul_sizes(op, "the spatial size", *Sp, PyArray_DIM(x, i), Sp) < 0)
            return -1;
    if (vg_mul_sizes(op, "the values per channel (N x spatial size)", *N, *Sp, M) < 0)
        return -1;
    if (PyArray_SIZE(x) == 0)
        *N = 0;
    return 0;
}

/* Batch norm on the thread pool (nn.h): a task per channel, whose sums and outputs are its own, so the
   results do not depend on the number of threads. */
typedef struct {
    int t, given, training;
    double eps;
    npy_intp N, C, Sp;
    PyArrayObject **in, **out;
} batchnorm_job;

static void batchnorm_forward_task(void *ctx, npy_intp c, int thread)
{
    const batchnorm_job *J = ctx;
    (void)thread;
    VG_CALL(J->t, batchnorm_forward, PyArray_DATA(J->out[0]), PyArray_DATA(J->out[1]), PyArray_DATA(J->out[2]),
            PyArray_DATA(J->out[3]), PyArray_DATA(J->out[4]), PyArray_DATA(J->in[0]), PyArray_DATA(J->in[1]),
            PyArray_DATA(J->in[2]), J->eps, J->given, J->N, J->C, J->Sp, c);
}

static void batchnorm_backward_task(void *ctx, npy_intp c, int thread)
{
    const batchnorm_job *J = ctx;
    (void)thread;
    VG_CALL(J->t, batchnorm_backward, PyArray_DATA(J->out[0]), PyArray_DATA(J->out[1]), PyArray_DATA(J->out[2]),
            PyArray_DATA(J->in[0]), PyArray_DATA(J->in[1]), PyArray_DATA(J->in[2]), PyArray_DATA(J->in[3]),
            J->training, J->N, J->C, J->Sp, c);
}

/* Run a batch norm task per channel, on as many threads as the work is worth, with the GIL released. */
static void run_batchnorm(batchnorm_job *J, vg_task_fn task, npy_intp elements)
{
    run_on_pool(task, J, J->C, 10.0 * (double)elements, elements); /* about 1 ns per value */
}

/* batchnorm_forward(x, gamma, beta, mean or None, var or None, eps) -> (y, xhat, mean, var, invstd)
   Batch statistics when mean and var are None (training), else the given (running) ones. */
VG_BOUNDARY(batchnorm_forward)
{
    const char *op = "BatchNormalization";
    static const char *const names[] = {"the input", "gamma (the weight)", "beta (the bias)", "the running mean",
                                        "the running variance"};
    PyArrayObject *in[5] = {NULL}, *out[5] = {NULL}; /* in: x, gamma, beta, mean, var; out: y, xhat, mean, var, invstd */
    PyObject *result = NULL;
    npy_intp N, C, Sp, M;
    int t;
    if (vg_check_nargs(op, nargs, 6) < 0)
        return NULL;
    double eps = PyFloat_AsDouble(args[5]);
    if (eps == -1.0 && PyErr_Occurred())
        return NULL;
    if (!(eps >= 0)) {
        PyErr_Format(PyExc_ValueError, "%s: eps must be >= 0, got %R", op, args[5]);
        return NULL;
    }
    if ((args[3] == Py_None) != (args[4] == Py_None)) {
        PyErr_Format(PyExc_TypeError, "%s: give both the running mean and variance, or neither", op);
        return NULL;
    }
    const int given = args[3] != Py_None, n_in = given ? 5 : 3;
    /* The running statistics are constants: they follow x, gamma and beta's compute type, not set it. */
    if ((t = vg_prepare(op, args, 3, in)) < 0)
        goto done;
    for (int i = 3; i < n_in; i++) /* refuse the dtypes vgrad never computes with, as for the other inputs */
        if (vg_compute_type(op, &args[i], 1) < 0 || (in[i] = vg_as_contiguous(op, args[i], t)) == NULL)
            goto done;
    if (channels_of(op, in[0], &N, &C, &Sp, &M) < 0)
        goto done;
    for (int i = 1; i < n_in; i++)
        if (check_per_channel(op, names[i], in[i], C) < 0)
            goto done;
    if (!given && M <= 1) {
        PyObject *s = PyArray_IntTupleFromIntp(PyArray_NDIM(in[0]), PyArray_DIMS(in[0]));
        if (s)
            PyErr_Format(PyExc_ValueError, "%s: batch statistics need more than one value per channel, got an "
                         "input of shape %S", op, s);
        Py_XDECREF(s);
        goto done;
    }
    for (int i = 0; i < 2; i++)
        if ((out[i] = vg_empty(op, PyArray_NDIM(in[0]), PyArray_DIMS(in[0]), t)) == NULL)
            goto done;
    for (int i = 2; i < 5; i++) {
        if (given && i < 4)
            out[i] = (PyArrayObject *)PyArray_NewCopy(in[i + 1], NPY_CORDER);
        else
            out[i] = vg_empty(op, 1, &C, t);
        if (out[i] == NULL)
            goto done;
    }
    batchnorm_job J = {.t = t, .given = given, .eps = eps, .N = N, .C = C, .Sp = Sp, .in = in, .out = out};
    run_batchnorm(&J, batchnorm_forward_task, PyArray_SIZE(in[0]));
    result = PyTuple_Pack(5, out[0], out[1], out[2], out[3], out[4]);
done:
    vg_release(in, 5);
    vg_release(out, 5);
    return result;
}

/* batchnorm_backward(go, xhat, gamma, invstd, training) -> (gx, ggamma, gbeta) */
VG_BOUNDARY(batchnorm_backward)
{
    const char *op = "BatchNormalization backward";
    PyArrayObject *in[4] = {NULL}, *out[3] = {NULL}; /* go, xhat, gamma, invstd; gx, ggamma, gbeta */
    PyObject *result = NULL;
    npy_intp N, C, Sp, M;
    int t, training;
    if (vg_check_nargs(op, nargs, 5) < 0 || (training = PyObject_IsTrue(args[4])) < 0 ||
        (t = vg_prepare(op, args, 4, in)) < 0)
        return NULL;
    if (channels_of(op, in[0], &N, &C, &Sp, &M) < 0 ||
        vg_check_same_shape(op, "the upstream gradient and xhat", "", in[0], in[1]) < 0 ||
        check_per_channel(op, "gamma", in[2], C) < 0 || check_per_channel(op, "invstd", in[3], C) < 0)
        goto done;
    if ((out[0] = vg_empty(op, PyArray_NDIM(in[0]), PyArray_DIMS(in[0]), t)) == NULL ||
        (out[1] = vg_empty(op, 1, &C, t)) == NULL || (out[2] = vg_empty(op, 1, &C, t)) == NULL)
        goto done;
    batchnorm_job J = {.t = t, .training = training, .N = N, .C = C, .Sp = Sp, .in = in, .out = out};
    run_batchnorm(&J, batchnorm_backward_task, PyArray_SIZE(in[0]));
    result = PyTuple_Pack(3, out[0], out[1], out[2]);
done:
    vg_release(in, 4);
    vg_release(out, 3);
    return result;
}

/* ---- cross-entropy ------------------------------------------------------------------------------- */

/* reduction: 1 for 'sum', 0 for 'mean', -1 with ValueError otherwise. */
static int parse_reduction(const char *op, PyObject *obj)
{
    if (PyUnicode_Check(obj)) {
        if (PyUnicode_CompareWithASCIIString(obj, "mean") == 0)
            return 0;
        if (PyUnicode_CompareWithASCIIString(obj, "sum") == 0)
            return 1;
    }
    PyErr_Format(PyExc_ValueError, "%s: reduction must be 'mean' or 'sum', got %R", op, obj);
    return -1;
}

/* The targets as intp indices, one per row, each in [0, C); NULL with an exception naming the op. */
static PyArrayObject *checked_targets(const char *op, PyObject *obj, npy_intp N, npy_intp C)
{
    PyArrayObject *idx = vg_as_indices(op, "the targets", obj, N);
    if (idx == NULL)
        return NULL;
    if (PyArray_NDIM(idx) != 1) {
        PyErr_Format(PyExc_ValueError, "%s: the targets must be a vector of class indices, got %d dimensions", op,
                     PyArray_NDIM(idx));
        Py_DECREF(idx);
        return NULL;
    }
    const npy_intp *v = PyArray_DATA(idx);
    for (npy_intp i = 0; i < N; i++) {
        if (v[i] < 0 || v[i] >= C) {
            PyErr_Format(PyExc_IndexError, "%s: target %zd (row %zd) is not a class index in [0, %zd)", op,
                         (Py_ssize_t)v[i], (Py_ssize_t)i, (Py_ssize_t)C);
            Py_DECREF(idx);
            return NULL;
        }
    }
    return idx;
}

/* The cross-entropy on the thread pool: a task per run of whole rows, about TASK_COST of work (one row at
   least). Rows are independent, and the forward's per-row losses are summed after the tasks, on one thread,
   in row order, as before there were tasks. */
typedef struct {
    int t;
    const vg_loops *L;
    npy_intp N, C, rows;     /* rows and classes; rows per task */
    const npy_intp *targets;
    double s;                /* backward: go / divisor (a float32 one, held exactly) */
    char *out[4];            /* forward: losses, softmax, diff, sumd (the last two scratch); backward: g */
    const char *in;          /* forward: the logits; backward: the softmax */
} xent_job;

/* The first row of a task; *rows says how many it has. */
static npy_intp xent_task_rows(const xent_job *J, npy_intp task, npy_intp *rows)
{
    const npy_intp first = task * J->rows;
    *rows = J->N - first < J->rows ? J->N - first : J->rows;
    return first;
}

static void xent_forward_task(void *ctx, npy_intp task, int thread)
{
    const xent_job *J = ctx;
    (void)thread;
    npy_intp rows;
    const npy_intp i = xent_task_rows(J, task, &rows), at_row = i * vg_itemsize(J->t), at_value = at_row * J->C;
    void *losses = J->out[0] + at_row, *softmax = J->out[1] + at_value, *diff = J->out[2] + at_value,
         *sumd = J->out[3] + at_row;
    const void *x = J->in + at_value;
    VG_CALL(J->t, cross_entropy_forward, J->L, losses, softmax, diff, sumd, x, J->targets + i, rows, J->C);
}

static void xent_backward_task(void *ctx, npy_intp task, int thread)
{
    const xent_job *J = ctx;
    (void)thread;
    npy_intp rows;
    const npy_intp i = xent_task_rows(J, task, &rows), at_value = i * J->C * vg_itemsize(J->t);
    void *g = J->out[0] + at_value;
    const void *softmax = J->in + at_value;
    if (J->t == NPY_FLOAT)
        cross_entropy_backward_f32(g, (float)J->s, softmax, J->targets + i, rows, J->C);
    else
        cross_entropy_backward_f64(g, J->s, softmax, J->targets + i, rows, J->C);
}

/* Run J's tasks over its N rows, `per_value` (XENT_FORWARD_COST or XENT_BACKWARD_COST) the cost of each of
   the N C values. */
static void run_xent(xent_job *J, vg_task_fn task, int per_value)
{
    const npy_intp values = J->N * J->C, task_values = TASK_COST / per_value; /* (N C: an array's size) */
    J->rows = J->C > 0 && J->C < task_values ? task_values / J->C : 1;
    run_on_pool(task, J, tasks_of(J->N, J->rows), (double)per_value * (double)values, values);
}

/* cross_entropy_forward(logits, targets, reduction) -> (loss, softmax); loss is 0-d */
VG_BOUNDARY(cross_entropy_forward)
{
    const char *op = "CrossEntropy";
    PyArrayObject *x, *idx = NULL, *losses = NULL, *softmax = NULL, *loss = NULL, *diff = NULL, *sumd = NULL;
    PyObject *result = NULL;
    int t, sum;
    if (vg_check_nargs(op, nargs, 3) < 0 || (sum = parse_reduction(op, args[2])) < 0 ||
        (t = vg_prepare(op, args, 1, &x)) < 0)
        return NULL;
    if (vg_check_ndim(op, "the logits (N, C)", x, 2) < 0)
        goto done;
    npy_intp N = PyArray_DIM(x, 0), C = PyArray_DIM(x, 1);
    if ((idx = checked_targets(op, args[1], N, C)) == NULL || (losses = vg_empty(op, 1, &N, t)) == NULL ||
        (softmax = vg_empty(op, 2, PyArray_DIMS(x), t)) == NULL || (loss = vg_empty(op, 0, NULL, t)) == NULL ||
        (diff = vg_empty(op, 2, PyArray_DIMS(x), t)) == NULL || (sumd = vg_empty(op, 1, &N, t)) == NULL)
        goto done;
    if (N > 0) { /* (C > 0 then: checked_targets refuses every target of an empty row) */
        xent_job J = {.t = t, .L = &vg_numpy(module)->loops, .N = N, .C = C, .targets = PyArray_DATA(idx),
                      .out = {PyArray_DATA(losses), PyArray_DATA(softmax), PyArray_DATA(diff), PyArray_DATA(sumd)},
                      .in = PyArray_DATA(x)};
        run_xent(&J, xent_forward_task, XENT_FORWARD_COST);
    }
    /* the total of the rows' losses: after the tasks, on this thread, in row order */
    if (t == NPY_FLOAT) {
        float total = vg_pairwise_sum_f32(PyArray_DATA(losses), N);
        *(float *)PyArray_DATA(loss) = sum ? total : total / (float)N;
    } else {
        double total = vg_pairwise_sum_f64(PyArray_DATA(losses), N);
        *(double *)PyArray_DATA(loss) = sum ? total : total / (double)N;
    }
    result = PyTuple_Pack(2, loss, softmax);
done:
    Py_DECREF(x);
    Py_XDECREF(idx);
    Py_XDECREF(losses);
    Py_XDECREF(softmax);
    Py_XDECREF(loss);
    Py_XDECREF(diff);
    Py_XDECREF(sumd);
    return result;
}

/* cross_entropy_backward(go, softmax, targets, divisor) -> glogits; go is the scalar gradient of the loss */
VG_BOUNDARY(cross_entropy_backward)
{
    const char *op = "CrossEntropy backward";
    PyArrayObject *in[2] = {NULL, NULL}, *idx = NULL, *g = NULL; /* go, softmax */
    Py_ssize_t divisor;
    int t;
    if (vg_check_nargs(op, nargs, 4) < 0 || vg_parse_int(op, "divisor", args[3], &divisor) < 0)
        return NULL;
    if (divisor < 0) { /* a count of rows: N for 'mean' (0 for an empty batch), 1 for 'sum' */
        PyErr_Format(PyExc_ValueError, "%s: divisor must be >= 0 (the number of rows, or 1), got %zd", op, divisor);
        return NULL;
    }
    if ((t = vg_prepare(op, args, 2, in)) < 0)
        return NULL;
    if (vg_check_ndim(op, "the saved softmax", in[1], 2) < 0)
        goto done;
    if (PyArray_SIZE(in[0]) != 1) {
        PyObject *s = PyArray_IntTupleFromIntp(PyArray_NDIM(in[0]), PyArray_DIMS(in[0]));
        if (s)
            PyErr_Format(PyExc_ValueError, "%s: the upstream gradient must be a scalar, got shape %S", op, s);
        Py_XDECREF(s);
        goto done;
    }
    npy_intp N = PyArray_DIM(in[1], 0), C = PyArray_DIM(in[1], 1);
    if ((idx = checked_targets(op, args[2], N, C)) == NULL || (g = vg_empty(op, 2, PyArray_DIMS(in[1]), t)) == NULL)
        goto done;
    xent_job J = {.t = t, .N = N, .C = C, .targets = PyArray_DATA(idx), .out = {PyArray_DATA(g)},
                  .in = PyArray_DATA(in[1])};
    /* s in the compute type, as the kernel takes it (a float32 quotient is a double exactly) */
    if (t == NPY_FLOAT)
        J.s = *(float *)PyArray_DATA(in[0]) / (float)divisor;
    else
        J.s = *(double *)PyArray_DATA(in[0]) / (double)divisor;
    run_xent(&J, xent_backward_task, XENT_BACKWARD_COST);
done:
    vg_release(in, 2);
    Py_XDECREF(idx);
    return (PyObject *)g;
}

/* ---- reshape ------------------------------------------------------------------------------------- */

/* reshape(x, shape) -> x with the given shape (one entry may be -1), a view when possible; x's dtype is kept */
VG_BOUNDARY(reshape)
{
    const char *op = "Reshape";
    PyArrayObject *x;
    PyArray_Dims shape = {NULL, 0};
    PyObject *y = NULL;
    if (vg_check_nargs(op, nargs, 2) < 0 || vg_compute_type(op, args, 1) < 0)
        return NULL;
    if (!PyArray_IntpConverter(args[1], &shape)) {
        PyErr_Clear();
        PyErr_Format(PyExc_TypeError, "%s: the shape must be a tuple of ints, got %R", op, args[1]);
        return NULL;
    }
    if ((x = (PyArrayObject *)PyArray_FROM_OF(args[0], NPY_ARRAY_ENSUREARRAY)) == NULL)
        goto done;
    /* NumPy refuses these too; refused here first, the message saying what was asked: dimensions (those
       > 0) that multiply past what an array of x's dtype can hold. -1 (the one dimension NumPy works out)
       and other negative values are left to NumPy's checks. */
    npy_intp bytes = PyArray_ITEMSIZE(x);
    for (int i = 0; i < shape.len; i++) {
        if (shape.ptr[i] > 0 && __builtin_mul_overflow(bytes, shape.ptr[i], &bytes)) {
            PyObject *s = PyArray_IntTupleFromIntp(PyArray_NDIM(x), PyArray_DIMS(x));
            if (s)
                PyErr_Format(PyExc_ValueError, "%s: the shape %R asked for an input of shape %S is too large", op,
                             args[1], s);
            Py_XDECREF(s);
            Py_DECREF(x);
            goto done;
        }
    }
    if ((y = PyArray_Newshape(x, &shape, NPY_CORDER)) == NULL && PyErr_ExceptionMatches(PyExc_ValueError)) {
        PyErr_Clear();
        PyObject *s = PyArray_IntTupleFromIntp(PyArray_NDIM(x), PyArray_DIMS(x));
        if (s)
            PyErr_Format(PyExc_ValueError, "%s: cannot reshape an input of shape %S (%zd elements) into %R", op, s,
                         (Py_ssize_t)PyArray_SIZE(x), args[1]);
        Py_XDECREF(s);
    }
    Py_DECREF(x);
done:
    PyDimMem_FREE(shape.ptr);
    return y;
}
