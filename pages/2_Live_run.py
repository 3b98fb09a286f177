"""Live view of one run: progress, Stop/Resume, loss curves (other runs overlaid) and sample grids.

Everything below the title is one fragment: runs started after the page opened appear in the pickers,
and new metric lines and grids arrive without a reload (see genlab.live_view). The view
(run, overlays, smoothing, log y, step) is kept in the URL query (see genlab.live_view).
"""
import streamlit as st

from genlab import dashboard, live_view
from genlab.settings import Settings

st.set_page_config(page_title="genlab · live run", page_icon=dashboard.ICON, layout="wide")
settings = Settings.from_env()
owner = dashboard.owner_token(settings)
view = live_view.view_from_query(st.query_params.to_dict())        # once per page load
for problem in view.problems:
    st.caption(f":orange[Ignored from the URL: {problem}]")


def set_query(name: str, value: str | None) -> None:
    """Keep one view setting in the URL, where the browser's own components do not (not served)."""
    if live_view.served():
        return                       # the grids component writes run and overlay next to its step
    if value is None:
        if name in st.query_params:
            del st.query_params[name]
    elif st.query_params.get(name) != value:
        st.query_params[name] = value


# Served by genlab.serve, the status line, grids and curves poll the server themselves and rerun this
# only when the page must change (live_view.page_key: the run's state, new runs). Otherwise it reruns
# every REFRESH_S.
@st.fragment(run_every=None if live_view.served() else dashboard.REFRESH_S)
def live() -> None:
    names = live_view.run_names(settings.runs_root)     # read at every refresh: new runs appear
    if not names:
        st.title("Live run")
        st.info("No runs yet: start one on the Train page.")
        st.page_link("pages/1_Train.py", label="Train a model", icon=":material/rocket_launch:")
        return
    served = live_view.served()
    columns = st.columns([2, 3] if served else [2, 3, 2, 1], vertical_alignment="bottom")
    wanted = st.query_params.get("run")
    name = columns[0].selectbox("run", names, index=names.index(wanted) if wanted in names else 0, key="run.name")
    set_query("run", name)
    others = [n for n in names if n != name]
    overlay_names = columns[1].multiselect(
        "overlay runs", others, default=[n for n in view.overlay if n in others], key="run.overlay",
        max_selections=live_view.MAX_OVERLAYS,
        help="Draw these runs' curves on the same axes and their grids beside this run's, at the same step.")
    overlay_names = [n for n in overlay_names if n in others]
    set_query("overlay", ",".join(overlay_names) or None)
    if not served:                                       # plain `streamlit run`: server-side controls
        view.smoothing = columns[2].slider("smoothing", 0.0, 0.99, view.smoothing, 0.01, key="run.smoothing",
                                           help="Bias-corrected exponential moving average over the faint raw line.")
        view.log_y = columns[3].toggle("log-scale y", value=view.log_y, key="run.log_y")
    run_dir = dashboard.run_path(name, settings)
    if run_dir is None:
        st.warning(f"{name} has been deleted.")
        return
    overlay = [p for p in (dashboard.run_path(n, settings) for n in overlay_names) if p is not None]
    live_view.live_run(run_dir, overlay, view, settings, owner)


live()
