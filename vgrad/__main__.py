"""
python -m vgrad: what the package offers on the command line.

    python -m vgrad ops          every built-in op: its formula in one line, and the functions of vgrad._C it owns
    vgrad-train ...              train an MLP or a CNN (vgrad/train.py; python -m vgrad.train is the same program)
    python -m vgrad.as_vugrad    run course scripts with your own vugrad on vgrad (vgrad/as_vugrad.py)
"""
import sys


def first_sentence(text):
    """The first sentence of a docstring, on one line."""
    words = ' '.join((text or '').split())
    end = words.find('. ')
    return words if end < 0 else words[:end + 1]


def list_ops(out=sys.stdout):
    """One entry per op of vgrad.ops.ALL_OPS, the registry of ops, in its order: name and formula, then kernels."""
    from .ops import ALL_OPS, NN_OPS

    width = max(len(op.__name__) for op in ALL_OPS) + 2
    for op in ALL_OPS:
        if op is NN_OPS[0]:
            print('\nThe CNN toolkit (vgrad/nn_ops.py):', file=out)
        print(f'{op.__name__:<{width}}{first_sentence(op.__doc__)}', file=out)
        print(f'{"":<{width}}kernels: {", ".join(op.kernels)}', file=out)
    print(f'\n{len(ALL_OPS)} ops: vgrad.ALL_OPS. Each is a class of vgrad/ops.py or vgrad/nn_ops.py, with its NumPy '
          f'formula in vg.<Op>.Reference.', file=out)


def main(argv=None):
    args = sys.argv[1:] if argv is None else argv
    if args == ['ops']:
        list_ops()
        return 0
    print(__doc__.strip(), file=sys.stderr if args else sys.stdout)
    return 2 if args and args != ['-h'] and args != ['--help'] else 0


if __name__ == '__main__':
    try:
        sys.exit(main())
    except BrokenPipeError:  # `python -m vgrad ops | head`: the reader has what it wanted
        sys.stderr.close()
        sys.exit(0)
