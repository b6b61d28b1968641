"""vugrad itself, from a work tree of dlvu/vugrad ($VGRAD_VUGRAD_DIR), for the tests that compare with it."""
import contextlib
import os
import sys

VUGRAD_DIR = os.environ.get("VGRAD_VUGRAD_DIR")


def _vugrad_modules():
    return {name: mod for name, mod in sys.modules.items() if name == "vugrad" or name.startswith("vugrad.")}


@contextlib.contextmanager
def imported_vugrad(directory=VUGRAD_DIR):
    """The package vugrad of `directory`, imported for the block only: whatever vugrad sys.modules held
    before (vgrad's overlay, say) is set aside and comes back afterwards."""
    saved = _vugrad_modules()
    for name in saved:
        del sys.modules[name]
    sys.path.insert(0, directory)
    try:
        import vugrad
    finally:
        sys.path.remove(directory)
    assert os.path.realpath(vugrad.__file__).startswith(os.path.realpath(directory)), vugrad.__file__
    try:
        yield vugrad
    finally:
        for name in _vugrad_modules():
            del sys.modules[name]
        sys.modules.update(saved)
