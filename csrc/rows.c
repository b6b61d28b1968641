/*
 * rows.c — kernels over the rows of a matrix shared by several ops (the kernels are in rows_kernels.h,
 * declared in shared_kernels.h): the row maximum, by the one rule for maxima (vg_replaces_max, NumPy's), and
 * the log-sum-exp trick, with the log-softmax and the softmax made from it. No boundary functions here: the
 * ops that use them are RowMax (reduce.c), LogSoftmax (fused.c) and the cross-entropy (nn.c).
 *
 *     m_i = max_j x_ij,   diff = x - m,   lse_i = log(sum_j exp(diff_ij))   (no exp overflows)
 *     log_softmax = diff - lse                   its gradient: go - softmax * sum_j go_ij   (LogSoftmax)
 *     softmax = exp(diff) / sum_j exp(diff_ij)   cross-entropy's: softmax - onehot(target)   (nn.c)
 *
 * Both ops' references compute the same steps (np.amax, -, np.exp, np.sum over the rows, np.log) and differ
 * only in what they make of them, so one implementation serves both, bit for bit in float64: exp, log and the
 * sums are NumPy's own loops, called as NumPy calls them for these C-ordered arrays.
 */
#include "vgrad.h"

#define VG_TEMPLATE "rows_kernels.h"
#include "instantiate.h"
