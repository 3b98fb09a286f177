"""Benchmarks: genlab's training loop beside a reference loop written as the PyTorch DCGAN tutorial."""
