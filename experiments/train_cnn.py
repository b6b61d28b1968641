"""Trains the course's CNN (the PyTorch 60-minute blitz network) with vgrad: see vgrad/train_cnn.py.

    python experiments/train_cnn.py [--optimizer sgd|adam] [--lr LR] [--dropout P] [--conv3] ...

(the same as `vgrad-train cnn ...`).
"""
import sys

from vgrad.train_cnn import run

if __name__ == '__main__':
    sys.exit(run())
