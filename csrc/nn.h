/*
 * nn.h — what the neural-network files (conv.c, pool.c, nn.c, threads.c) share: reading the window geometry
 * (kernel size, stride, padding) a boundary function was given and the output size it implies; the thread
 * pool that runs their batch-parallel loops (threads.c); scratch memory; and the per-CPU versions of the
 * kernels that are worth compiling for AVX-512 and AVX2 (see VG_SIMD_TARGETS).
 * The helpers are static inline, so each file gets its own copy and nothing is added to the module's
 * exported symbols.
 */
#ifndef VGRAD_NN_H
#define VGRAD_NN_H

#include "checked.h" /* (Python.h first: it sets the feature macros) */

#include <stdlib.h>

/* ---- threads (threads.c) -------------------------------------------------------------------------------
   One pool of worker threads for the whole process, started when first needed. vg_parallel runs
   fn(ctx, task, thread) for every task in [0, tasks), each exactly once, on `threads` threads (the caller is
   thread 0, the others 1 .. threads - 1), and returns when all are done. Which thread runs which task is not
   fixed, so a task may only write outputs of its own (or per-thread scratch, indexed by `thread`): then the
   results are the same for any number of threads. Sums over tasks (a weight gradient over the batch) are
   made per task and added afterwards in task order.
   The number of threads: VGRAD_NUM_THREADS, else OMP_NUM_THREADS (its first number), else the CPUs this
   process may run on; vgrad._C.num_threads(n) changes it (num_threads(0) reads it). The pool never runs a BLAS call: the kernels make
   theirs (NumPy's OpenBLAS, with its own threads) between parallel loops, so the two pools never compete. */
typedef void (*vg_task_fn)(void *ctx, npy_intp task, int thread);

/* With the GIL held: the number of threads (>= 1) to use for `tasks` tasks costing `cost` in all (in
   multiply-adds or elements touched, roughly nanoseconds / 0.1): 1 when the work is too small to be worth
   waking another thread. Allocate per-thread scratch for this many and pass it to vg_parallel. */
int vg_threads_for(npy_intp tasks, double cost);

/* Without the GIL (or with it: no Python is called). When another caller's job is running (two Python
   threads in kernels at once), the tasks run on the caller's thread alone, with thread = 0. */
void vg_parallel(int threads, npy_intp tasks, vg_task_fn fn, void *ctx);

/* ---- scratch memory ------------------------------------------------------------------------------------ */

/* `bytes` (> 0) of uninitialised memory aligned for any vector load, from the C heap (kernels use it without
   the GIL); NULL with MemoryError naming the op. Free with free(). */
static inline void *vg_scratch(const char *op, npy_intp bytes)
{
    npy_intp rounded;
    void *p = NULL;
    if (bytes >= 0 && !__builtin_add_overflow(bytes, (npy_intp)127, &rounded))
        p = aligned_alloc(64, (size_t)(rounded / 64 * 64 + 64));
    if (p == NULL)
        PyErr_Format(PyExc_MemoryError, "%s: cannot allocate %zd bytes of scratch memory", op, (Py_ssize_t)bytes);
    return p;
}

/* ---- kernels compiled for several CPUs -----------------------------------------------------------------
   The convolution kernels' inner loops keep blocks of accumulators in vector registers; how many fit, and
   whether a multiply-add is one fused instruction, depends on the CPU. On x86-64 with GCC they are compiled
   three times, for AVX-512 (x86-64-v4: 32 registers of 64 bytes, FMA), AVX2 (x86-64-v3: 16 of 32 bytes, FMA)
   and the baseline (SSE2, no FMA), each with its own block sizes, and vg_simd_level picks one at run time
   (valgrind, which has no AVX-512, gets the AVX2 one). Elsewhere they are compiled once, for the compiler's
   target. With FMA the multiply-adds are fused explicitly (fma(), one rounding) where the baseline rounds
   the product and the sum; the float64 results of the CNN kernels are not meant to be NumPy's bit for bit
   (only the course's ops are), and every version gives the same results for any number of threads. */
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && defined(__linux__)
#define VG_SIMD_TARGETS 1
#define VG_TARGET_V4 __attribute__((target("arch=x86-64-v4")))
#define VG_TARGET_V3 __attribute__((target("arch=x86-64-v3")))
#else
#define VG_SIMD_TARGETS 0
#endif

/* 4 (AVX-512), 3 (AVX2 and FMA) or 0: the versions vg_simd_level's caller has. */
static inline int vg_simd_level(void)
{
#if VG_SIMD_TARGETS
    __builtin_cpu_init();
    if (__builtin_cpu_supports("x86-64-v4"))
        return 4;
    if (__builtin_cpu_supports("x86-64-v3"))
        return 3;
#endif
    return 0;
}

/* Whether the generic (baseline) version of a kernel has a fused multiply-add as fast as a multiply. */
#if defined(__FP_FAST_FMA) && defined(__FP_FAST_FMAF)
#define VG_GENERIC_FMA 1
#else
#define VG_GENERIC_FMA 0
#endif

/* Parse args[0..n-1] as ints into out[], each at least `min`; `names` says what each one is. */
static inline int vg_parse_ints_at_least(const char *op, const char *const *names, PyObject *const *args,
                                         int n, Py_ssize_t min, Py_ssize_t *out)
{
    for (int i = 0; i < n; i++) {
        if (vg_parse_int(op, names[i], args[i], &out[i]) < 0)
            return -1;
        if (out[i] < min) {
            PyErr_Format(PyExc_ValueError, "%s: %s must be at least %zd, got %zd", op, names[i], min, out[i]);
            return -1;
        }
    }
    return 0;
}

/* The number of positions of a window of size k, moved by `stride`, over `size` + 2 * pad elements:
   floor((size + 2 pad - k) / stride) + 1. -1 with ValueError when the window does not fit at all, or when
   the padded size is too large for any array (padding=2**62 must not overflow 2 * pad). */
static inline npy_intp vg_window_count(const char *op, const char *axis, npy_intp size, Py_ssize_t k,
                                       Py_ssize_t stride, Py_ssize_t pad)
{
    npy_intp twice, span;
    if (size < 0 || k < 1 || stride < 1 || pad < 0) { /* the callers check these; a kernel must never see them */
        PyErr_Format(PyExc_ValueError, "%s: invalid window along the %s: size %zd, window %zd, stride %zd, "
                     "padding %zd", op, axis, (Py_ssize_t)size, k, stride, pad);
        return -1;
    }
    if (__builtin_mul_overflow((npy_intp)pad, (npy_intp)2, &twice) || __builtin_add_overflow(size, twice, &span)) {
        PyErr_Format(PyExc_ValueError, "%s: the padded %s (%zd + 2 x %zd) is too large", op, axis,
                     (Py_ssize_t)size, pad);
        return -1;
    }
    if (span < k) {
        PyErr_Format(PyExc_ValueError,
                     "%s: the window (size %zd) is larger than the input's %s (%zd, with padding %zd)",
                     op, k, axis, (Py_ssize_t)size, pad);
        return -1;
    }
    return (span - k) / stride + 1; /* 0 <= span - k, stride >= 1: no overflow, and the result is <= span */
}

/* ValueError naming the op and the shape unless arr has exactly 4 dimensions (N, C, H, W). */
static inline int vg_check_nchw(const char *op, const char *what, PyArrayObject *arr)
{
    if (PyArray_NDIM(arr) == 4)
        return 0;
    PyObject *s = PyArray_IntTupleFromIntp(PyArray_NDIM(arr), PyArray_DIMS(arr));
    if (s)
        PyErr_Format(PyExc_ValueError, "%s: %s must be a batch of images (N, C, H, W), got shape %S", op, what,
                     s);
    Py_XDECREF(s);
    return -1;
}

#endif /* VGRAD_NN_H */
