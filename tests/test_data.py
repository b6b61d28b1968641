"""Tests for vgrad.data: load_synth's draws, and the MNIST / Fashion-MNIST loaders on small fake files."""
import gzip
import io
import os
import pickle
import struct
import warnings

import numpy as np
import pytest

from vgrad import data

FILES = {
    "train_x": "train-images-idx3-ubyte.gz",
    "train_y": "train-labels-idx1-ubyte.gz",
    "test_x": "t10k-images-idx3-ubyte.gz",
    "test_y": "t10k-labels-idx1-ubyte.gz",
}
N_TRAIN, N_TEST = 5006, 7  # more than the 5000 held-out validation images, so the split is visible


def idx_bytes(array, type_code=0x08):
    """An IDX file's bytes, built from the format's description (big-endian header and data)."""
    header = bytes([0, 0, type_code, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    big = {0x08: ">u1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4"}[type_code]
    return header + array.astype(big).tobytes()


def write_gz(path, payload):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(gzip.compress(payload, compresslevel=1))


def fake_mnist():
    rng = np.random.default_rng(1234)
    return {
        "train_x": rng.integers(0, 256, (N_TRAIN, 28, 28), dtype=np.uint8),
        "train_y": rng.integers(0, 10, N_TRAIN, dtype=np.uint8),
        "test_x": rng.integers(0, 256, (N_TEST, 28, 28), dtype=np.uint8),
        "test_y": rng.integers(0, 10, N_TEST, dtype=np.uint8),
    }


def write_idx_set(directory, arrays):
    for key, fname in FILES.items():
        write_gz(directory / fname, idx_bytes(arrays[key]))


@pytest.fixture
def mnist(env):
    arrays = fake_mnist()
    write_idx_set(env / "data" / "mnist", arrays)
    return arrays


# ---------------------------------------------------------------- load_synth

def synth_reference(seed, ntotal):
    """The synthetic data written out by hand: x ~ N(0, I), class 1 where x0^2 + 1.5 x0 x1 + 0.2 x1^2 > 0.6."""
    np.random.seed(seed)
    x = np.random.randn(ntotal, 2)
    q = x[:, 0] ** 2 + 1.5 * x[:, 0] * x[:, 1] + 0.2 * x[:, 1] ** 2
    return x, (q > 0.6).astype(np.int64), np.random.randn(3)


@pytest.mark.usefixtures("np_random_state")  # from conftest.py: restores np.random
def test_load_synth_matches_numpy_derivation():
    x, y, next_draw = synth_reference(3, 140)

    np.random.seed(3)
    (xtrain, ytrain), (xval, yval), num_classes = data.load_synth(num_train=100, num_val=40)

    assert num_classes == 2
    assert xtrain.shape == (100, 2) and xval.shape == (40, 2)
    assert ytrain.dtype == np.int64 and yval.dtype == np.int64
    np.testing.assert_array_equal(xtrain, x[:100])
    np.testing.assert_array_equal(xval, x[100:])
    np.testing.assert_array_equal(ytrain, y[:100])
    np.testing.assert_array_equal(yval, y[100:])
    # The global generator is left exactly where the reference left it.
    np.testing.assert_array_equal(np.random.randn(3), next_draw)


@pytest.mark.usefixtures("np_random_state")
def test_load_synth_default_sizes_and_both_classes():
    x, y, _ = synth_reference(0, 70_000)
    np.random.seed(0)
    (xtrain, ytrain), (xval, yval), _ = data.load_synth()
    assert xtrain.shape == (60_000, 2) and ytrain.shape == (60_000,)
    assert xval.shape == (10_000, 2) and yval.shape == (10_000,)
    np.testing.assert_array_equal(np.concatenate([ytrain, yval]), y)
    assert set(np.unique(ytrain)) == {0, 1}


@pytest.mark.usefixtures("np_random_state")
def test_load_synth_seed_argument_seeds_global_generator():
    x, y, next_draw = synth_reference(7, 15)
    np.random.seed(99)  # overridden by seed=7
    (xtrain, ytrain), (xval, yval), _ = data.load_synth(10, 5, seed=7)
    np.testing.assert_array_equal(np.concatenate([xtrain, xval]), x)
    np.testing.assert_array_equal(np.concatenate([ytrain, yval]), y)
    np.testing.assert_array_equal(np.random.randn(3), next_draw)


@pytest.mark.usefixtures("np_random_state")
def test_load_synth_without_seed_continues_global_stream():
    np.random.seed(5)
    np.random.randn(4)
    expected = np.random.randn(6, 2)
    np.random.seed(5)
    np.random.randn(4)
    (xtrain, _), (xval, _), _ = data.load_synth(4, 2)
    np.testing.assert_array_equal(np.concatenate([xtrain, xval]), expected)


# ---------------------------------------------------------------- load_mnist from IDX files

def test_final_unshuffled_returns_files_as_stored(mnist):
    (xtrain, ytrain), (xtest, ytest), num_classes = data.load_mnist(final=True, shuffle_seed=-1)
    assert num_classes == 10
    assert xtrain.dtype == np.uint8 and ytrain.dtype == np.uint8
    assert xtrain.shape == (N_TRAIN, 784) and xtest.shape == (N_TEST, 784)
    np.testing.assert_array_equal(xtrain, mnist["train_x"].reshape(N_TRAIN, 784))
    np.testing.assert_array_equal(ytrain, mnist["train_y"])
    np.testing.assert_array_equal(xtest, mnist["test_x"].reshape(N_TEST, 784))
    np.testing.assert_array_equal(ytest, mnist["test_y"])


def test_not_final_holds_out_last_5000_training_images(mnist):
    (xtrain, ytrain), (xval, yval), _ = data.load_mnist(final=False, shuffle_seed=-1)
    assert xtrain.shape == (N_TRAIN - 5000, 784) and xval.shape == (5000, 784)
    np.testing.assert_array_equal(xtrain, mnist["train_x"][:N_TRAIN - 5000].reshape(-1, 784))
    np.testing.assert_array_equal(ytrain, mnist["train_y"][:N_TRAIN - 5000])
    np.testing.assert_array_equal(xval, mnist["train_x"][N_TRAIN - 5000:].reshape(-1, 784))
    np.testing.assert_array_equal(yval, mnist["train_y"][N_TRAIN - 5000:])


def test_flatten_false_keeps_images_square(mnist):
    (xtrain, _), (xtest, _), _ = data.load_mnist(final=True, flatten=False, shuffle_seed=-1)
    assert xtrain.shape == (N_TRAIN, 28, 28) and xtest.shape == (N_TEST, 28, 28)
    np.testing.assert_array_equal(xtest, mnist["test_x"])


def test_shuffle_uses_train_then_test_permutation(mnist):
    rng = np.random.default_rng(5)
    ptrain, ptest = rng.permutation(N_TRAIN), rng.permutation(N_TEST)

    (xtrain, ytrain), (xtest, ytest), _ = data.load_mnist(final=True, flatten=False, shuffle_seed=5)
    np.testing.assert_array_equal(xtrain, mnist["train_x"][ptrain])
    np.testing.assert_array_equal(ytrain, mnist["train_y"][ptrain])
    np.testing.assert_array_equal(xtest, mnist["test_x"][ptest])
    np.testing.assert_array_equal(ytest, mnist["test_y"][ptest])

    # The validation split is taken after shuffling.
    (_, _), (xval, yval), _ = data.load_mnist(final=False, flatten=False, shuffle_seed=5)
    np.testing.assert_array_equal(yval, mnist["train_y"][ptrain][-5000:])


def test_default_shuffle_seed_is_zero(mnist):
    ptrain = np.random.default_rng(0).permutation(N_TRAIN)
    (_, _), (_, yval), _ = data.load_mnist()
    np.testing.assert_array_equal(yval, mnist["train_y"][ptrain][-5000:])


def test_reads_vugrad_pickle_in_working_directory_first(env, mnist):
    rng = np.random.default_rng(77)
    stored = {  # vugrad's mnist.pkl layout: flattened uint8 images, uint8 labels
        "training_images": rng.integers(0, 256, (5003, 784), dtype=np.uint8),
        "training_labels": rng.integers(0, 10, 5003, dtype=np.uint8),
        "test_images": rng.integers(0, 256, (4, 784), dtype=np.uint8),
        "test_labels": rng.integers(0, 10, 4, dtype=np.uint8),
    }
    with open("mnist.pkl", "wb") as f:
        pickle.dump(stored, f)

    (xtrain, ytrain), (xtest, ytest), _ = data.load_mnist(final=True, shuffle_seed=-1)
    np.testing.assert_array_equal(xtrain, stored["training_images"])
    np.testing.assert_array_equal(ytest, stored["test_labels"])

    (xtrain, _), (xval, _), _ = data.load_mnist(final=False, flatten=False, shuffle_seed=-1)
    assert xtrain.shape == (3, 28, 28) and xval.shape == (5000, 28, 28)
    np.testing.assert_array_equal(xtrain[1], stored["training_images"][1].reshape(28, 28))


def test_pickle_without_idx_files(env):
    stored = {
        "training_images": np.zeros((5001, 784), np.uint8), "training_labels": np.ones(5001, np.uint8),
        "test_images": np.zeros((2, 784), np.uint8), "test_labels": np.ones(2, np.uint8),
    }
    with open("mnist.pkl", "wb") as f:
        pickle.dump(stored, f)
    (xtrain, ytrain), (xval, yval), _ = data.load_mnist()
    assert xtrain.shape == (1, 784) and yval.shape == (5000,)


# ---------------------------------------------------------------- missing and broken files

def test_missing_files_say_where_to_put_them(env):
    with pytest.raises(FileNotFoundError) as err:
        data.load_mnist()
    message = str(err.value)
    assert str(env / "data" / "mnist") in message
    for fname in FILES.values():
        assert fname in message
    assert "mnist.pkl" in message


def test_one_missing_file_is_named(env, mnist):
    (env / "data" / "mnist" / FILES["test_y"]).unlink()
    with pytest.raises(FileNotFoundError, match="missing there: t10k-labels-idx1-ubyte.gz"):
        data.load_mnist()


def test_default_data_directory_is_under_home_cache(env, monkeypatch):
    monkeypatch.delenv("VGRAD_DATA")
    monkeypatch.setenv("HOME", str(env / "home"))
    with pytest.raises(FileNotFoundError) as err:
        data.load_mnist()
    assert os.path.join(str(env / "home"), ".cache", "vgrad", "mnist") in str(err.value)

    write_idx_set(env / "home" / ".cache" / "vgrad" / "mnist", fake_mnist())
    (xtrain, _), _, _ = data.load_mnist(final=True)
    assert xtrain.shape == (N_TRAIN, 784)


def test_truncated_gzip_raises_value_error_naming_file(env, mnist):
    path = env / "data" / "mnist" / FILES["train_x"]
    path.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(ValueError, match=FILES["train_x"]):
        data.load_mnist()


def test_truncated_idx_payload_raises_value_error(env, mnist):
    path = env / "data" / "mnist" / FILES["test_y"]
    write_gz(path, idx_bytes(mnist["test_y"])[:-1])
    with pytest.raises(ValueError, match=f"{FILES['test_y']}.*truncated"):
        data.load_mnist()


def test_trailing_bytes_raise_value_error(tmp_path):
    path = tmp_path / "x.idx"
    path.write_bytes(idx_bytes(np.arange(6, dtype=np.uint8)) + b"\0")
    with pytest.raises(ValueError, match="trailing"):
        data.read_idx(path)


def test_bad_magic_raises_value_error(env, mnist):
    path = env / "data" / "mnist" / FILES["train_y"]
    write_gz(path, b"\x12\x34" + idx_bytes(mnist["train_y"])[2:])
    with pytest.raises(ValueError, match=f"{FILES['train_y']}.*magic"):
        data.load_mnist()


def test_label_count_mismatch_raises_value_error(env, mnist):
    write_gz(env / "data" / "mnist" / FILES["test_y"], idx_bytes(mnist["test_y"][:-1]))
    with pytest.raises(ValueError, match="labels"):
        data.load_mnist()


def test_wrong_image_size_raises_value_error(env, mnist):
    write_gz(env / "data" / "mnist" / FILES["test_x"], idx_bytes(np.zeros((N_TEST, 14, 14), np.uint8)))
    with pytest.raises(ValueError, match=r"\(28, 28\)"):
        data.load_mnist()


# ---------------------------------------------------------------- read_idx on its own

def test_read_idx_uncompressed_multibyte_types(tmp_path):
    ints = np.array([[1, -2, 70000], [3, 4, -5]], dtype=np.int32)
    path = tmp_path / "ints.idx"
    path.write_bytes(idx_bytes(ints, 0x0C))
    out = data.read_idx(path)
    assert out.dtype == np.int32 and out.dtype.isnative
    np.testing.assert_array_equal(out, ints)

    floats = np.array([0.5, -1.25], dtype=np.float32)
    write_gz(tmp_path / "floats.idx.gz", idx_bytes(floats, 0x0D))
    np.testing.assert_array_equal(data.read_idx(tmp_path / "floats.idx.gz"), floats)


def test_read_idx_truncated_header(tmp_path):
    path = tmp_path / "short.idx"
    path.write_bytes(bytes([0, 0, 0x08, 3]) + struct.pack(">I", 10))
    with pytest.raises(ValueError, match="short.idx"):
        data.read_idx(path)


# ---------------------------------------------------------------- Fashion-MNIST

def test_fashion_mnist_from_system_directory(env, monkeypatch):
    arrays = fake_mnist()
    write_idx_set(env / "system", arrays)
    monkeypatch.setattr(data, "SYSTEM_FASHION_DIR", str(env / "system"))
    (xtrain, ytrain), (xtest, _), num_classes = data.load_fashion_mnist(final=True, shuffle_seed=-1)
    assert num_classes == 10
    np.testing.assert_array_equal(ytrain, arrays["train_y"])
    np.testing.assert_array_equal(xtest, arrays["test_x"].reshape(N_TEST, 784))


def test_fashion_mnist_prefers_vgrad_data_directory(env, monkeypatch):
    write_idx_set(env / "system", fake_mnist())
    monkeypatch.setattr(data, "SYSTEM_FASHION_DIR", str(env / "system"))
    mine = fake_mnist()
    mine["train_y"] = (mine["train_y"] + 1) % 10
    write_idx_set(env / "data" / "fashion-mnist", mine)
    (_, ytrain), _, _ = data.load_fashion_mnist(final=True, shuffle_seed=-1)
    np.testing.assert_array_equal(ytrain, mine["train_y"])


def test_fashion_mnist_missing(env):
    with pytest.raises(FileNotFoundError) as err:
        data.load_fashion_mnist()
    assert str(env / "data" / "fashion-mnist") in str(err.value)
    assert "train-images-idx3-ubyte.gz" in str(err.value)


@pytest.mark.skipif(not os.path.isdir("/usr/share/datasets/fashion-mnist"),
                    reason="Debian's dataset-fashion-mnist package is not installed")
def test_real_fashion_mnist_from_debian_package(monkeypatch, tmp_path):
    monkeypatch.setenv("VGRAD_DATA", str(tmp_path))
    (xtrain, ytrain), (xtest, ytest), _ = data.load_fashion_mnist(final=True, flatten=False, shuffle_seed=-1)
    assert xtrain.shape == (60_000, 28, 28) and xtest.shape == (10_000, 28, 28)
    np.testing.assert_array_equal(np.bincount(ytrain), [6000] * 10)
    np.testing.assert_array_equal(np.bincount(ytest), [1000] * 10)
    np.testing.assert_array_equal(ytrain[:5], [9, 0, 0, 3, 0])  # the published first labels


# ---------------------------------------------------------------- mnist.pkl is read without running code

def vugrad_mnist_pickle(directory):
    """The dict that vugrad's mnist.py (save_mnist) pickles into mnist.pkl, made as it makes it: np.frombuffer
    over each decompressed IDX file, images flattened to (N, 784), keyed like vugrad's `filename` table. A small
    data set (read with final=True), so that the many pickles made here stay quick."""
    rng = np.random.default_rng(99)
    arrays = {"train_x": rng.integers(0, 256, (12, 28, 28), dtype=np.uint8),
              "train_y": rng.integers(0, 10, 12, dtype=np.uint8),
              "test_x": rng.integers(0, 256, (3, 28, 28), dtype=np.uint8),
              "test_y": rng.integers(0, 10, 3, dtype=np.uint8)}
    write_idx_set(directory, arrays)
    mnist = {}
    for key, name in [("training_images", "train_x"), ("test_images", "test_x")]:
        with gzip.open(directory / FILES[name], "rb") as f:
            mnist[key] = np.frombuffer(f.read(), np.uint8, offset=16).reshape(-1, 28 * 28)
    for key, name in [("training_labels", "train_y"), ("test_labels", "test_y")]:
        with gzip.open(directory / FILES[name], "rb") as f:
            mnist[key] = np.frombuffer(f.read(), np.uint8, offset=8)
    return arrays, mnist


@pytest.mark.parametrize("protocol", range(pickle.HIGHEST_PROTOCOL + 1))
def test_vugrad_mnist_pickle_loads(env, protocol):
    arrays, mnist = vugrad_mnist_pickle(env / "idx")
    with open("mnist.pkl", "wb") as f:
        pickle.dump(mnist, f, protocol=protocol)
    (xtrain, ytrain), (xtest, ytest), _ = data.load_mnist(final=True, flatten=False, shuffle_seed=-1)
    np.testing.assert_array_equal(xtrain, arrays["train_x"])
    np.testing.assert_array_equal(ytrain, arrays["train_y"])
    np.testing.assert_array_equal(xtest, arrays["test_x"])
    np.testing.assert_array_equal(ytest, arrays["test_y"])


def old_numpy_pickle(obj, protocol, monkeypatch):
    """obj pickled as NumPy 1.x pickles it: its array functions under numpy.core, not NumPy 2's numpy._core.
    (The pure-Python pickler asks pickle.whichmodule for each function's module; NumPy 2 still answers to the
    old module name, so the pickler's check that the name leads back to the function passes.)"""
    real = pickle.whichmodule
    monkeypatch.setattr(pickle, "whichmodule", lambda o, name: real(o, name).replace("numpy._core", "numpy.core"))
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # NumPy 2: numpy.core is deprecated
        pickle._Pickler(buffer, protocol).dump(obj)
    monkeypatch.setattr(pickle, "whichmodule", real)
    raw = buffer.getvalue()
    assert b"numpy.core." in raw and b"numpy._core" not in raw
    return raw


@pytest.mark.parametrize("protocol", [2, 4, 5])
def test_mnist_pickle_written_by_numpy_1_loads(env, protocol, monkeypatch):
    arrays, mnist = vugrad_mnist_pickle(env / "idx")
    (env / "cwd" / "mnist.pkl").write_bytes(old_numpy_pickle(mnist, protocol, monkeypatch))
    (xtrain, _), (_, ytest), _ = data.load_mnist(final=True, flatten=False, shuffle_seed=-1)
    np.testing.assert_array_equal(xtrain, arrays["train_x"])
    np.testing.assert_array_equal(ytest, arrays["test_y"])


class RunsAShellCommand:
    def __reduce__(self):
        return (os.system, ("touch marker",))


@pytest.mark.parametrize("protocol", range(pickle.HIGHEST_PROTOCOL + 1))
def test_mnist_pickle_that_runs_code_is_refused(env, protocol):
    _, mnist = vugrad_mnist_pickle(env / "idx")
    mnist["training_labels"] = RunsAShellCommand()
    with open("mnist.pkl", "wb") as f:
        pickle.dump(mnist, f, protocol=protocol)
    with pytest.raises(data.UnsafePickleError) as err:
        data.load_mnist()
    assert not os.path.exists("marker") and not (env / "marker").exists()
    message = str(err.value)
    assert f"{os.system.__module__}.system" in message  # what it found
    assert os.path.abspath("mnist.pkl") in message
    assert "vugrad's format" in message and "a dict of NumPy arrays" in message  # what vgrad reads
    assert "Delete" in message and "IDX files" in message  # what to do
    assert isinstance(err.value, ValueError)


@pytest.mark.parametrize("culprit", [
    "builtins.eval", "subprocess.Popen", "numpy.load", "numpy.matrix", "pickle.loads", "builtins.getattr"])
def test_mnist_pickle_naming_any_other_global_is_refused(env, culprit):
    module, name = culprit.rsplit(".", 1)
    # GLOBAL then a call with one string: what any pickle that runs something looks like (protocol 0)
    payload = f"c{module}\n{name}\n(Vprint(1)\ntR.".encode()
    (env / "cwd" / "mnist.pkl").write_bytes(payload)
    with pytest.raises(data.UnsafePickleError, match=f"refusing to load {culprit}"):
        data.load_mnist()


def test_mnist_pickle_with_an_object_array_is_refused(env):
    _, mnist = vugrad_mnist_pickle(env / "idx")
    mnist["test_labels"] = np.array([1, "two", None], dtype=object)
    with open("mnist.pkl", "wb") as f:
        pickle.dump(mnist, f)
    with pytest.raises(data.UnsafePickleError, match="dtype object"):
        data.load_mnist()


def test_mnist_pickle_with_a_structured_array_is_refused(env):
    _, mnist = vugrad_mnist_pickle(env / "idx")
    mnist["test_labels"] = np.zeros(3, dtype=[("a", "u1"), ("b", "O")])
    with open("mnist.pkl", "wb") as f:
        pickle.dump(mnist, f)
    with pytest.raises(data.UnsafePickleError, match="refusing to load a NumPy array of dtype"):
        data.load_mnist()


def test_mnist_pickle_with_a_uint8_dtype_flagged_as_holding_objects_is_refused(env):
    # numpy.dtype's __setstate__ takes the flags as given: a uint8 dtype flagged "holds objects" makes NumPy
    # treat the bytes as object pointers. Such a state is refused before it reaches NumPy.
    _, mnist = vugrad_mnist_pickle(env / "idx")
    raw = pickle.dumps(mnist, protocol=2)
    plain_state = b"NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00t"  # (..., None, None, None, -1, -1, 0)
    assert plain_state in raw
    (env / "cwd" / "mnist.pkl").write_bytes(raw.replace(plain_state, plain_state.replace(b"K\x00t", b"K?t")))
    with pytest.raises(data.UnsafePickleError, match="not that of a plain uint8"):
        data.load_mnist()


def test_mnist_pickle_that_is_not_a_dict_of_arrays_says_what_it_holds(env):
    with open("mnist.pkl", "wb") as f:
        pickle.dump([1, 2, 3], f)
    with pytest.raises(ValueError, match="found a list") as err:
        data.load_mnist()
    assert "a dict of NumPy arrays" in str(err.value)
    _, mnist = vugrad_mnist_pickle(env / "idx")
    mnist["test_labels"] = mnist["test_labels"].tolist()
    with open("mnist.pkl", "wb") as f:
        pickle.dump(mnist, f)
    with pytest.raises(ValueError, match="test_labels is a list, not a NumPy array"):
        data.load_mnist()
    (env / "cwd" / "mnist.pkl").write_bytes(b"not a pickle")
    with pytest.raises(ValueError, match="not a readable pickle"):
        data.load_mnist()
