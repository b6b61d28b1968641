"""Data sets for the experiments: a synthetic two-class problem, MNIST and Fashion-MNIST.

Every loader returns ``(xtrain, ytrain), (xval, yval), num_classes``, like vugrad's.

MNIST is read from vugrad's ``mnist.pkl`` in the current directory if there is one, else from the four
standard IDX files in ``$VGRAD_DATA/mnist/`` (default ``~/.cache/vgrad/mnist/``). Nothing is downloaded
yet: a missing file raises FileNotFoundError saying where to put it (see ``_obtain``).
"""
import gzip
import os
import pickle
import zlib

import numpy as np

__all__ = ["load_synth", "load_mnist", "load_fashion_mnist", "read_idx"]

# Names of the four files of an MNIST-style data set, keyed like vugrad's mnist.pkl.
IDX_FILES = {
    "training_images": "train-images-idx3-ubyte.gz",
    "training_labels": "train-labels-idx1-ubyte.gz",
    "test_images": "t10k-images-idx3-ubyte.gz",
    "test_labels": "t10k-labels-idx1-ubyte.gz",
}
MNIST_PICKLE = "mnist.pkl"
# Where Debian's dataset-fashion-mnist package puts its files.
SYSTEM_FASHION_DIR = "/usr/share/datasets/fashion-mnist"

# IDX type codes (third byte of the magic number) -> big-endian dtype.
_IDX_DTYPES = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}


def load_synth(num_train=60_000, num_val=10_000, seed=None):
    """Synthetic two-feature data whose classes are split by an ellipse (a quadratic form > 0.6).

    Draws from the global ``np.random`` exactly as vugrad's ``load_synth`` does, so after the same
    ``np.random.seed(s)`` both return identical arrays. ``seed``, if given, seeds ``np.random`` first.
    Labels are int64.
    """
    if seed is not None:
        np.random.seed(seed)
    threshold = 0.6
    form = np.asarray([[1, 0.5], [1, 0.2]])

    x = np.random.randn(num_train + num_val, 2)
    q = np.einsum("bf, fk, bk -> b", x, form, x)
    y = (q > threshold).astype(np.int64)

    return (x[:num_train, :], y[:num_train]), (x[num_train:, :], y[num_train:]), 2


def read_idx(path):
    """Reads one IDX file (gzip-compressed or not) into a native-endian array of its stored shape.

    Raises ValueError naming the file if it is corrupt, truncated, or has trailing bytes.
    """
    path = os.fspath(path)
    with open(path, "rb") as f:
        raw = f.read()
    if raw[:2] == b"\x1f\x8b":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as e:
            raise ValueError(f"{path}: not a valid gzip file ({e})") from None

    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_DTYPES:
        raise ValueError(f"{path}: not an IDX file (bad magic number {raw[:4].hex() or 'none'})")
    dtype, ndim = _IDX_DTYPES[raw[2]], raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise ValueError(f"{path}: IDX header truncated ({len(raw)} bytes, expected {header})")
    shape = tuple(int(d) for d in np.frombuffer(raw, dtype=">u4", count=ndim, offset=4))

    expected = header + int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if len(raw) != expected:
        problem = "truncated" if len(raw) < expected else "has trailing bytes"
        raise ValueError(f"{path}: IDX data {problem} ({len(raw)} bytes, expected {expected} for shape {shape})")
    data = np.frombuffer(raw, dtype=dtype, offset=header).reshape(shape)
    return data.astype(dtype.newbyteorder("="))


def load_mnist(final=False, flatten=True, shuffle_seed=0):
    """MNIST as uint8 pixels and uint8 labels.

    :param final: if True, return the canonical train/test split; else hold out the last 5000 training
        images as validation data (after shuffling) and keep the test set hidden.
    :param flatten: images as (N, 784) rows if True, else (N, 28, 28).
    :param shuffle_seed: if >= 0 (not None), shuffle the training set, then the test set, with
        permutations drawn from ``np.random.default_rng(shuffle_seed)``.
    """
    if os.path.isfile(MNIST_PICKLE):
        arrays = _read_pickle(MNIST_PICKLE)
    else:
        arrays = _read_idx_set(_obtain("mnist", [_data_dir("mnist")], pickle_hint=True))
    return _split(arrays, final, flatten, shuffle_seed)


def load_fashion_mnist(final=False, flatten=True, shuffle_seed=0):
    """Fashion-MNIST, with the same conventions as ``load_mnist``.

    Read from ``$VGRAD_DATA/fashion-mnist/`` (default ``~/.cache/vgrad/fashion-mnist/``), else from
    Debian's dataset-fashion-mnist package (``/usr/share/datasets/fashion-mnist/``).
    """
    dirs = [_data_dir("fashion-mnist"), SYSTEM_FASHION_DIR]
    return _split(_read_idx_set(_obtain("fashion-mnist", dirs)), final, flatten, shuffle_seed)


def load():
    """vugrad.mnist compatibility: (xtrain, ytrain, xtest, ytest) as stored, images flattened."""
    (xtrain, ytrain), (xtest, ytest), _ = load_mnist(final=True, flatten=True, shuffle_seed=None)
    return xtrain, ytrain, xtest, ytest


def _data_dir(name):
    root = os.environ.get("VGRAD_DATA") or os.path.join(os.path.expanduser("~"), ".cache", "vgrad")
    return os.path.join(root, name)


def _obtain(name, dirs, pickle_hint=False):
    """Returns the first of ``dirs`` that holds all four IDX files.

    This is the one place where a download into ``dirs[0]`` can be added; for now a missing data set
    raises FileNotFoundError saying where to put which files.
    """
    for d in dirs:
        if all(os.path.isfile(os.path.join(d, f)) for f in IDX_FILES.values()):
            return d
    target = dirs[0]
    missing = [f for f in IDX_FILES.values() if not os.path.isfile(os.path.join(target, f))]
    message = f"{name} data not found. Put the files {', '.join(IDX_FILES.values())} in {target}/"
    if len(missing) < len(IDX_FILES):
        message += f" (missing there: {', '.join(missing)})"
    message += f". Set $VGRAD_DATA to use $VGRAD_DATA/{name}/ instead."
    if len(dirs) > 1:
        message += f" Also looked in: {', '.join(dirs[1:])}."
    if pickle_hint:
        message += f" Alternatively put vugrad's {MNIST_PICKLE} in the current directory ({os.getcwd()})."
    raise FileNotFoundError(message)


def _read_idx_set(directory):
    """Reads the four IDX files in ``directory`` and checks that they form an image data set."""
    arrays = {}
    for key, fname in IDX_FILES.items():
        path = os.path.join(directory, fname)
        data = read_idx(path)
        want = 3 if key.endswith("images") else 1
        if data.ndim != want or data.dtype != np.uint8:
            raise ValueError(f"{path}: expected a {want}-D uint8 IDX array, got {data.ndim}-D {data.dtype}")
        arrays[key] = data
    return _checked(arrays, directory)


def _read_pickle(path):
    """Reads vugrad's mnist.pkl: a dict of flattened uint8 images and uint8 labels."""
    with open(path, "rb") as f:
        stored = pickle.load(f)
    if not isinstance(stored, dict) or not set(IDX_FILES) <= set(stored):
        raise ValueError(f"{os.path.abspath(path)}: expected a dict with keys {', '.join(IDX_FILES)}")
    arrays = {key: np.asarray(stored[key]) for key in IDX_FILES}
    for key in ("training_images", "test_images"):
        if arrays[key].ndim != 2 or arrays[key].shape[1] != 28 * 28:
            raise ValueError(f"{os.path.abspath(path)}: {key} has shape {arrays[key].shape}, expected (N, 784)")
        arrays[key] = arrays[key].reshape(-1, 28, 28)
    return _checked(arrays, os.path.abspath(path))


def _checked(arrays, where):
    """Checks 28x28 images and one label per image."""
    for part in ("training", "test"):
        images, labels = arrays[part + "_images"], arrays[part + "_labels"]
        if images.shape[1:] != (28, 28):
            raise ValueError(f"{where}: {part} images are {images.shape[1:]}, expected (28, 28)")
        if labels.shape != (images.shape[0],):
            raise ValueError(f"{where}: {images.shape[0]} {part} images but labels of shape {labels.shape}")
    return arrays


def _split(arrays, final, flatten, shuffle_seed):
    xtrain, ytrain = arrays["training_images"], arrays["training_labels"]
    xtest, ytest = arrays["test_images"], arrays["test_labels"]

    if shuffle_seed is not None and shuffle_seed >= 0:
        rng = np.random.default_rng(shuffle_seed)
        p = rng.permutation(len(xtrain))
        xtrain, ytrain = xtrain[p], ytrain[p]
        p = rng.permutation(len(xtest))
        xtest, ytest = xtest[p], ytest[p]

    if flatten:
        xtrain = xtrain.reshape(xtrain.shape[0], -1)
        xtest = xtest.reshape(xtest.shape[0], -1)

    if not final:
        return (xtrain[:-5000], ytrain[:-5000]), (xtrain[-5000:], ytrain[-5000:]), 10
    return (xtrain, ytrain), (xtest, ytest), 10
