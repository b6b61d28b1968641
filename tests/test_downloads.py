"""The loaders' download path, run against a local HTTP server on 127.0.0.1 that serves small files made here.

The server can serve a file whole, cut short while announcing the full length (a server that stops
mid-transfer), or cut short with a matching length (a truncated file). The canonical checksums are replaced
with the small files' own (computed here with hashlib), except where a test checks what a mismatch does.
"""
import gzip
import hashlib
import io
import os
import pickle
import signal
import struct
import subprocess
import sys
import tarfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest

import vgrad
from vgrad import data

IDX_NAMES = {
    "training_images": "train-images-idx3-ubyte.gz",
    "training_labels": "train-labels-idx1-ubyte.gz",
    "test_images": "t10k-images-idx3-ubyte.gz",
    "test_labels": "t10k-labels-idx1-ubyte.gz",
}


# ---------------------------------------------------------------- the server

class Server:
    """Serves `files` (URL path -> bytes); `modes` (URL path -> 'stop', 'short' or 'hang') misbehave."""

    def __init__(self):
        self.files, self.modes, self.requests = {}, {}, []
        self.release = threading.Event()  # ends the 'hang' mode's wait
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                server.requests.append(self.path)
                body = server.files.get(self.path)
                if body is None:
                    self.send_error(404)
                    return
                mode = server.modes.get(self.path)
                if mode == "short":  # a truncated file, served as if complete
                    body = body[: len(body) // 2]
                self.send_response(200)
                self.send_header("Content-Type", "application/octet-stream")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if mode in ("stop", "hang"):  # announces everything, sends half, then hangs up (or waits)
                    self.wfile.write(body[: len(body) // 2])
                    self.wfile.flush()
                    if mode == "hang":
                        server.release.wait(60)
                    self.close_connection = True
                    return
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    def close(self):
        self.release.set()
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join()


@pytest.fixture
def server():
    s = Server()
    yield s
    s.close()




def leftovers(directory):
    """Temporary files of unfinished downloads."""
    return [f for f in os.listdir(directory) if f.endswith(".part")] if os.path.isdir(directory) else []


# ---------------------------------------------------------------- small data sets, made from the formats' specs

def idx_gz(array):
    header = bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    return gzip.compress(header + array.astype(np.uint8).tobytes(), compresslevel=1)


def fake_idx_set(seed):
    rng = np.random.default_rng(seed)
    arrays = {
        "training_images": rng.integers(0, 256, (20, 28, 28), dtype=np.uint8),
        "training_labels": rng.integers(0, 10, 20, dtype=np.uint8),
        "test_images": rng.integers(0, 256, (6, 28, 28), dtype=np.uint8),
        "test_labels": rng.integers(0, 10, 6, dtype=np.uint8),
    }
    return arrays, {IDX_NAMES[k]: idx_gz(v) for k, v in arrays.items()}


def checksums(files):
    return {name: (len(body), hashlib.sha256(body).hexdigest()) for name, body in files.items()}


def serve(server, monkeypatch, name, folder, files, variable):
    """Puts `files` on the server under /folder/ and points the data set's mirror variable and checksums there."""
    for fname, body in files.items():
        server.files[f"/{folder}/{fname}"] = body
    monkeypatch.setenv(variable, f"{server.url}/{folder}/")
    monkeypatch.setitem(data.CHECKSUMS, name, checksums(files))


@pytest.fixture
def mnist_served(env, server, monkeypatch):
    arrays, files = fake_idx_set(1)
    serve(server, monkeypatch, "mnist", "mnist", files, "VGRAD_MNIST_URL")
    return arrays, files


# ---------------------------------------------------------------- MNIST and Fashion-MNIST

def test_downloads_missing_mnist_then_reads_it_locally(env, server, mnist_served, capsys):
    arrays, files = mnist_served
    (xtrain, ytrain), (xtest, ytest), _ = data.load_mnist(final=True, flatten=False, shuffle_seed=-1)
    np.testing.assert_array_equal(xtrain, arrays["training_images"])
    np.testing.assert_array_equal(ytrain, arrays["training_labels"])
    np.testing.assert_array_equal(xtest, arrays["test_images"])
    np.testing.assert_array_equal(ytest, arrays["test_labels"])

    target = env / "data" / "mnist"
    for fname, body in files.items():
        assert (target / fname).read_bytes() == body
    assert leftovers(target) == []
    assert sorted(server.requests) == sorted(f"/mnist/{f}" for f in files)
    err = capsys.readouterr().err
    assert "downloading train-images-idx3-ubyte.gz" in err and "100%" in err  # tqdm's bar

    data.load_mnist(final=True)  # now from disk: no new requests
    assert len(server.requests) == 4


def test_downloads_only_the_missing_files(env, server, mnist_served):
    arrays, files = mnist_served
    target = env / "data" / "mnist"
    target.mkdir(parents=True)
    for fname in ("train-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"):
        (target / fname).write_bytes(files[fname])
    (_, ytrain), _, _ = data.load_mnist(final=True, shuffle_seed=-1)
    np.testing.assert_array_equal(ytrain, arrays["training_labels"])
    assert sorted(server.requests) == ["/mnist/t10k-images-idx3-ubyte.gz", "/mnist/train-labels-idx1-ubyte.gz"]


def test_mirror_url_without_trailing_slash(env, server, mnist_served, monkeypatch):
    monkeypatch.setenv("VGRAD_MNIST_URL", f"{server.url}/mnist")
    data.load_mnist(final=True)
    assert len(server.requests) == 4


@pytest.mark.parametrize("with_checksums", [True, False])
def test_server_stopping_mid_transfer_leaves_nothing(env, server, mnist_served, monkeypatch, with_checksums):
    if not with_checksums:  # then only the announced length can tell
        monkeypatch.setitem(data.CHECKSUMS, "mnist", {})
    server.modes["/mnist/train-images-idx3-ubyte.gz"] = "stop"
    with pytest.raises(data.DownloadError) as err:
        data.load_mnist(final=True)
    message = str(err.value)
    assert "train-images-idx3-ubyte.gz" in message and "stopped after" in message
    target = env / "data" / "mnist"
    assert not (target / "train-images-idx3-ubyte.gz").exists()
    assert leftovers(target) == []


def test_truncated_file_fails_its_size_check(env, server, mnist_served):
    server.modes["/mnist/t10k-images-idx3-ubyte.gz"] = "short"
    _, files = mnist_served
    with pytest.raises(data.DownloadError) as err:
        data.load_mnist(final=True)
    size = len(files["t10k-images-idx3-ubyte.gz"])
    assert f"got {size // 2} bytes, but the canonical t10k-images-idx3-ubyte.gz has {size}" in str(err.value)
    target = env / "data" / "mnist"
    assert not (target / "t10k-images-idx3-ubyte.gz").exists() and leftovers(target) == []


def test_truncated_file_without_checksums_fails_to_parse(env, server, mnist_served, monkeypatch):
    monkeypatch.setitem(data.CHECKSUMS, "mnist", {})
    server.modes["/mnist/train-labels-idx1-ubyte.gz"] = "short"
    with pytest.raises(data.DownloadError, match="train-labels-idx1-ubyte.gz.*not valid"):
        data.load_mnist(final=True)
    target = env / "data" / "mnist"
    assert not (target / "train-labels-idx1-ubyte.gz").exists() and leftovers(target) == []


def test_file_that_is_not_the_canonical_one_is_refused(env, server, mnist_served):
    _, files = mnist_served
    body = bytearray(files["train-labels-idx1-ubyte.gz"])
    body[-9] ^= 0xFF  # same size, one byte changed (in the gzip trailer, so it would still be gzip-like)
    server.files["/mnist/train-labels-idx1-ubyte.gz"] = bytes(body)
    with pytest.raises(data.DownloadError) as err:
        data.load_mnist(final=True)
    assert f"{hashlib.sha256(bytes(body)).hexdigest()}" in str(err.value)
    assert checksums(files)["train-labels-idx1-ubyte.gz"][1] in str(err.value)


def test_http_error_is_reported(env, server, mnist_served):
    del server.files["/mnist/t10k-labels-idx1-ubyte.gz"]
    with pytest.raises(data.DownloadError, match="HTTP error 404"):
        data.load_mnist(final=True)


def test_offline_fails_at_the_first_file_saying_where_to_put_the_files(env, monkeypatch):
    calls = []
    real = data.download
    monkeypatch.setattr(data, "download", lambda url, path, **kw: (calls.append(url), real(url, path, **kw)))
    with pytest.raises(FileNotFoundError) as err:  # DownloadError is a FileNotFoundError
        data.load_mnist()
    assert isinstance(err.value, data.DownloadError)
    assert isinstance(err.value.__cause__, OSError)  # connection refused, not a timeout
    assert len(calls) == 1  # gave up at once instead of trying each file
    message = str(err.value)
    assert str(env / "data" / "mnist") in message
    for fname in IDX_NAMES.values():
        assert fname in message
    assert "$VGRAD_MNIST_URL" in message and "mnist.pkl" in message
    assert leftovers(env / "data" / "mnist") == []


def test_default_mirrors_are_the_public_ones(env, monkeypatch):
    monkeypatch.delenv("VGRAD_MNIST_URL")
    urls = []

    def fake_download(url, path, **kw):
        urls.append(url)
        raise data.DownloadError(f"{url}: offline")

    monkeypatch.setattr(data, "download", fake_download)
    with pytest.raises(data.DownloadError):
        data.load_mnist()
    assert urls == ["https://storage.googleapis.com/cvdf-datasets/mnist/train-images-idx3-ubyte.gz"]


def test_fashion_mnist_downloads_when_no_copy_is_found(env, server, monkeypatch):
    arrays, files = fake_idx_set(2)
    serve(server, monkeypatch, "fashion-mnist", "fashion", files, "VGRAD_FASHION_MNIST_URL")
    (_, ytrain), (xtest, _), _ = data.load_fashion_mnist(final=True, shuffle_seed=-1)
    np.testing.assert_array_equal(ytrain, arrays["training_labels"])
    np.testing.assert_array_equal(xtest, arrays["test_images"].reshape(6, 784))
    assert (env / "data" / "fashion-mnist" / "t10k-images-idx3-ubyte.gz").read_bytes() == \
        files["t10k-images-idx3-ubyte.gz"]


def test_fashion_mnist_offline(env):
    with pytest.raises(data.DownloadError) as err:
        data.load_fashion_mnist()
    assert str(env / "data" / "fashion-mnist") in str(err.value)
    assert "$VGRAD_FASHION_MNIST_URL" in str(err.value)


# ---------------------------------------------------------------- download() on its own

def test_failed_download_keeps_an_existing_file(tmp_path, server):
    server.files["/f.bin"] = b"new contents" * 100
    server.modes["/f.bin"] = "stop"
    path = tmp_path / "f.bin"
    path.write_bytes(b"old")
    with pytest.raises(data.DownloadError):
        data.download(f"{server.url}/f.bin", str(path), progress=False)
    assert path.read_bytes() == b"old" and leftovers(tmp_path) == []


def test_interrupt_removes_the_temporary_file(tmp_path, server):
    server.files["/f.bin"] = b"x" * 1000

    def interrupted(temporary):
        assert os.path.getsize(temporary) == 1000  # the whole file is in the temporary before the check
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        data.download(f"{server.url}/f.bin", str(tmp_path / "f.bin"), check=interrupted, progress=False)
    assert os.listdir(tmp_path) == []


def test_download_creates_the_directory(tmp_path, server):
    server.files["/f.bin"] = b"abc"
    target = tmp_path / "a" / "b" / "f.bin"
    data.download(f"{server.url}/f.bin", str(target), size=3, sha256=hashlib.sha256(b"abc").hexdigest(),
                  progress=False)
    assert target.read_bytes() == b"abc"


# ---------------------------------------------------------------- what a killed download leaves behind

# Holds an exclusive flock on a file, as a live download holds one on its temporary file, until killed.
LOCKER = """
import fcntl, os, sys, time
fd = os.open(sys.argv[1], os.O_RDWR)
fcntl.flock(fd, fcntl.LOCK_EX)
print("locked", flush=True)
time.sleep(300)
"""


def backdate(path, seconds=3600):
    then = time.time() - seconds
    os.utime(path, (then, then))


def child_env():
    return dict(os.environ, PYTHONPATH=os.path.dirname(os.path.dirname(os.path.abspath(vgrad.__file__))))


@pytest.fixture
def processes():
    """Child processes started by a test; killed (SIGKILL) at its end if still alive."""
    started = []
    yield started
    for proc in started:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=30)


def test_stale_partial_downloads_are_removed_and_live_ones_kept(env, server, mnist_served, processes):
    target = env / "data" / "mnist"
    target.mkdir(parents=True)
    stale = target / ".train-images-idx3-ubyte.gz.k1ll3d00.part"  # its process was killed an hour ago
    stale.write_bytes(b"the first half")
    backdate(stale)
    live = target / ".train-labels-idx1-ubyte.gz.a1ive000.part"  # another process's download, in progress
    live.write_bytes(b"in progress")
    backdate(live)  # a download stalled for an hour, or whose process is stopped: still alive, still locked
    processes.append(subprocess.Popen([sys.executable, "-c", LOCKER, str(live)], stdout=subprocess.PIPE, text=True))
    assert processes[0].stdout.readline().strip() == "locked"
    fresh = target / ".t10k-images-idx3-ubyte.gz.n3wf1le0.part"  # just made, not yet locked by its download
    fresh.write_bytes(b"")
    unrelated = target / "notes.part"  # not a name vgrad gives its temporary files
    unrelated.write_bytes(b"mine")
    backdate(unrelated)

    arrays, _ = mnist_served
    (_, ytrain), _, _ = data.load_mnist(final=True, shuffle_seed=-1)
    np.testing.assert_array_equal(ytrain, arrays["training_labels"])
    assert not stale.exists()
    assert live.read_bytes() == b"in progress" and fresh.exists() and unrelated.read_bytes() == b"mine"

    processes[0].kill()  # SIGKILL: the other download dies without cleaning up; the kernel drops its lock
    processes[0].wait(timeout=30)
    data.load_mnist(final=True)  # every file is there now: no download, but the loader still cleans up
    assert not live.exists()
    assert fresh.exists() and unrelated.exists()
    assert len(server.requests) == 4


def test_download_killed_with_sigkill_is_cleaned_up_by_the_next_call(env, server, monkeypatch, processes):
    arrays, files = fake_idx_set(5)
    # Incompressible images, so that the half served before the server stalls fills a few of download's reads.
    arrays["training_images"] = np.random.default_rng(5).integers(0, 256, (400, 28, 28), dtype=np.uint8)
    arrays["training_labels"] = np.zeros(400, np.uint8)
    files = {IDX_NAMES[k]: idx_gz(v) for k, v in arrays.items()}
    serve(server, monkeypatch, "mnist", "mnist", files, "VGRAD_MNIST_URL")
    name = "train-images-idx3-ubyte.gz"
    target = env / "data" / "mnist"
    server.modes[f"/mnist/{name}"] = "hang"

    code = "import sys; from vgrad import data; data.download(sys.argv[1], sys.argv[2], timeout=300, progress=False)"
    processes.append(subprocess.Popen([sys.executable, "-c", code, f"{server.url}/mnist/{name}", str(target / name)],
                                      env=child_env()))
    deadline = time.monotonic() + 60
    while not (leftovers(target) and os.path.getsize(target / leftovers(target)[0]) >= 1 << 16):
        assert time.monotonic() < deadline and processes[0].poll() is None, "the download did not start"
        time.sleep(0.05)
    part = target / leftovers(target)[0]
    assert part.name.startswith(f".{name}.")

    backdate(part)  # even when it looks old, a live download's file is not touched: its process holds the lock
    data._remove_stale_parts(str(target), [name])
    assert part.exists()

    processes[0].send_signal(signal.SIGKILL)
    processes[0].wait(timeout=30)
    assert part.exists()  # what SIGKILL leaves: no handler ran
    backdate(part)

    del server.modes[f"/mnist/{name}"]
    (xtrain, _), _, _ = data.load_mnist(final=True, flatten=False, shuffle_seed=-1)
    np.testing.assert_array_equal(xtrain, arrays["training_images"])
    assert leftovers(target) == []


def test_recent_part_files_are_left_alone(tmp_path):
    # A download creates its temporary file, then locks it: a moment when a live download's file is unlocked.
    part = tmp_path / ".f.bin.abcd1234.part"
    part.write_bytes(b"")
    backdate(part, data.STALE_PART_SECONDS - 10)
    data._remove_stale_parts(str(tmp_path), ["f.bin"])
    assert part.exists()
    backdate(part, data.STALE_PART_SECONDS + 10)
    data._remove_stale_parts(str(tmp_path), ["f.bin"])
    assert not part.exists()


def test_without_locks_only_day_old_part_files_are_removed(tmp_path, monkeypatch):
    monkeypatch.setattr(data, "fcntl", None)  # Windows, say: a live download's file cannot be told by its lock
    hours, days = tmp_path / ".f.bin.hours000.part", tmp_path / ".f.bin.days0000.part"
    for path, age in ((hours, 3 * 3600), (days, 2 * 24 * 3600)):
        path.write_bytes(b"x")
        backdate(path, age)
    data._remove_stale_parts(str(tmp_path), ["f.bin"])
    assert hours.exists() and not days.exists()


# ---------------------------------------------------------------- CIFAR-10

def cifar_batch(images, labels, name):
    """A batch as the python version stores it: a Python-2-style pickle of a dict with bytes keys."""
    batch = {b"batch_label": name.encode(), b"labels": [int(v) for v in labels],
             b"data": images.reshape(len(images), 3072), b"filenames": [b"x.png"] * len(images)}
    return pickle.dumps(batch, protocol=2)


def fake_cifar(per_batch=4, seed=3):
    """The six batches' images and labels; images are mostly zero so the archive compresses well."""
    rng = np.random.default_rng(seed)
    batches = {}
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        images = np.zeros((per_batch, 3, 32, 32), np.uint8)
        images[:, :, :4, :4] = rng.integers(0, 256, (per_batch, 3, 4, 4))
        batches[name] = (images, rng.integers(0, 10, per_batch))
    return batches


def cifar_archive(batches, extra=None):
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, (images, labels) in batches.items():
            payload = extra.get(name) if extra and name in extra else cifar_batch(images, labels, name)
            info = tarfile.TarInfo(f"cifar-10-batches-py/{name}")
            info.size = len(payload)
            tar.addfile(info, io.BytesIO(payload))
    return buffer.getvalue()


def test_cifar10_download_and_layout(env, server, monkeypatch):
    batches = fake_cifar()
    archive = cifar_archive(batches)
    serve(server, monkeypatch, "cifar10", "kriz", {"cifar-10-python.tar.gz": archive}, "VGRAD_CIFAR10_URL")
    # One pixel put where the format says it goes: green plane (1024 bytes in), row 2, column 3.
    (xtrain, ytrain), (xtest, ytest), num_classes = data.load_cifar10(final=True, shuffle_seed=-1)
    assert num_classes == 10
    assert xtrain.shape == (20, 3, 32, 32) and xtrain.dtype == np.uint8 and ytrain.dtype == np.uint8
    assert xtest.shape == (4, 3, 32, 32)
    images = np.concatenate([batches[f"data_batch_{i}"][0] for i in range(1, 6)])
    flat = images.reshape(20, 3072)
    np.testing.assert_array_equal(xtrain[:, 1, 2, 3], flat[:, 1024 + 2 * 32 + 3])
    np.testing.assert_array_equal(xtrain, images)
    np.testing.assert_array_equal(ytrain, np.concatenate([batches[f"data_batch_{i}"][1] for i in range(1, 6)]))
    np.testing.assert_array_equal(ytest, batches["test_batch"][1])
    assert (env / "data" / "cifar10" / "cifar-10-python.tar.gz").read_bytes() == archive

    (xflat, _), _, _ = data.load_cifar10(final=True, flatten=True, shuffle_seed=-1)
    np.testing.assert_array_equal(xflat, flat)
    assert server.requests == ["/kriz/cifar-10-python.tar.gz"]  # the second call read the local copy


def test_cifar10_validation_split_and_shuffle(env, server, monkeypatch):
    batches = fake_cifar(per_batch=1001)
    archive = cifar_archive(batches)
    (env / "data" / "cifar10").mkdir(parents=True)
    (env / "data" / "cifar10" / "cifar-10-python.tar.gz").write_bytes(archive)
    labels = np.concatenate([batches[f"data_batch_{i}"][1] for i in range(1, 6)])
    p = np.random.default_rng(4).permutation(5005)
    (xtrain, ytrain), (xval, yval), _ = data.load_cifar10(shuffle_seed=4)
    assert xtrain.shape == (5, 3, 32, 32) and xval.shape == (5000, 3, 32, 32)
    np.testing.assert_array_equal(np.concatenate([ytrain, yval]), labels[p])
    assert server.requests == []


def test_cifar10_extracted_folder(env, server):
    batches = fake_cifar()
    folder = env / "data" / "cifar10" / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    for name, (images, labels) in batches.items():
        (folder / name).write_bytes(cifar_batch(images, labels, name))
    (_, _), (xtest, ytest), _ = data.load_cifar10(final=True, shuffle_seed=-1)
    np.testing.assert_array_equal(xtest, batches["test_batch"][0])
    assert server.requests == []


class Boom:
    def __reduce__(self):
        return (os.system, ("echo should-not-run",))


def test_cifar10_refuses_pickles_that_run_code(env, server, monkeypatch):
    batches = fake_cifar()
    evil = pickle.dumps({b"data": Boom(), b"labels": []}, protocol=2)
    archive = cifar_archive(batches, extra={"data_batch_3": evil})
    (env / "data" / "cifar10").mkdir(parents=True)
    (env / "data" / "cifar10" / "cifar-10-python.tar.gz").write_bytes(archive)
    ran = []
    monkeypatch.setattr(os, "system", lambda *a: ran.append(a))
    with pytest.raises(ValueError, match="data_batch_3.*refusing to load"):
        data.load_cifar10()
    assert ran == []


def python2_cifar_batch(images, labels):
    """A batch byte for byte as Python 2's cPickle (protocol 2) and NumPy 1.x wrote the real ones: str as
    SHORT_BINSTRING/BINSTRING (bytes when read with encoding="bytes"), NumPy under numpy.core."""
    def short(b):
        return b"U" + bytes([len(b)]) + b
    n = len(images)
    out = b"\x80\x02}(" + short(b"data")
    out += b"cnumpy.core.multiarray\n_reconstruct\ncnumpy\nndarray\nK\x00\x85" + short(b"b") + b"\x87R"
    out += b"(K\x01M" + struct.pack("<H", n) + b"M\x00\x0c\x86cnumpy\ndtype\n" + short(b"u1") + b"K\x00K\x01\x87R"
    out += b"(K\x03" + short(b"|") + b"NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00tb\x89"
    out += b"T" + struct.pack("<I", n * 3072) + images.reshape(n, 3072).tobytes() + b"tb"
    out += short(b"labels") + b"](" + b"".join(b"K" + bytes([int(v)]) for v in labels) + b"e"
    return out + short(b"batch_label") + short(b"training batch 1 of 5") + b"u."


def test_cifar10_batches_pickled_by_python_2_load(env):
    batches = fake_cifar()
    raw = python2_cifar_batch(*batches["data_batch_1"])
    assert pickle.loads(raw, encoding="bytes")[b"labels"] == list(batches["data_batch_1"][1])  # the format is right
    archive = cifar_archive(batches, extra={name: python2_cifar_batch(*batch) for name, batch in batches.items()})
    (env / "data" / "cifar10").mkdir(parents=True)
    (env / "data" / "cifar10" / "cifar-10-python.tar.gz").write_bytes(archive)
    (xtrain, ytrain), (xtest, ytest), _ = data.load_cifar10(final=True, shuffle_seed=-1)
    np.testing.assert_array_equal(xtrain, np.concatenate([batches[f"data_batch_{i}"][0] for i in range(1, 6)]))
    np.testing.assert_array_equal(ytest, batches["test_batch"][1])


def test_cifar10_batch_with_an_object_array_is_refused(env):
    batches = fake_cifar()
    evil = pickle.dumps({b"data": np.array([1, "x"], dtype=object), b"labels": []}, protocol=2)
    (env / "data" / "cifar10").mkdir(parents=True)
    (env / "data" / "cifar10" / "cifar-10-python.tar.gz").write_bytes(cifar_archive(batches, {"test_batch": evil}))
    with pytest.raises(ValueError, match="test_batch.*refusing to load a NumPy array of dtype object"):
        data.load_cifar10()


def test_cifar10_truncated_archive_is_not_kept(env, server, monkeypatch):
    archive = cifar_archive(fake_cifar())
    serve(server, monkeypatch, "cifar10", "kriz", {"cifar-10-python.tar.gz": archive}, "VGRAD_CIFAR10_URL")
    monkeypatch.setitem(data.CHECKSUMS, "cifar10", {})  # so that the archive's parse must catch it
    server.modes["/kriz/cifar-10-python.tar.gz"] = "short"
    with pytest.raises(data.DownloadError, match="not valid"):
        data.load_cifar10()
    assert os.listdir(env / "data" / "cifar10") == []


def test_cifar10_offline(env):
    with pytest.raises(data.DownloadError) as err:
        data.load_cifar10()
    message = str(err.value)
    assert str(env / "data" / "cifar10") in message
    assert "cifar-10-python.tar.gz" in message and "cifar-10-batches-py" in message
    assert "$VGRAD_CIFAR10_URL" in message
