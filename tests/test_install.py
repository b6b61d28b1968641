"""Install traps: importing vgrad from a source folder without the built extension says what to run, and the
quick test subset (`pytest -m "not slow"`) is well defined."""
import os
import shutil
import subprocess
import sys
import textwrap

import vgrad
from conftest import SLOW

SOURCE = os.path.dirname(os.path.abspath(vgrad.__file__))
TESTS = os.path.dirname(os.path.abspath(__file__))

# Python as it runs for a user who never built the extension in place: no editable-install finder (this
# machine's development install would otherwise find the extension in the developer's tree).
IMPORT = textwrap.dedent("""
    import sys
    sys.meta_path = [f for f in sys.meta_path if 'Editable' not in getattr(f, '__name__', type(f).__name__)]
    try:
        import vgrad
    except ImportError as e:
        print('ImportError:', e)
    else:
        print('imported', vgrad.__file__)
""")


def source_copy(folder):
    """The vgrad package's Python files, without any built extension."""
    target = folder / 'vgrad'
    shutil.copytree(SOURCE, target, ignore=shutil.ignore_patterns('*.so', '__pycache__', '*.c'))
    return target


def run_in(folder, extra_path=None):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in [extra_path] if p))
    env.pop('VGRAD_PURE_PYTHON', None)
    return subprocess.run([sys.executable, '-c', IMPORT], cwd=folder, env=env, capture_output=True, text=True,
                          timeout=120)


def test_unbuilt_source_folder_says_what_to_run(tmp_path):
    source_copy(tmp_path)
    result = run_in(tmp_path)
    message = result.stdout
    assert message.startswith('ImportError:'), result.stdout + result.stderr
    assert 'not built' in message and 'pip install -e .' in message and str(tmp_path) in message
    assert 'circular import' not in message.split('(')[0]  # Python's misleading words only as the cause


def test_unbuilt_source_folder_in_front_of_an_installed_copy_says_so(tmp_path):
    source_copy(tmp_path / 'repo')
    installed = tmp_path / 'site' / 'vgrad'
    installed.mkdir(parents=True)
    (installed / '__init__.py').write_text('')
    (installed / ('_C' + sys.implementation.cache_tag.replace('cpython-', '.cpython-') + '-x.so')).write_text('')
    result = run_in(tmp_path / 'repo', extra_path=str(tmp_path / 'site'))
    assert result.stdout.startswith('ImportError:'), result.stdout + result.stderr
    assert f'installed in {installed}' in result.stdout and 'run from another folder' in result.stdout


def test_the_slow_list_names_existing_test_files():
    for name in SLOW:
        assert os.path.isfile(os.path.join(TESTS, name)), f'conftest.SLOW names {name}, which does not exist'


def test_extension_built_without_a_listed_function_names_it_and_functions_def(tmp_path):
    """A VG_FUNC line in csrc/functions.def whose function was never written still links (an extension may leave
    symbols to load time), and importing it fails with "undefined symbol": the message names the function and
    what to write, not "not built"."""
    target = source_copy(tmp_path)
    c_file = tmp_path / 'ext.c'
    c_file.write_text('extern void *vg_example_forward(void);\n'
                      'void *PyInit__C(void) { return vg_example_forward(); }\n')
    suffix = next(s for s in __import__('importlib.machinery').machinery.EXTENSION_SUFFIXES if s.startswith('.cpython'))
    subprocess.run(['gcc', '-shared', '-fPIC', '-o', str(target / ('_C' + suffix)), str(c_file)], check=True,
                   timeout=120)
    result = run_in(tmp_path)
    message = result.stdout
    assert message.startswith('ImportError:'), result.stdout + result.stderr
    assert 'without the function example_forward' in message and 'VG_BOUNDARY(example_forward)' in message
    assert 'functions.def' in message and 'not built' not in message
