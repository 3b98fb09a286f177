"""One server, one port: the Streamlit dashboard at / and the Gradio latent explorer at /explorer.

    python -m genlab.serve --port 8501

Streamlit's ASGI `st.App` takes extra Starlette routes; the Gradio Blocks is turned into its own
ASGI app (gradio's `mount_gradio_app` on a bare FastAPI shell), mounted at /explorer, and the shell's
lifespan (which runs Gradio's startup events and its queue) is entered inside st.App's lifespan.
The same command works locally, behind a proxy and in a single-port container (Docker Space: 7860).
"""
from __future__ import annotations

import argparse
import contextlib
import dataclasses
import gc
import os
import sys
from pathlib import Path

from .settings import Settings

REPO = Path(__file__).resolve().parents[1]
HOME_SCRIPT = REPO / "app.py"
EXPLORER_PATH = "/explorer"
QUEUE_IDLE_POLL_S = 0.02
CONFIG_POLL_S = 5.0                      # Streamlit's config-file polls (slow_config_file_polls)
PLOTLY_JS_ROUTE = "/genlab-assets/plotly.min.js"


def explorer_routes(blocks, max_file_size=None) -> tuple[list, object]:
    """Starlette routes serving `blocks` at /explorer, and the ASGI app whose lifespan must run."""
    import fastapi
    import gradio as gr
    shell = fastapi.FastAPI(openapi_url=None, docs_url=None, redoc_url=None)
    gr.mount_gradio_app(shell, blocks, path=EXPLORER_PATH, footer_links=["api"], run_history=False,
                        max_file_size=max_file_size)          # Gradio refuses larger uploads itself
    mounts = [route for route in shell.routes if getattr(route, "path", None) == EXPLORER_PATH]
    # Gradio's idle queue polls every 1 ms (about 5% of a core here, taken from training on a small
    # machine); 20 ms between polls keeps events prompt and the idle cost near zero.
    queue = getattr(blocks, "_queue", None)
    if queue is not None and hasattr(queue, "sleep_when_free"):
        queue.sleep_when_free = max(queue.sleep_when_free, QUEUE_IDLE_POLL_S)
        queue.progress_update_sleep_when_free = max(queue.progress_update_sleep_when_free, 0.1)
    return mounts, shell


def build_app(settings: Settings, explorer=None):
    """The st.App for app.py with the explorer (default: genlab.explorer.build_explorer(settings)) at /explorer."""
    import streamlit as st
    from starlette.routing import Route
    if explorer is None:
        from .explorer import build_explorer
        explorer = build_explorer(settings)                    # listed entries, caps of public mode
    from .explorer import launch_kwargs
    routes, shell = explorer_routes(explorer, **launch_kwargs(settings))

    @contextlib.asynccontextmanager
    async def lifespan(app):
        async with shell.router.lifespan_context(shell):        # Gradio's startup events and queue
            yield None

    from . import dashboard, live_view
    os.environ["GENLAB_PLOTLY_JS"] = PLOTLY_JS_ROUTE          # the live curves load plotly.js from here
    os.environ[live_view.SAMPLES_URL_ENV] = live_view.SAMPLES_PREFIX   # ... and the grids (confined) from here
    os.environ[dashboard.CURVES_URL_ENV] = dashboard.CURVES_ROUTE      # ... and the curves' data (confined)
    use_navigation_pages()
    return st.App(str(HOME_SCRIPT), routes=[*routes, Route(PLOTLY_JS_ROUTE, plotly_js), live_view.sample_route(settings),
                                            dashboard.curves_route(settings), live_view.live_route(settings)],
                  lifespan=lifespan)


def use_navigation_pages() -> None:
    """app.py lists the pages with st.navigation (the first is "Runs"). Streamlit decides once per process,
    at the first session, whether a pages/ folder beside the script means its old automatic page list;
    that first session would then show the old list (its first page named "app"). Decide it now."""
    try:
        from streamlit.runtime.pages_manager import PagesManager
    except ImportError:                                        # a Streamlit without it: nothing to decide
        return
    PagesManager.uses_pages_directory = False


async def plotly_js(request):
    """plotly.min.js from the installed plotly package (no CDN: works offline and in a container)."""
    import plotly
    from starlette.responses import FileResponse
    return FileResponse(Path(plotly.__file__).parent / "package_data" / "plotly.min.js",
                        media_type="text/javascript", headers={"Cache-Control": "public, max-age=86400"})


def slow_config_file_polls(period_s: float = CONFIG_POLL_S) -> None:
    """Streamlit polls its config and secrets files for changes every 0.2 s, in threads (it offers no
    option to stop it); every `period_s` is plenty for a server, whose idle wake-ups take CPU from
    training on a small machine. Nothing happens if a later Streamlit has no such setting."""
    from streamlit.watcher import polling_path_watcher
    if isinstance(getattr(polling_path_watcher, "_POLLING_PERIOD_SECS", None), (int, float)):
        polling_path_watcher._POLLING_PERIOD_SECS = max(polling_path_watcher._POLLING_PERIOD_SECS, period_s)


def yield_cpu_to_training() -> None:
    """Leave the CPU to the training processes without renicing anything. The server's share is kept
    small by what it does (Gradio's idle poll at QUEUE_IDLE_POLL_S, `gc.freeze` of the long-lived
    objects). It does not write /proc/self/autogroup (that group is the whole terminal session and
    outlives the server: later commands from the same terminal would run niced) and it does not
    lower its threads' nice value either: the training processes it launches would inherit it, and
    an unprivileged process cannot raise its priority back."""
    gc.collect()
    gc.freeze()                          # full collections then skip these long-lived objects


def main(argv: list[str] | None = None, settings: Settings | None = None) -> None:
    """Parse the options, hand the settings to the pages (their environment), and serve until interrupted."""
    settings = settings if settings is not None else Settings.from_env()
    parser = argparse.ArgumentParser(prog="python -m genlab.serve", description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, default=int(os.environ.get("PORT", os.environ.get("GENLAB_PORT", 8501))),
                        help="port (default: $PORT, $GENLAB_PORT or 8501; Hugging Face Spaces use 7860)")
    parser.add_argument("--host", default=os.environ.get("GENLAB_HOST", "127.0.0.1"),
                        help="address to listen on (default 127.0.0.1; 0.0.0.0 in a container)")
    parser.add_argument("--runs-root", type=Path, default=settings.runs_root,
                        help=f"folder of run folders (default: $GENLAB_RUNS_ROOT or {settings.runs_root})")
    parser.add_argument("--data-root", type=Path, default=settings.data_root,
                        help=f"default data root of new runs (default: $GENLAB_DATA_ROOT or {settings.data_root})")
    parser.add_argument("--checkpoints", type=Path, default=settings.checkpoints_dir,
                        help="folder of exported checkpoints for the explorer (default: $GENLAB_CHECKPOINTS "
                             "or the repository's checkpoints/)")
    parser.add_argument("--public", action="store_true",
                        help="public demo: the caps of genlab.settings.PublicLimits apply (also GENLAB_PUBLIC=1)")
    args = parser.parse_args(argv)
    if args.public and not settings.public:            # the public caps, with any GENLAB_MAX_* overrides
        settings = Settings.from_env(dict(os.environ, GENLAB_PUBLIC="1"))
    settings = dataclasses.replace(settings, runs_root=args.runs_root, data_root=args.data_root,
                                   checkpoints_dir=args.checkpoints)
    os.environ.update(settings.to_env())  # the pages run in this process and read Settings.from_env()
    sys.argv = [str(HOME_SCRIPT)]        # st.App.run anchors sys.path and .streamlit/ at the launcher
    app = build_app(settings)
    import genlab.dashboard  # noqa: F401  (imported once here, with torch, gradio and streamlit, then frozen:)
    yield_cpu_to_training()
    slow_config_file_polls()
    app.run(config={"server.port": args.port, "server.address": args.host, "server.headless": True,
                            "browser.gatherUsageStats": False, "server.fileWatcherType": "none",
                            "server.runOnSave": False, "client.toolbarMode": "minimal",
                            "runner.postScriptGC": False})


if __name__ == "__main__":
    main()
