"""The Gradio Space (`sdk: gradio`, `app_file: space_app.py`): train live for a minute, then explore.

Front matter and deployment: docs/deployment.md; `python -m genlab.space bundle OUT/` writes the folder.
"""
import spaces  # noqa: F401  (first: ZeroGPU wants it imported before torch touches CUDA)

from genlab.space import launch

if __name__ == "__main__":
    launch()
