"""Image data sets for the training-command tests, made offline from Fashion-MNIST (Debian's
dataset-fashion-mnist): real MNIST and CIFAR-10 cannot be downloaded here, but the commands must be seen to
learn on them. Real images make the data learnable, so "it learns" means something.

- mnist_from_fashion(root): root/mnist/ holds Fashion-MNIST's four IDX files under MNIST's names.
- cifar_from_fashion(root): root/cifar10/cifar-10-batches-py/ holds the python version's six batches, made of
  Fashion-MNIST images padded to 32 x 32 and repeated into three channels (the labels are kept).
Point $VGRAD_DATA at root and vg.load_mnist / vg.load_cifar10 read them.
"""
import os
import pickle
import shutil

import numpy as np
import pytest

from vgrad import data


def fashion_dir():
    """The folder with Fashion-MNIST's four files, or skip the test."""
    for folder in (data._data_dir("fashion-mnist"), data.SYSTEM_FASHION_DIR):
        if all(os.path.isfile(os.path.join(folder, name)) for name in data.IDX_FILES.values()):
            return folder
    pytest.skip("Fashion-MNIST is not on this machine (apt-get install dataset-fashion-mnist)")


def has_fashion():
    try:
        fashion_dir()
    except pytest.skip.Exception:
        return False
    return True


def mnist_from_fashion(root):
    target = os.path.join(root, "mnist")
    os.makedirs(target, exist_ok=True)
    source = fashion_dir()
    for name in data.IDX_FILES.values():
        shutil.copyfile(os.path.join(source, name), os.path.join(target, name))
    return target


def cifar_from_fashion(root, per_batch=2000, test=2000):
    folder = os.path.join(root, "cifar10", data.CIFAR10_FOLDER)
    os.makedirs(folder, exist_ok=True)
    source = fashion_dir()
    images = data.read_idx(os.path.join(source, data.IDX_FILES["training_images"]))
    labels = data.read_idx(os.path.join(source, data.IDX_FILES["training_labels"]))
    test_images = data.read_idx(os.path.join(source, data.IDX_FILES["test_images"]))[:test]
    test_labels = data.read_idx(os.path.join(source, data.IDX_FILES["test_labels"]))[:test]

    def colour(grey):  # (n, 28, 28) -> (n, 3, 32, 32)
        padded = np.pad(grey, ((0, 0), (2, 2), (2, 2)))
        return np.repeat(padded[:, None], 3, axis=1)

    def write(name, x, y):
        batch = {b"batch_label": name.encode(), b"labels": [int(v) for v in y],
                 b"data": colour(x).reshape(len(x), 3072), b"filenames": [b"x.png"] * len(x)}
        with open(os.path.join(folder, name), "wb") as f:
            pickle.dump(batch, f, protocol=2)

    for i in range(5):
        part = slice(i * per_batch, (i + 1) * per_batch)
        write(f"data_batch_{i + 1}", images[part], labels[part])
    write("test_batch", test_images, test_labels)
    return folder
