"""The latent explorer alone: `python explorer_app.py` (the app file of an `sdk: gradio` Space).

The full demo (dashboard + explorer on one port) is the Docker Space: `python -m genlab.serve`.
"""
import os

from genlab.explorer import build_explorer

demo = build_explorer(checkpoints_dir=os.environ.get("GENLAB_CHECKPOINTS", "checkpoints"),
                      runs_root=os.environ.get("GENLAB_RUNS_ROOT", "runs"))

if __name__ == "__main__":
    demo.launch()          # host and port from GRADIO_SERVER_NAME / GRADIO_SERVER_PORT (Spaces set them)
