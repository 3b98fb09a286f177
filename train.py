#!/usr/bin/env python
"""Train a generative model: python train.py --model dcgan --dataset mnist --steps 3000
(the same as `genlab train ...`; `python train.py --resume RUN_DIR` is `genlab resume RUN_DIR`)."""
import sys

from genlab.cli import main

if __name__ == "__main__":
    sys.exit(main(["train", *sys.argv[1:]]))
