"""VGRAD_PURE_PYTHON=1: vgrad.core from core.py itself, not from the module Cython compiled from it."""
import importlib.util
import os
import sys


def load_core_as_python():
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'core.py')
    spec = importlib.util.spec_from_file_location('vgrad.core', path)
    module = importlib.util.module_from_spec(spec)
    sys.modules['vgrad.core'] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules['vgrad.core']
        raise
