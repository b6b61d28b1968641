/*
 * accumulate_kernels.h — add_into's kernel for one element type T (instantiated by accumulate.c through
 * instantiate.h).
 */

/* ---- add_into: current += grad (a gradient added into a node's gradient) ----------------------------- */

/* current, grad: n elements, not overlapping -> current + grad, in current */
static void VG_T(add_into)(T *restrict current, const T *restrict grad, npy_intp n)
{
    for (npy_intp i = 0; i < n; i++)
        current[i] += grad[i];
}
