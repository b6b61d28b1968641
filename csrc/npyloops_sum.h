/*
 * npyloops_sum.h — vg_sum for one element type T (instantiated by npyloops.c through instantiate.h).
 */

/* x: n contiguous elements -> their sum as np.sum adds them: the result starts at add's identity 0 and
   NumPy's add loop, called in reduce mode (args[0] == args[2], steps 0), adds its pairwise sum of x. */
T VG_T(vg_sum)(const vg_loops *L, const T *x, npy_intp n)
{
    T acc = 0;
    if (n > 0) {
        char *args[3] = {(char *)&acc, (char *)x, (char *)&acc};
        const npy_intp steps[3] = {0, sizeof(T), 0};
        L->VG_T(add).fn(args, &n, steps, L->VG_T(add).data);
    }
    return acc;
}
