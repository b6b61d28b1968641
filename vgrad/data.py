"""Data sets for the experiments: a synthetic two-class problem, MNIST, Fashion-MNIST and CIFAR-10.

Every loader returns ``(xtrain, ytrain), (xval, yval), num_classes``, like vugrad's, with uint8 pixels and
uint8 labels.

Offline first. MNIST is read from vugrad's ``mnist.pkl`` in the current directory if there is one (with an
unpickler that admits only a dict of NumPy arrays of numbers, so that a planted file cannot run code), else from
the four standard IDX files in ``$VGRAD_DATA/mnist/`` (default ``~/.cache/vgrad/mnist/``); Fashion-MNIST from
``$VGRAD_DATA/fashion-mnist/`` or Debian's dataset-fashion-mnist package; CIFAR-10 from its python version
(``cifar-10-python.tar.gz``, or the extracted ``cifar-10-batches-py/``) in ``$VGRAD_DATA/cifar10/``.

Files that are missing are downloaded into those directories from a public mirror, which the variables
``$VGRAD_MNIST_URL``, ``$VGRAD_FASHION_MNIST_URL`` and ``$VGRAD_CIFAR10_URL`` replace. Each download shows a
progress bar, goes to a temporary file next to its destination, and is checked (its length against what the
server announced, its size and SHA-256 against the canonical file's, and that it parses) before it is moved
into place with os.replace, so an interrupted or failed download never leaves a half-written file behind. (A
process killed outright, by SIGKILL, leaves its temporary file; the next call removes it once no live download
holds it: see _remove_stale_parts.) Without a network the loader fails at the first file, within seconds,
saying where to put the files.
"""
import gzip
import hashlib
import http.client
import io
import os
import pickle
import sys
import tarfile
import tempfile
import time
import urllib.error
import urllib.request
import zlib

import numpy as np

try:
    import fcntl
except ImportError:  # Windows: no flock; stale partial downloads are then recognised by their age alone
    fcntl = None

__all__ = ["load_synth", "load_mnist", "load_fashion_mnist", "load_cifar10", "read_idx", "download",
           "DownloadError", "UnsafePickleError"]

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

CIFAR10_ARCHIVE = "cifar-10-python.tar.gz"
CIFAR10_FOLDER = "cifar-10-batches-py"  # the folder inside the archive
CIFAR10_BATCHES = {"training": [f"data_batch_{i}" for i in range(1, 6)], "test": ["test_batch"]}

# Where missing files are downloaded from: the environment variable that overrides the mirror, and the
# default mirror (files are fetched as <base URL><file name>).
MIRRORS = {
    "mnist": ("VGRAD_MNIST_URL", "https://storage.googleapis.com/cvdf-datasets/mnist/"),
    "fashion-mnist": ("VGRAD_FASHION_MNIST_URL",
                      "https://raw.githubusercontent.com/zalandoresearch/fashion-mnist/master/data/fashion/"),
    "cifar10": ("VGRAD_CIFAR10_URL", "https://www.cs.toronto.edu/~kriz/"),
}

# Size in bytes and SHA-256 of the canonical files, as published with each data set; every mirror serves
# these same bytes. Files found on disk are not held to them (Debian's Fashion-MNIST is recompressed), only
# downloads are.
CHECKSUMS = {
    "mnist": {
        "train-images-idx3-ubyte.gz": (9912422, "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609"),
        "train-labels-idx1-ubyte.gz": (28881, "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c"),
        "t10k-images-idx3-ubyte.gz": (1648877, "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6"),
        "t10k-labels-idx1-ubyte.gz": (4542, "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6"),
    },
    "fashion-mnist": {
        "train-images-idx3-ubyte.gz": (26421880, "3aede38d61863908ad78613f6a32ed271626dd12800ba2636569512369268a84"),
        "train-labels-idx1-ubyte.gz": (29515, "a04f17134ac03560a47e3764e11b92fc97de4d1bfaf8ba1a3aa29af54cc90845"),
        "t10k-images-idx3-ubyte.gz": (4422102, "346e55b948d973a97e58d2351dde16a484bd415d4595297633bb08f03db6a073"),
        "t10k-labels-idx1-ubyte.gz": (5148, "67da17c76eaffca5446c3361aaab5c3cd6d1c2608764d35dfb1850b086bf8dd5"),
    },
    "cifar10": {
        CIFAR10_ARCHIVE: (170498071, "6d958be074577803d12ecdefd02955f39262c83c16fe9348329d7fe0b5c001ce"),
    },
}

# Downloads go to a temporary file named .<file name>.<8 random characters>.part beside their destination. One
# that is not locked by a live download and unchanged for this many seconds was left by a killed process and is
# removed by the next download or load; where files cannot be locked, one unchanged for a day is (see
# _remove_stale_parts).
PART_SUFFIX = ".part"
STALE_PART_SECONDS = 60
STALE_PART_SECONDS_UNLOCKABLE = 24 * 3600

# Seconds to wait for the server to answer (or send the next bytes) before giving up: short, so that an
# offline machine fails fast.
TIMEOUT = 10

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

    Read from vugrad's ``mnist.pkl`` in the current directory, else from the four IDX files in
    ``$VGRAD_DATA/mnist/`` (default ``~/.cache/vgrad/mnist/``), which are downloaded there from
    ``$VGRAD_MNIST_URL`` (default: a public mirror) if missing.

    ``mnist.pkl`` must be in vugrad's format, a dict of NumPy arrays of numbers: any other pickle (one that
    would call a function or build an object while loading, or holds object arrays) is refused with an
    UnsafePickleError (a ValueError) saying what it holds, rather than loaded, since loading it could run code.

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
    Debian's dataset-fashion-mnist package (``/usr/share/datasets/fashion-mnist/``), else downloaded into
    the first from ``$VGRAD_FASHION_MNIST_URL`` (default: the data set's own repository).
    """
    dirs = [_data_dir("fashion-mnist"), SYSTEM_FASHION_DIR]
    return _split(_read_idx_set(_obtain("fashion-mnist", dirs)), final, flatten, shuffle_seed)


def load_cifar10(final=False, flatten=False, shuffle_seed=0):
    """CIFAR-10: 32x32 colour images in 10 classes, as uint8 pixels (N, 3, 32, 32) and uint8 labels.

    Read from the python version of the data set in ``$VGRAD_DATA/cifar10/`` (default
    ``~/.cache/vgrad/cifar10/``): the archive ``cifar-10-python.tar.gz`` as published, or the folder
    ``cifar-10-batches-py/`` extracted from it; downloaded there from ``$VGRAD_CIFAR10_URL`` (default: the
    data set's home page) if neither is present. The five training batches give 50,000 images, the test
    batch 10,000.

    :param final: if True, return the training and test sets; else hold out the last 5000 training images
        as validation data (after shuffling) and keep the test set hidden.
    :param flatten: images as (N, 3072) rows if True (the red, green, blue planes one after the other, as
        stored), else (N, 3, 32, 32): channel, row, column.
    :param shuffle_seed: as for ``load_mnist``.
    """
    directory = _data_dir("cifar10")
    _remove_stale_parts(directory, [CIFAR10_ARCHIVE])
    folder = os.path.join(directory, CIFAR10_FOLDER)
    names = [name for part in CIFAR10_BATCHES.values() for name in part]
    if all(os.path.isfile(os.path.join(folder, name)) for name in names):
        arrays = _read_cifar_batches(lambda name: _read_file(os.path.join(folder, name)), folder)
    else:
        archive = os.path.join(directory, CIFAR10_ARCHIVE)
        if not os.path.isfile(archive):
            _download_missing("cifar10", directory, [CIFAR10_ARCHIVE], _read_cifar_archive,
                              f"Put {CIFAR10_ARCHIVE} (or the folder {CIFAR10_FOLDER}/ extracted from it) in "
                              f"{directory}/. Set $VGRAD_DATA to use $VGRAD_DATA/cifar10/ instead.")
        arrays = _read_cifar_archive(archive)
    return _split(arrays, final, flatten, shuffle_seed)


def load():
    """vugrad.mnist compatibility: (xtrain, ytrain, xtest, ytest) as stored, images flattened."""
    (xtrain, ytrain), (xtest, ytest), _ = load_mnist(final=True, flatten=True, shuffle_seed=None)
    return xtrain, ytrain, xtest, ytest


def _data_dir(name):
    root = os.environ.get("VGRAD_DATA") or os.path.join(os.path.expanduser("~"), ".cache", "vgrad")
    return os.path.join(root, name)


def _obtain(name, dirs, pickle_hint=False):
    """Returns the first of ``dirs`` that holds all four IDX files, downloading the missing ones into
    ``dirs[0]`` if none does."""
    _remove_stale_parts(dirs[0], IDX_FILES.values())
    for d in dirs:
        if all(os.path.isfile(os.path.join(d, f)) for f in IDX_FILES.values()):
            return d
    target = dirs[0]
    missing = [f for f in IDX_FILES.values() if not os.path.isfile(os.path.join(target, f))]
    message = f"Put the files {', '.join(IDX_FILES.values())} in {target}/"
    if len(missing) < len(IDX_FILES):
        message += f" (missing there: {', '.join(missing)})"
    message += f". Set $VGRAD_DATA to use $VGRAD_DATA/{name}/ instead."
    if len(dirs) > 1:
        message += f" Also looked in: {', '.join(dirs[1:])}."
    if pickle_hint:
        message += f" Alternatively put vugrad's {MNIST_PICKLE} in the current directory ({os.getcwd()})."
    _download_missing(name, target, missing, read_idx, message)
    return target


# ---------------------------------------------------------------------------------------------- downloads

class DownloadError(FileNotFoundError):
    """A data set's files are missing and could not be downloaded (no network, a broken or truncated
    transfer, or a file that is not the canonical one). The message says where to put the files by hand."""


def _download_missing(name, directory, files, check, where_to_put):
    """Downloads ``files`` of data set ``name`` into ``directory``; stops at the first failure."""
    variable, default = MIRRORS[name]
    base = os.environ.get(variable) or default
    if not base.endswith("/"):
        base += "/"
    for fname in files:
        url = base + fname
        size, sha256 = CHECKSUMS.get(name, {}).get(fname, (None, None))
        try:
            download(url, os.path.join(directory, fname), size=size, sha256=sha256, check=check)
        except DownloadError as e:
            raise DownloadError(f"{name} data not found, and downloading it failed: {e}\n{where_to_put} "
                                f"To download from another mirror, set ${variable} to its URL (the folder "
                                f"holding {fname}).") from e.__cause__


def download(url, path, size=None, sha256=None, check=None, timeout=None, progress=True):
    """Downloads ``url`` to ``path`` safely: into a temporary file beside it, checked, then renamed.

    :param size, sha256: if given, the file must have this many bytes and this SHA-256 hex digest.
    :param check: if given, called with the temporary file's path; it raises ValueError if the file does
        not parse (e.g. ``read_idx``).
    :param timeout: seconds to wait for a connection or for the next bytes (default ``TIMEOUT``).
    :param progress: show a tqdm progress bar on stderr.
    :raises DownloadError: if anything goes wrong; ``path`` is then left as it was (absent).
    """
    from tqdm import tqdm  # imported here: only downloads need it

    directory = os.path.dirname(os.path.abspath(path))
    fname = os.path.basename(path)
    os.makedirs(directory, exist_ok=True)
    _remove_stale_parts(directory, [fname])
    fd, temporary = tempfile.mkstemp(prefix=f".{fname}.", suffix=PART_SUFFIX, dir=directory)
    out = os.fdopen(fd, "wb")
    try:
        # Held until the file is renamed or removed: it tells _remove_stale_parts in other processes that this
        # download is alive. The kernel releases it when the process dies, however it dies.
        _lock(out.fileno())
        try:
            with urllib.request.urlopen(url, timeout=TIMEOUT if timeout is None else timeout) as response:
                announced = response.headers.get("Content-Length")
                announced = int(announced) if announced and announced.isdigit() else None
                digest = hashlib.sha256()
                received = 0
                with tqdm(total=announced or size, unit="B", unit_scale=True, unit_divisor=1024,
                          desc=f"downloading {fname}", file=sys.stderr, disable=not progress) as bar:
                    while True:
                        chunk = response.read(1 << 16)
                        if not chunk:
                            break
                        out.write(chunk)
                        digest.update(chunk)
                        received += len(chunk)
                        bar.update(len(chunk))
            out.flush()  # check() reads the file by its name
        except (OSError, http.client.HTTPException, ValueError) as e:
            # URLError (no network, refused, 404), timeouts, IncompleteRead (the server stopped mid-transfer).
            raise DownloadError(f"{url}: {_reason(e)}") from e

        if announced is not None and received != announced:
            raise DownloadError(f"{url}: the transfer stopped after {received} of {announced} bytes")
        if size is not None and received != size:
            raise DownloadError(f"{url}: got {received} bytes, but the canonical {fname} has {size}")
        if sha256 is not None and digest.hexdigest() != sha256:
            raise DownloadError(f"{url}: the SHA-256 of the {received} bytes received is {digest.hexdigest()}, "
                                f"but the canonical {fname}'s is {sha256}")
        if check is not None:
            try:
                check(temporary)
            except ValueError as e:
                raise DownloadError(f"{url}: the file received is not valid: {e}") from e
        os.chmod(temporary, 0o644)  # mkstemp makes it private; a data file is readable by all
        os.replace(temporary, path)
    except BaseException:
        # Whatever happened (including Ctrl-C), leave no partial file behind. (A SIGKILL leaves no chance to:
        # the next download or load removes the file then, see _remove_stale_parts.)
        try:
            os.unlink(temporary)
        except FileNotFoundError:
            pass
        raise
    finally:
        out.close()  # and so unlock: after the rename or the removal, never before


def _lock(fd):
    """Takes the exclusive flock of an open file. Returns True if taken, False if another open file holds it,
    and None if this system or file system has no such locks (then no one can take it)."""
    if fcntl is None:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except BlockingIOError:
        return False
    except OSError:  # ENOLCK, EOPNOTSUPP, EINVAL: a file system that does not lock
        return None


def _remove_stale_parts(directory, fnames):
    """
    Removes the temporary files that downloads of ``fnames`` into ``directory`` left behind when their process
    was killed (SIGKILL, a power cut: no chance to clean up), and only those: several processes may download
    the same file at once, each into its own temporary file, and a live one's is left alone.

    A download holds an exclusive flock on its temporary file from the moment it creates it until it renames
    or removes it, and the kernel releases a flock when its process dies, however it dies. So a temporary file
    whose lock can be taken has no live owner, provided it is older than the instant between its creation and
    its locking: STALE_PART_SECONDS, counted from its last write (a live download writes every few
    milliseconds, and gives up after TIMEOUT seconds without data). A lock rather than a file naming the owner's
    PID: PIDs are reused and mean nothing on another machine sharing the directory (a home on NFS), a PID file
    goes stale itself, and the kernel releases a lock exactly when its owner dies. Where locks don't work (no
    fcntl, a file system without flock), a file is removed once it is STALE_PART_SECONDS_UNLOCKABLE old.
    """
    try:
        entries = os.listdir(directory)
    except OSError:  # no directory yet, or not readable: nothing of ours to remove
        return
    names = {f".{fname}." for fname in fnames}
    for entry in entries:
        # mkstemp's names: the prefix, eight random characters from [a-z0-9_], the suffix
        if not (entry.endswith(PART_SUFFIX) and entry[:-len(PART_SUFFIX) - 8] in names):
            continue
        path = os.path.join(directory, entry)
        try:
            # read-write: on NFS a flock is emulated with a POSIX lock, which needs a writable file
            fd = os.open(path, os.O_RDWR | getattr(os, "O_NOFOLLOW", 0))
        except OSError:  # gone already, someone else's, or not a plain file
            continue
        try:
            info = os.fstat(fd)
            age = time.time() - info.st_mtime
            if age < STALE_PART_SECONDS:
                continue
            locked = _lock(fd)
            if locked is False or (locked is None and age < STALE_PART_SECONDS_UNLOCKABLE):
                continue  # a live download, or perhaps one
            now = os.stat(path, follow_symlinks=False)
            if (now.st_dev, now.st_ino) == (info.st_dev, info.st_ino):  # still the file that was judged
                os.unlink(path)
        except OSError:  # removed or renamed meanwhile (by its owner or another process cleaning up)
            pass
        finally:
            os.close(fd)


def _reason(error):
    if isinstance(error, urllib.error.HTTPError):
        return f"HTTP error {error.code} {error.reason}"
    if isinstance(error, urllib.error.URLError):
        return str(error.reason)
    if isinstance(error, http.client.IncompleteRead):
        return f"the transfer stopped after {len(error.partial)} bytes ({error.expected} more were expected)"
    return str(error) or type(error).__name__


# ---------------------------------------------------------------------------------------------- CIFAR-10

class UnsafePickleError(ValueError, pickle.UnpicklingError):
    """A pickle (mnist.pkl, a CIFAR-10 batch) holds something other than plain data and NumPy arrays of
    numbers, so vgrad refuses to load it: loading a pickle can run any code its author chose. A ValueError,
    like the loaders' other complaints about a file's format."""


def _numpy_pickle_functions():
    """NumPy's own reconstructors, taken from what it pickles, so that neither module path (NumPy 1.x's
    numpy.core, 2.x's numpy._core) has to be imported by name."""
    array = np.zeros(1, dtype=np.uint8)
    return array.__reduce__()[0], array.__reduce_ex__(5)[0]


_np_reconstruct, _np_frombuffer = _numpy_pickle_functions()
# The dtypes an array read from a pickle may have: booleans and numbers. Not object arrays (whose elements are
# arbitrary objects), records, strings or datetimes.
_PICKLE_DTYPE_KINDS = "biufc"


def _pickle_dtype(spec, align=False, copy=False):
    """numpy.dtype, as pickles call it (``dtype('u1', False, True)``), for plain numeric dtypes only."""
    if isinstance(spec, bytes):  # a Python 2 pickle read with encoding="bytes" (CIFAR-10)
        spec = spec.decode("latin1")
    try:
        dtype = np.dtype(spec) if isinstance(spec, str) else None
    except (TypeError, ValueError):
        dtype = None
    if dtype is None or dtype.kind not in _PICKLE_DTYPE_KINDS or dtype.hasobject or dtype.fields is not None \
            or dtype.subdtype is not None:
        what = f"dtype {dtype}" if dtype is not None else f"dtype {spec!r}"
        if dtype is not None and dtype.hasobject:
            what += " (an object array, whose elements are arbitrary Python objects)"
        raise UnsafePickleError(f"refusing to load a NumPy array of {what}: only arrays of numbers are read")
    return np.dtype(spec, bool(align), True)  # a copy, as numpy.dtype's own unpickling makes: BUILD changes it


def _pickle_reconstruct(subtype, shape, typecode):
    """numpy's _reconstruct, which makes the empty array that the next BUILD fills in."""
    if subtype is not _PickledNDArray or shape != (0,) or typecode not in (b"b", "b"):
        raise UnsafePickleError(f"refusing to load _reconstruct({getattr(subtype, '__name__', subtype)}, "
                                f"{shape!r}, {typecode!r}): not how NumPy pickles an array")
    return _np_reconstruct(np.ndarray, (0,), b"b")


def _pickle_frombuffer(buffer, dtype, shape, order, axis_order=None):
    """numpy's _frombuffer (pickle protocol 5): an array over the bytes of the pickle."""
    if not isinstance(dtype, np.dtype) or dtype.kind not in _PICKLE_DTYPE_KINDS or dtype.hasobject:
        raise UnsafePickleError(f"refusing to load a NumPy array of dtype {dtype!r}: only arrays of numbers "
                                f"are read")
    if axis_order is not None:  # NumPy >= 2.1, for arrays stored in another axis order
        return _np_frombuffer(buffer, dtype, shape, order, axis_order)
    return _np_frombuffer(buffer, dtype, shape, order)


def _pickle_latin1(text, encoding="utf-8", errors="strict"):
    """_codecs.encode, with which pickle protocol 2 stores bytes: (text, 'latin1') only."""
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1") or errors != "strict":
        raise UnsafePickleError(f"refusing to load _codecs.encode(..., {encoding!r}): not how pickle stores bytes")
    return text.encode("latin1")


class _PickledNDArray:
    """What a pickle's ``numpy.ndarray`` stands for: only _pickle_reconstruct accepts it, so the pickle cannot
    call ndarray's constructor itself."""


class _SafeUnpickler(pickle._Unpickler):
    """
    Unpickles plain data (dicts, lists, tuples, strings, bytes, numbers) and NumPy arrays of numbers, and refuses
    anything else, saying what it found: a pickle can run arbitrary code (a class's __reduce__ may name
    os.system), and these files come from the internet or from whoever wrote the working directory.

    Only the globals with which NumPy pickles an array are resolved, to guarded stand-ins: _reconstruct and
    _frombuffer (under NumPy 1.x's module path numpy.core and 2.x's numpy._core), ndarray, dtype for numeric
    dtypes, and _codecs.encode for protocol 2's bytes. It is the pure-Python unpickler, because BUILD (the
    opcode that calls __setstate__) has to be checked too: numpy.dtype's __setstate__ accepts any flags, and a
    uint8 dtype flagged as holding objects makes NumPy treat numbers as object pointers.
    """

    GLOBALS = {
        ("numpy.core.multiarray", "_reconstruct"): _pickle_reconstruct,
        ("numpy._core.multiarray", "_reconstruct"): _pickle_reconstruct,
        ("numpy.core.numeric", "_frombuffer"): _pickle_frombuffer,
        ("numpy._core.numeric", "_frombuffer"): _pickle_frombuffer,
        ("numpy", "ndarray"): _PickledNDArray,
        ("numpy", "dtype"): _pickle_dtype,
        ("_codecs", "encode"): _pickle_latin1,
    }

    def find_class(self, module, name):
        try:
            return self.GLOBALS[(module, name)]
        except KeyError:
            raise UnsafePickleError(f"refusing to load {module}.{name}: a pickle that names it can run code "
                                    f"when it is loaded") from None

    def _load_build(self):
        state = self.stack[-1]
        inst = self.stack[-2]
        if isinstance(inst, np.dtype):
            _check_dtype_state(inst, state)
        elif isinstance(inst, np.ndarray):
            _check_array_state(state)
        else:
            raise UnsafePickleError(f"refusing to load a pickle that sets the state of a {type(inst).__name__}")
        pickle._Unpickler.load_build(self)

    dispatch = dict(pickle._Unpickler.dispatch)
    dispatch[pickle.BUILD[0]] = _load_build


def _check_dtype_state(dtype, state):
    """numpy.dtype's pickled state for a plain numeric dtype: (3, byte order, None, None, None, -1, -1, 0): no
    subarray, field names or fields, the default size and alignment, and no flags (which could say, falsely,
    that it holds objects)."""
    plain = np.dtype(dtype.str).__reduce__()[2]
    if isinstance(state, tuple) and len(state) == len(plain) == 8:
        version, order, subarray, names, fields, size, alignment, flags = state
        if isinstance(order, bytes):  # a Python 2 pickle read with encoding="bytes"
            order = order.decode("latin1")
        if version == plain[0] and order in ("<", ">", "|", "=") and (subarray, names, fields) == plain[2:5] \
                and size in (-1, dtype.itemsize) and alignment in (-1, dtype.alignment) and flags == plain[7]:
            return
    raise UnsafePickleError(f"refusing to load a NumPy dtype {dtype} with the state {state!r}, which is not that "
                            f"of a plain {dtype}")


def _check_array_state(state):
    """ndarray's pickled state: (version, shape, dtype, fortran order, the raw bytes)."""
    if not isinstance(state, tuple) or len(state) not in (4, 5):
        raise UnsafePickleError(f"refusing to load a NumPy array with the state {type(state).__name__}")
    dtype, raw = state[-3], state[-1]
    if not isinstance(dtype, np.dtype) or dtype.kind not in _PICKLE_DTYPE_KINDS or dtype.hasobject:
        raise UnsafePickleError(f"refusing to load a NumPy array of dtype {dtype!r}: only arrays of numbers "
                                f"are read")
    if not isinstance(raw, (bytes, bytearray, str)):  # str: a Python 2 pickle read with encoding="latin1"
        raise UnsafePickleError(f"refusing to load a NumPy array whose data is a {type(raw).__name__}, not bytes")


_PLAIN_TYPES = (str, bytes, bytearray, int, float, complex, bool, type(None))


def _unpickle_plain(raw, encoding="ASCII"):
    """Unpickles ``raw`` (bytes) with _SafeUnpickler, then checks that the result is made of plain data and
    NumPy arrays of numbers only (containers nest; a pickle can also make a cycle)."""
    result = _SafeUnpickler(io.BytesIO(raw), encoding=encoding).load()
    pending, seen = [result], set()
    while pending:
        value = pending.pop()
        if isinstance(value, np.ndarray):
            if type(value) is not np.ndarray or value.dtype.kind not in _PICKLE_DTYPE_KINDS or value.dtype.hasobject:
                raise UnsafePickleError(f"refusing a {type(value).__name__} of dtype {value.dtype}: only NumPy "
                                        f"arrays of numbers are read")
        elif isinstance(value, (dict, list, tuple)):
            if id(value) in seen:
                continue
            seen.add(id(value))
            if type(value) not in (dict, list, tuple):
                raise UnsafePickleError(f"refusing a {type(value).__name__}: only plain data and NumPy arrays "
                                        f"are read")
            # keys and values rather than items(): a temporary pair's id could be reused by the next one
            pending.extend(list(value.keys()) + list(value.values()) if isinstance(value, dict) else value)
        elif type(value) not in _PLAIN_TYPES:
            raise UnsafePickleError(f"refusing a {type(value).__name__}: only plain data and NumPy arrays are read")
    return result


def _read_file(path):
    with open(path, "rb") as f:
        return f.read()


def _read_cifar_batch(raw, where):
    """One python-version CIFAR-10 batch: (images (n, 3, 32, 32) uint8, labels (n,) uint8)."""
    try:
        # The batches were pickled by Python 2: encoding="bytes" keeps their str keys as bytes.
        batch = _unpickle_plain(raw, encoding="bytes")
    except Exception as e:  # a corrupt pickle can raise nearly anything
        raise ValueError(f"{where}: not a CIFAR-10 batch ({type(e).__name__}: {e})") from None
    if not isinstance(batch, dict) or b"data" not in batch or b"labels" not in batch:
        raise ValueError(f"{where}: not a CIFAR-10 batch (expected a dict with b'data' and b'labels')")
    images, labels = np.asarray(batch[b"data"]), np.asarray(batch[b"labels"])
    if images.dtype != np.uint8 or images.ndim != 2 or images.shape[1] != 3 * 32 * 32:
        raise ValueError(f"{where}: data is {images.dtype} of shape {images.shape}, expected uint8 (n, 3072)")
    if labels.shape != (images.shape[0],) or labels.dtype.kind not in "iu" or \
            (labels.size and (labels.min() < 0 or labels.max() > 9)):
        raise ValueError(f"{where}: expected {images.shape[0]} labels in 0..9, got {labels.dtype} {labels.shape}")
    return images.reshape(-1, 3, 32, 32), labels.astype(np.uint8)


def _read_cifar_batches(read, where):
    """The training and test sets from the six batches; ``read(name)`` returns a batch file's bytes."""
    arrays = {}
    for part, names in CIFAR10_BATCHES.items():
        batches = [_read_cifar_batch(read(name), f"{where}/{name}") for name in names]
        arrays[part + "_images"] = np.concatenate([images for images, _ in batches])
        arrays[part + "_labels"] = np.concatenate([labels for _, labels in batches])
    return _checked(arrays, where, image_shape=(3, 32, 32))


def _read_cifar_archive(path):
    """Reads the batches straight out of cifar-10-python.tar.gz, without extracting it."""
    path = os.fspath(path)
    try:
        with tarfile.open(path, "r:gz") as archive:
            def read(name):
                try:
                    member = archive.extractfile(f"{CIFAR10_FOLDER}/{name}")
                except KeyError:
                    member = None
                if member is None:
                    raise ValueError(f"{path}: {CIFAR10_FOLDER}/{name} is missing from the archive")
                return member.read()
            return _read_cifar_batches(read, path)
    except (tarfile.TarError, EOFError, OSError, zlib.error) as e:
        raise ValueError(f"{path}: not a readable .tar.gz archive ({e})") from None


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
    """Reads vugrad's mnist.pkl: a dict of flattened uint8 images and uint8 labels, as vugrad's mnist.py
    (save_mnist) writes it. Read with _SafeUnpickler, which refuses anything but plain data and arrays of
    numbers: whoever could write the working directory could otherwise run code as whoever trains in it."""
    where = os.path.abspath(path)
    advice = (f"vgrad reads only vugrad's format of {MNIST_PICKLE}: a dict of NumPy arrays of numbers under the keys "
              f"{', '.join(IDX_FILES)}, as vugrad's mnist.py writes it (any other pickle could run code when "
              f"loaded). Delete {where} to have vgrad read the four MNIST IDX files from {_data_dir('mnist')}/ "
              f"(downloading them there if they are missing), or replace it with a file written by vugrad.")
    with open(path, "rb") as f:
        raw = f.read()
    try:
        stored = _unpickle_plain(raw)
    except UnsafePickleError as e:
        raise UnsafePickleError(f"{where}: {e}.\n{advice}") from None
    except Exception as e:  # a corrupt pickle can raise nearly anything
        raise ValueError(f"{where}: not a readable pickle ({type(e).__name__}: {e}).\n{advice}") from None
    if not isinstance(stored, dict) or not set(IDX_FILES) <= set(stored):
        found = (f"a dict with the keys {', '.join(map(repr, stored))}" if isinstance(stored, dict)
                 else f"a {type(stored).__name__}")
        raise ValueError(f"{where}: expected a dict with keys {', '.join(IDX_FILES)}, found {found}.\n{advice}")
    arrays = {}
    for key in IDX_FILES:
        if not isinstance(stored[key], np.ndarray):
            raise ValueError(f"{where}: {key} is a {type(stored[key]).__name__}, not a NumPy array.\n{advice}")
        arrays[key] = stored[key]
    for key in ("training_images", "test_images"):
        if arrays[key].ndim != 2 or arrays[key].shape[1] != 28 * 28:
            raise ValueError(f"{where}: {key} has shape {arrays[key].shape}, expected (N, 784)")
        arrays[key] = arrays[key].reshape(-1, 28, 28)
    return _checked(arrays, where)


def _checked(arrays, where, image_shape=(28, 28)):
    """Checks the image shape and one label per image."""
    for part in ("training", "test"):
        images, labels = arrays[part + "_images"], arrays[part + "_labels"]
        if images.shape[1:] != image_shape:
            raise ValueError(f"{where}: {part} images are {images.shape[1:]}, expected {image_shape}")
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
