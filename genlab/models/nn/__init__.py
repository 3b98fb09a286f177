"""Layers and training services shared by several model families."""
