#!/usr/bin/env python
"""Train a generative model: python train.py --model dcgan --dataset mnist --steps 3000"""
import sys

from genlab.cli import main

if __name__ == "__main__":
    sys.exit(main())
