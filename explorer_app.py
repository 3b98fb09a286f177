"""The latent explorer alone: `python explorer_app.py` (the app file of an `sdk: gradio` Space).

The full demo (dashboard + explorer on one port) is the Docker Space: `genlab serve`.
"""
from genlab.explorer import build_explorer, launch_kwargs
from genlab.settings import Settings

settings = Settings.from_env()
demo = build_explorer(settings)

if __name__ == "__main__":
    demo.launch(**launch_kwargs(settings))   # host and port from GRADIO_SERVER_NAME / GRADIO_SERVER_PORT (Spaces set them)
