/*
 * shared_kernels.h — the declarations of the kernels that more than one file calls, for a generic element
 * type T: vgrad.h compiles it for float and double (instantiate.h), giving vg_sum_f32 and vg_sum_f64, ....
 * Like every kernel: pure C, no GIL needed, cannot fail; outputs first, then inputs, then sizes; arrays
 * contiguous and not overlapping unless said. L is NumPy's loops (vg_numpy(module)->loops).
 */

/* ---- NumPy's own loops (npyloops.c) -------------------------------------------------------------------
   For x and y of n elements:
     vg_exp_array:  y = exp(x)   float64: NumPy's exp loop (np.exp's results bit for bit); float32: vexp.c
     vg_exp_negated_array: y = exp(-x), as np.exp(-x) computes it (the negation is a new contiguous array)
                    float64: NumPy's exp loop; float32: vexp, floored at exp(-20) (for 1 / (1 + y) only)
     vg_log_array:  y = log(x)   float64: NumPy's log loop; float32: libm's logf
     vg_sum:        x[0] + ... + x[n-1] as np.sum adds a contiguous vector: from 0, through NumPy's add loop
                    in reduce mode (its pairwise sum), for both float types. */
void VG_T(vg_exp_array)(const vg_loops *L, T *y, const T *x, npy_intp n);
void VG_T(vg_exp_negated_array)(const vg_loops *L, T *y, const T *x, npy_intp n);
void VG_T(vg_log_array)(const vg_loops *L, T *y, const T *x, npy_intp n);
T VG_T(vg_sum)(const vg_loops *L, const T *x, npy_intp n);

/* ---- sums (reduce_kernels.h) ------------------------------------------------------------------------ */

/* x: n -> a pairwise sum (rounding error grows with log n, not n): the CNN kernels' sum. The built-in ops
   use vg_sum, NumPy's own. */
T VG_T(vg_pairwise_sum)(const T *x, npy_intp n);

/* go: outer x len x inner -> gx: outer x inner, go.sum(axis=1) in NumPy's order: NumPy's iterator makes the
   innermost axis with a stride its inner loop, so for inner > 1 it adds the rows in order to a result that
   starts at 0, and for inner == 1 it sums each run of len elements (vg_sum). Expand's and Affine's gradient. */
void VG_T(vg_sum_middle_axis)(const vg_loops *L, T *restrict gx, const T *restrict go, npy_intp outer,
                              npy_intp len, npy_intp inner);

/* ---- rows of a matrix: maximum, log-sum-exp, softmax (rows_kernels.h) --------------------------------- */

/* x: n > 0 -> the index of its maximum by the rule for maxima (vg_replaces_max): the first maximum, or the
   first NaN. np.argmax of a row; x[index] is np.amax of the row, up to the sign of a tie of zeros. */
npy_intp VG_T(vg_row_argmax)(const T *x, npy_intp n);

/* x: rows x cols (cols > 0), C-contiguous -> the log-sum-exp trick as NumPy evaluates the references of
   LogSoftmax and CrossEntropy, step by step:
       argmax_i = np.argmax(x, axis=1)_i            (argmax may be NULL)
       diff     = x - np.amax(x, axis=1)[:, None]   rows x cols
       expd     = np.exp(diff)                      rows x cols, one exp over the whole array
       sumd     = np.sum(expd, axis=1)              rows, NumPy's pairwise sum of each row
       lse      = np.log(sumd)                      rows
   Then, from these, the two results (in place, each one operation per element):
       vg_rows_log_softmax:  diff (rows x cols) becomes diff - lse[:, None], the log-softmax
       vg_rows_softmax:      expd (rows x cols) becomes expd / sumd[:, None], the softmax */
void VG_T(vg_rows_logsumexp)(const vg_loops *L, T *restrict diff, T *restrict expd, T *restrict sumd,
                             T *restrict lse, npy_intp *restrict argmax, const T *restrict x, npy_intp rows,
                             npy_intp cols);
void VG_T(vg_rows_log_softmax)(T *restrict diff, const T *restrict lse, npy_intp rows, npy_intp cols);
void VG_T(vg_rows_softmax)(T *restrict expd, const T *restrict sumd, npy_intp rows, npy_intp cols);

/* ---- ReLU's two formulas: ReLU's kernels (elementwise_kernels.h) and the convolution fused with a ReLU
   (conv_kernels.h) both use these, so the fused op gives the two ops' results bit for bit. Inline, so that
   the loops around them vectorise. */

/* np.maximum(x, 0): propagates NaN and gives its second operand on a tie, so -0 becomes +0 */
static inline T VG_T(vg_relu)(T x)
{
    return (x > 0 || x != x) ? x : 0;
}

/* np.where(x > 0, go, 0), the gradient through a ReLU of x; the same with its output y = relu(x) for x, as
   y > 0 exactly where x > 0. Both operands are read whatever x is, so that a loop of it is a select, not a
   branch that random signs mispredict half the time (ten times slower). */
static inline T VG_T(vg_relu_grad)(T go, T x)
{
    return x > 0 ? go : 0;
}
