"""The latent explorer alone: `python explorer_app.py` (the app file of an `sdk: gradio` Space).

The full demo (dashboard + explorer on one port) is the Docker Space: `genlab serve`.
"""
from genlab.explorer import build_explorer
from genlab.settings import Settings

settings = Settings.from_env()
demo = build_explorer(checkpoints_dir=settings.checkpoints_dir, runs_root=settings.runs_root)

if __name__ == "__main__":
    demo.launch()          # host and port from GRADIO_SERVER_NAME / GRADIO_SERVER_PORT (Spaces set them)
