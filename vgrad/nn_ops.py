"""
The ops of the CNN toolkit: convolution, pooling, dropout's mask, batch normalisation, the cross-entropy loss
and reshape. Like the ops in ops.py, each has a C forward/backward (csrc/conv.c, pool.c, nn.c), a nested
NumPy `Reference` with the same formulas, storing the same context keys, and its test inputs in `tests`
(vgrad/op_inputs.py): the shapes, geometries and keyword arguments it is tried on.

Images are NCHW: a batch of N images, each with C channels of H x W pixels. Constants (stride, padding,
masks, targets, running statistics) are keyword arguments: they get no gradient. Most people use these
through the functions and modules of vgrad/nn.py (vg.conv2d, vg.Conv2d, ...).
"""
import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from . import _C
from .core import Op
from .op_inputs import (BIG, EIGHT_TARGETS, SPECIAL_IMAGES, SPECIAL_IMAGES_NO_OVERFLOW, SPECIAL_MATRIX, Call, Case,
                        Samples, keep_mask, row_indices, running_mean, running_var)


def _pair(op, what, value):
    """An int or a pair of ints as a pair (rows, columns); the kernels check that they are ints."""
    if isinstance(value, (tuple, list)):
        if len(value) != 2:
            raise ValueError(f'{op}: {what} must be an int or a pair of ints, got {value!r}')
        return tuple(value)
    return value, value


def _windows(x, kh, kw, sh, sw):
    """Every kh x kw window of the images x (N, C, H, W), moved by (sh, sw): a view (N, C, OH, OW, kh, kw)."""
    return sliding_window_view(x, (kh, kw), axis=(2, 3))[:, :, ::sh, ::sw]


class Convolution(Op):
    """
    2-D convolution of a batch of images x (N, C, H, W) with filters w (O, C, kh, kw) and an optional bias
    b (O,), as PyTorch's conv2d: Convolution.do_forward(x, w, b, stride=1, padding=0) -> (N, O, OH, OW).
    stride and padding (zeros around each image) are ints or (rows, columns) pairs.

    The C kernels pick by shape: direct loops over one image at a time for stride 1 and small filters (the
    course's networks), im2col and a BLAS product a chunk of images at a time otherwise; both save x (not the
    far larger im2col matrix) and run their loops over images on vgrad's thread pool (vgrad._C.num_threads).
    The Reference is the textbook formulation: im2col lays every window out as a column of `cols`
    (C kh kw, N OH OW), and the filters, as the rows of an (O, C kh kw) matrix, multiply it.
    """
    kernels = ('conv2d', 'conv2d_grad')
    tests = Samples(domains=('real', 'real', 'real'),
                    # the first case has no bias, so that replacing its last input (w) by a bad value must fail
                    cases=(Case((2, 3, 5, 5), (4, 3, 3, 3)),
                           Case((1, 2, 6, 5), (3, 2, 3, 2), (3,), stride=2, padding=1),
                           Case((2, 1, 4, 5), (2, 1, 2, 2), (2,), stride=(1, 2), padding=(0, 1)),
                           Case((0, 2, 4, 4), (3, 2, 3, 3), (3,)),
                           Case((1, 1, 3, 3), (1, 1, 3, 3), (1,), padding=2, stride=3),
                           Case((1, 1, 4, 4), (1, 1, 2, 2), (1,), stride=1),
                           Case((2, 0, 3, 3), (2, 0, 2, 2), (2,))),
                    large=Case((8, 3, 32, 32), (6, 3, 5, 5), (6,), padding=1),
                    special=Call(SPECIAL_IMAGES_NO_OVERFLOW, np.array([[[[1.0, -1.0], [0.0, 2.0]]]]), np.array([0.5])))
    backward_returns_new_arrays = True

    @staticmethod
    def forward(context, x, w, b=None, *, stride=1, padding=0):
        (sh, sw), (ph, pw) = _pair('Convolution', 'stride', stride), _pair('Convolution', 'padding', padding)
        y = _C.conv2d(x, w, b, sh, sw, ph, pw)
        context['x'], context['w'] = x, w
        context['stride'], context['padding'], context['bias'] = (sh, sw), (ph, pw), b is not None
        return y

    @staticmethod
    def backward(context, go):
        (sh, sw), (ph, pw) = context['stride'], context['padding']
        needs = context.get('needs_input_grad')  # set by do_forward when some input needs no gradient
        return _C.conv2d_grad(go, context['x'], context['w'], sh, sw, ph, pw, context['bias'],
                              needs is None or needs[0])

    class Reference(Op):
        @staticmethod
        def forward(context, x, w, b=None, *, stride=1, padding=0):
            (sh, sw), (ph, pw) = _pair('Convolution', 'stride', stride), _pair('Convolution', 'padding', padding)
            o = w.shape[0]
            cols, (oh, ow) = Convolution.Reference.im2col(x, w.shape, sh, sw, ph, pw)
            y = (w.reshape(o, -1) @ cols).reshape(o, x.shape[0], oh, ow).transpose(1, 0, 2, 3)
            if b is not None:
                y = y + b[None, :, None, None]
            context['x'], context['w'] = x, w
            context['stride'], context['padding'], context['bias'] = (sh, sw), (ph, pw), b is not None
            return np.ascontiguousarray(y)

        @staticmethod
        def im2col(x, wshape, sh, sw, ph, pw):
            """Every window of x as a column: (C kh kw, N OH OW), rows ordered (c, i, j), columns (n, p, q)."""
            n, c = x.shape[:2]
            kh, kw = wshape[2:]
            xpad = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
            win = _windows(xpad, kh, kw, sh, sw)  # (N, C, OH, OW, kh, kw)
            oh, ow = win.shape[2:4]
            return win.transpose(1, 4, 5, 0, 2, 3).reshape(c * kh * kw, n * oh * ow), (oh, ow)

        @staticmethod
        def backward(context, go):
            x, w = context['x'], context['w']
            (n, c, h, wd) = x.shape
            (sh, sw), (ph, pw) = context['stride'], context['padding']
            o, _, kh, kw = w.shape
            oh, ow = go.shape[2:]
            cols, _ = Convolution.Reference.im2col(x, w.shape, sh, sw, ph, pw)
            go2 = go.transpose(1, 0, 2, 3).reshape(o, -1)  # (O, N OH OW), columns like cols'
            gw = (go2 @ cols.T).reshape(w.shape)
            gcols = (w.reshape(o, -1).T @ go2).reshape(c, kh, kw, n, oh, ow)
            # col2im: add each window's gradient back where the window was taken from
            gxpad = np.zeros((n, c, h + 2 * ph, wd + 2 * pw), dtype=gcols.dtype)
            for i in range(kh):
                for j in range(kw):
                    gxpad[:, :, i:i + sh * oh:sh, j:j + sw * ow:sw] += gcols[:, i, j].transpose(1, 0, 2, 3)
            gx = gxpad[:, :, ph:ph + h, pw:pw + wd]
            if context['bias']:
                return gx, gw, go.sum(axis=(0, 2, 3))
            return gx, gw


class ConvolutionReLU(Op):
    """
    A convolution followed by a ReLU, as one op: ConvolutionReLU.do_forward(x, w, b, stride=1, padding=0) is
    relu(Convolution.do_forward(x, w, b, ...)) bit for bit, made as the convolution's output is written, with
    no second pass over it and no node for the convolution's output. Its backward takes the gradient through
    the ReLU (go where y > 0) image by image, as the convolution's gradient reads it.

    vg.Sequential builds it for a Conv2d followed by a ReLU (vg.relu or vg.ReLU()), where nothing else can see
    the convolution's output; inside `with vg.unfused():` it builds the two ops. (The backward computes in the
    common type of go, x, w and y: y's, in a graph, where go has the type of y.)
    """
    kernels = ('conv2d_relu', 'conv2d_relu_grad')
    tests = Samples(domains=('real', 'real', 'real'),
                    # the first case has no bias, so that replacing its last input (w) by a bad value must fail
                    cases=(Case((2, 3, 5, 5), (4, 3, 3, 3)),
                           Case((1, 2, 6, 5), (3, 2, 3, 2), (3,), stride=2, padding=1),
                           Case((2, 1, 4, 5), (2, 1, 2, 2), (2,), stride=(1, 2), padding=(0, 1)),
                           Case((0, 2, 4, 4), (3, 2, 3, 3), (3,)),
                           Case((1, 1, 3, 3), (1, 1, 3, 3), (1,), padding=2, stride=3),
                           Case((3, 2, 7, 6), (5, 2, 3, 3), (5,), padding=1),
                           Case((2, 0, 3, 3), (2, 0, 2, 2), (2,))),
                    large=Case((8, 3, 32, 32), (6, 3, 5, 5), (6,), padding=1),
                    special=Call(SPECIAL_IMAGES_NO_OVERFLOW, np.array([[[[1.0, -1.0], [0.0, 2.0]]]]), np.array([0.5])))
    backward_returns_new_arrays = True

    @staticmethod
    def forward(context, x, w, b=None, *, stride=1, padding=0):
        (sh, sw), (ph, pw) = _pair('ConvolutionReLU', 'stride', stride), _pair('ConvolutionReLU', 'padding', padding)
        y = _C.conv2d_relu(x, w, b, sh, sw, ph, pw)
        context['x'], context['w'], context['y'] = x, w, y
        context['stride'], context['padding'], context['bias'] = (sh, sw), (ph, pw), b is not None
        return y

    @staticmethod
    def backward(context, go):
        (sh, sw), (ph, pw) = context['stride'], context['padding']
        needs = context.get('needs_input_grad')  # set by do_forward when some input needs no gradient
        return _C.conv2d_relu_grad(go, context['x'], context['w'], sh, sw, ph, pw, context['bias'],
                                   needs is None or needs[0], context['y'])

    class Reference(Op):
        @staticmethod
        def forward(context, x, w, b=None, *, stride=1, padding=0):
            y = np.maximum(Convolution.Reference.forward(context, x, w, b, stride=stride, padding=padding), 0)
            context['y'] = y
            return y

        @staticmethod
        def backward(context, go):
            return Convolution.Reference.backward(context, np.where(context['y'] > 0, go, 0))


class MaxPooling(Op):
    """
    The maximum of each kernel_size window of a batch of images x (N, C, H, W):
    MaxPooling.do_forward(x, kernel_size=2, stride=None) (stride defaults to kernel_size, so windows don't
    overlap). The gradient flows to the (first) maximum of each window; context['indices'] holds its
    position h * W + w within its image, as PyTorch's return_indices.
    """
    kernels = ('maxpool2d_forward', 'maxpool2d_backward')
    tests = Samples(domains=('real',),
                    cases=(Case((2, 3, 6, 6), kernel_size=2), Case((1, 2, 7, 5), kernel_size=3, stride=2),
                           Case((1, 1, 5, 6), kernel_size=(2, 3), stride=(1, 2)), Case((0, 2, 4, 4), kernel_size=2),
                           Case((1, 1, 4, 4), kernel_size=2, stride=1)),
                    large=Case((8, 6, 28, 28), kernel_size=2), special=Call(SPECIAL_IMAGES, kernel_size=2, stride=1))
    backward_returns_new_arrays = True

    @staticmethod
    def forward(context, x, *, kernel_size, stride=None):
        (kh, kw) = _pair('MaxPooling', 'kernel_size', kernel_size)
        (sh, sw) = (kh, kw) if stride is None else _pair('MaxPooling', 'stride', stride)
        y, indices = _C.maxpool2d_forward(x, kh, kw, sh, sw)
        context['indices'], context['xshape'] = indices, np.shape(x)
        return y

    @staticmethod
    def backward(context, go):
        return _C.maxpool2d_backward(go, context['indices'], context['xshape'])

    class Reference(Op):
        @staticmethod
        def forward(context, x, *, kernel_size, stride=None):
            (kh, kw) = _pair('MaxPooling', 'kernel_size', kernel_size)
            (sh, sw) = (kh, kw) if stride is None else _pair('MaxPooling', 'stride', stride)
            win = _windows(x, kh, kw, sh, sw)
            flat = win.reshape(win.shape[:4] + (kh * kw,))
            k = flat.argmax(axis=-1)  # the first maximum of each window
            oh, ow = k.shape[2:]
            rows = np.arange(oh)[:, None] * sh + k // kw
            columns = np.arange(ow)[None, :] * sw + k % kw
            context['indices'], context['xshape'] = rows * x.shape[3] + columns, x.shape
            return np.take_along_axis(flat, k[..., None], axis=-1)[..., 0]

        @staticmethod
        def backward(context, go):
            n, c, h, w = context['xshape']
            per_image = go.shape[2] * go.shape[3]
            gx = np.zeros((n * c, h * w), dtype=go.dtype)
            # np.add.at, not gx[...] +=: with overlapping windows one pixel can be the maximum of several
            np.add.at(gx, (np.arange(n * c)[:, None], context['indices'].reshape(n * c, per_image)),
                      go.reshape(n * c, per_image))
            return gx.reshape(n, c, h, w)


class AvgPooling(Op):
    """
    The mean of each kernel_size window of a batch of images x (N, C, H, W):
    AvgPooling.do_forward(x, kernel_size=2, stride=None). Each element of a window gets 1/(kh kw) of the
    window's gradient.
    """
    kernels = ('avgpool2d_forward', 'avgpool2d_backward')
    tests = Samples(domains=('real',),
                    cases=(Case((2, 3, 6, 6), kernel_size=2), Case((1, 2, 7, 5), kernel_size=3, stride=2),
                           Case((1, 1, 5, 6), kernel_size=(2, 3), stride=(1, 2)), Case((0, 2, 4, 4), kernel_size=2),
                           Case((1, 1, 4, 4), kernel_size=2, stride=1)),
                    large=Case((8, 6, 28, 28), kernel_size=3, stride=1),
                    special=Call(SPECIAL_IMAGES, kernel_size=2, stride=1))
    backward_returns_new_arrays = True

    @staticmethod
    def forward(context, x, *, kernel_size, stride=None):
        (kh, kw) = _pair('AvgPooling', 'kernel_size', kernel_size)
        (sh, sw) = (kh, kw) if stride is None else _pair('AvgPooling', 'stride', stride)
        y = _C.avgpool2d_forward(x, kh, kw, sh, sw)
        context['xshape'], context['kernel_size'], context['stride'] = np.shape(x), (kh, kw), (sh, sw)
        return y

    @staticmethod
    def backward(context, go):
        return _C.avgpool2d_backward(go, context['xshape'], *context['kernel_size'], *context['stride'])

    class Reference(Op):
        @staticmethod
        def forward(context, x, *, kernel_size, stride=None):
            (kh, kw) = _pair('AvgPooling', 'kernel_size', kernel_size)
            (sh, sw) = (kh, kw) if stride is None else _pair('AvgPooling', 'stride', stride)
            context['xshape'], context['kernel_size'], context['stride'] = x.shape, (kh, kw), (sh, sw)
            return _windows(x, kh, kw, sh, sw).mean(axis=(-2, -1))

        @staticmethod
        def backward(context, go):
            (kh, kw), (sh, sw) = context['kernel_size'], context['stride']
            oh, ow = go.shape[2:]
            gx = np.zeros(context['xshape'], dtype=go.dtype)
            share = go / (kh * kw)
            for i in range(kh):
                for j in range(kw):
                    gx[:, :, i:i + sh * oh:sh, j:j + sw * ow:sw] += share
            return gx


class DropoutMask(Op):
    """
    Dropout with a given mask: DropoutMask.do_forward(x, mask=keep, p=p) is x * keep / (1 - p), zero where
    keep is False (everywhere when p == 1). The division keeps the expected value of each element as it is,
    so nothing changes at evaluation time. vg.dropout draws the mask with np.random.
    """
    kernels = ('dropout_forward', 'dropout_backward')
    tests = Samples(domains=('real',),
                    cases=(Case((3, 4), mask=keep_mask(0.3), p=0.3), Case((2, 3, 4, 5), mask=keep_mask(0.5), p=0.5),
                           Case((), mask=keep_mask(0.5), p=0.5), Case((0, 3), mask=keep_mask(0.1), p=0.1),
                           Case((4, 2), mask=keep_mask(1.0), p=1.0), Case((4, 2), mask=keep_mask(0.0), p=0.0)),
                    large=Case(BIG, mask=keep_mask(0.4), p=0.4),
                    special=Call(SPECIAL_MATRIX, mask=np.arange(32).reshape(8, 4) % 3 != 0, p=0.25))
    backward_returns_new_arrays = True

    @staticmethod
    def forward(context, x, *, mask, p):
        y = _C.dropout_forward(x, mask, p)
        context['mask'], context['p'] = mask, p
        return y

    @staticmethod
    def backward(context, go):
        return _C.dropout_backward(go, context['mask'], context['p'])

    class Reference(Op):
        @staticmethod
        def _noise(mask, p, dtype):
            one = dtype.type(1)
            scale = one / dtype.type(1 - p) if p < 1 else dtype.type(0)
            return np.where(mask, scale, dtype.type(0))

        @staticmethod
        def forward(context, x, *, mask, p):
            context['mask'], context['p'] = mask, p
            return x * DropoutMask.Reference._noise(mask, p, x.dtype)

        @staticmethod
        def backward(context, go):
            return go * DropoutMask.Reference._noise(context['mask'], context['p'], go.dtype)


class BatchNormalization(Op):
    """
    Batch normalisation of x (N, C) or (N, C, ...) per channel, then a learned scale gamma and shift beta
    (both (C,)): BatchNormalization.do_forward(x, gamma, beta, running_mean=None, running_var=None,
    eps=1e-5). Without running statistics it normalises with the batch's mean and (biased) variance, which
    it leaves in context['mean'] and context['var'] for the caller to update running statistics (vg.batch_norm
    does); with them (evaluation) it uses those instead.
    """
    kernels = ('batchnorm_forward', 'batchnorm_backward')
    tests = Samples(domains=('real', 'real', 'real'),
                    cases=(Case((6, 3), (3,), (3,)), Case((4, 3, 5, 2), (3,), (3,), eps=1e-3),
                           Case((5, 2), (2,), (2,), running_mean=running_mean, running_var=running_var),
                           Case((2, 3, 4, 4), (3,), (3,), running_mean=running_mean, running_var=running_var),
                           Case((3, 2), (2,), (2,)), Case((2, 2, 3), (2,), (2,))),
                    large=Case((16, 8, 24, 24), (8,), (8,)),
                    special=Call(SPECIAL_MATRIX, np.array([1.0, -2.0, 0.5, 3.0]), np.array([0.0, 1.0, -1.0, 0.5])))
    backward_returns_new_arrays = True

    @staticmethod
    def forward(context, x, gamma, beta, *, running_mean=None, running_var=None, eps=1e-5):
        y, xhat, mean, var, invstd = _C.batchnorm_forward(x, gamma, beta, running_mean, running_var, eps)
        context.update(xhat=xhat, gamma=gamma, invstd=invstd, mean=mean, var=var, training=running_mean is None)
        return y

    @staticmethod
    def backward(context, go):
        return _C.batchnorm_backward(go, context['xhat'], context['gamma'], context['invstd'], context['training'])

    class Reference(Op):
        @staticmethod
        def forward(context, x, gamma, beta, *, running_mean=None, running_var=None, eps=1e-5):
            axes = (0,) + tuple(range(2, x.ndim))  # everything but the channels
            shape = (1, -1) + (1,) * (x.ndim - 2)  # a per-channel vector, broadcastable against x
            training = running_mean is None
            if training:  # sums in float64, as the kernel's (float32 sums of a constant channel may miss 0)
                mean64 = x.mean(axis=axes, dtype=np.float64)
                var = ((x - mean64.reshape(shape)) ** 2).mean(axis=axes).astype(x.dtype)
                mean = mean64.astype(x.dtype)
            else:
                mean, var = np.asarray(running_mean, dtype=x.dtype), np.asarray(running_var, dtype=x.dtype)
            invstd = 1 / np.sqrt(var + x.dtype.type(eps))
            xhat = (x - mean.reshape(shape)) * invstd.reshape(shape)
            context.update(xhat=xhat, gamma=gamma, invstd=invstd, mean=mean, var=var, training=training)
            return gamma.reshape(shape) * xhat + beta.reshape(shape)

        @staticmethod
        def backward(context, go):
            xhat, gamma, invstd = context['xhat'], context['gamma'], context['invstd']
            axes = (0,) + tuple(range(2, go.ndim))
            shape = (1, -1) + (1,) * (go.ndim - 2)
            gbeta = go.sum(axis=axes, dtype=np.float64)  # float64 sums, as the kernel's
            ggamma = (go * xhat.astype(np.float64)).sum(axis=axes)
            scale = (gamma * invstd).reshape(shape)
            if not context['training']:  # the statistics are constants
                return go * scale, ggamma.astype(go.dtype), gbeta.astype(go.dtype)
            # in training, mean and var depend on every x of the channel too: their part of the gradient
            # removes the mean of go and the component of go along xhat
            m = go.size // go.shape[1]
            mean_gb, mean_gg = (gbeta / m).astype(go.dtype), (ggamma / m).astype(go.dtype)
            gx = (go - mean_gb.reshape(shape) - xhat * mean_gg.reshape(shape)) * scale
            return gx, ggamma.astype(go.dtype), gbeta.astype(go.dtype)


class CrossEntropy(Op):
    """
    The cross-entropy loss computed from logits (N, C) (unnormalised log-probabilities) and integer class
    targets (N,): CrossEntropy.do_forward(logits, targets=t, reduction='mean'). Softmax and log are fused,
    with the log-sum-exp trick, so no exp overflows; the result is a scalar, the mean (or sum) over the rows
    of logsumexp(logits_i) - logits_i,t_i. Its gradient is (softmax - onehot(targets)) / N (or without / N).
    """
    kernels = ('cross_entropy_forward', 'cross_entropy_backward')
    tests = Samples(domains=('real',),
                    cases=(Case((3, 4), targets=row_indices, reduction='mean'),
                           Case((1, 5), targets=row_indices, reduction='mean'),
                           Case((0, 4), targets=row_indices, reduction='sum'),
                           Case((6, 3), targets=row_indices, reduction='sum'),
                           Case((4, 1), targets=row_indices, reduction='mean'),
                           Case((5, 7), targets=row_indices, reduction='mean', domains=('wide',))),
                    large=Case(BIG, targets=row_indices, reduction='mean'),
                    special=Call(SPECIAL_MATRIX, targets=EIGHT_TARGETS))
    backward_returns_new_arrays = True

    @staticmethod
    def forward(context, logits, *, targets, reduction='mean'):
        loss, softmax = _C.cross_entropy_forward(logits, targets, reduction)
        context['softmax'], context['targets'] = softmax, targets
        context['divisor'] = np.shape(logits)[0] if reduction == 'mean' else 1
        return loss

    @staticmethod
    def backward(context, go):
        return _C.cross_entropy_backward(go, context['softmax'], context['targets'], context['divisor'])

    class Reference(Op):
        @staticmethod
        def forward(context, logits, *, targets, reduction='mean'):
            if reduction not in ('mean', 'sum'):
                raise ValueError(f"CrossEntropy: reduction must be 'mean' or 'sum', got {reduction!r}")
            shifted = logits - logits.max(axis=1, keepdims=True)
            exps = np.exp(shifted)
            sums = exps.sum(axis=1, keepdims=True)
            rows = np.arange(logits.shape[0])
            losses = np.log(sums[:, 0]) - shifted[rows, targets]
            context['softmax'], context['targets'] = exps / sums, targets
            context['divisor'] = logits.shape[0] if reduction == 'mean' else 1
            return np.asarray(losses.sum() / context['divisor'], dtype=logits.dtype)

        @staticmethod
        def backward(context, go):
            softmax, targets = context['softmax'], context['targets']
            onehot = np.zeros_like(softmax)
            onehot[np.arange(softmax.shape[0]), targets] = 1
            return (go / context['divisor']) * (softmax - onehot)


class Reshape(Op):
    """Give x another shape with the same number of elements: Reshape.do_forward(x, shape=(n, -1)). A view
    of x when its layout allows (as np.reshape); x's dtype is kept."""
    kernels = ('reshape',)
    tests = Samples(domains=('real',),
                    cases=(Case((2, 3), shape=(3, 2)), Case((2, 3, 4), shape=(2, -1)), Case((), shape=(1, 1)),
                           Case((0, 3), shape=(3, 0)), Case((4,), shape=(2, 2))),
                    special=Call(SPECIAL_MATRIX, shape=(4, 8)), passthrough=True)

    @staticmethod
    def forward(context, x, *, shape):
        y = _C.reshape(x, shape)
        context['xshape'] = np.shape(x)
        return y

    @staticmethod
    def backward(context, go):
        return _C.reshape(go, context['xshape'])

    class Reference(Op):
        @staticmethod
        def forward(context, x, *, shape):
            context['xshape'] = x.shape
            return np.reshape(x, shape)

        @staticmethod
        def backward(context, go):
            return np.reshape(go, context['xshape'])


# The CNN toolkit's ops: every op class defined above, in order (vgrad.ops.ALL_OPS, the one list of the built-in
# ops, ends with them). Each names in `kernels` the functions of vgrad._C it owns, as the ops of ops.py do.
NN_OPS = tuple(value for value in list(globals().values())
               if isinstance(value, type) and issubclass(value, Op) and value.__module__ == __name__)

for _op in NN_OPS:  # give the references readable names in error messages and reprs, as ops.py does
    _op.Reference.__name__ = _op.Reference.__qualname__ = f'{_op.__name__}.Reference'
del _op
