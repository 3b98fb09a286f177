"""Live view of one run: progress, Stop/Resume, loss curves (other runs overlaid) and sample grids."""
import streamlit as st

from genlab import dashboard, runs
from genlab.settings import Settings
from genlab.step_controls import step_controls

st.set_page_config(page_title="genlab · live run", page_icon=dashboard.ICON, layout="wide")
settings = Settings.from_env()
owner = dashboard.owner_token(settings)
infos = runs.list_runs(settings.runs_root)
if not infos:
    st.title("Live run")
    st.info("No runs yet: start one on the Train page.")
    st.page_link("pages/1_Train.py", label="Train a model", icon=":material/rocket_launch:")
    st.stop()

names = [info.name for info in infos]
wanted = st.query_params.get("run")
with st.sidebar:
    name = st.selectbox("run", names, index=names.index(wanted) if wanted in names else 0, key="run.name")
    st.query_params["run"] = name
    overlay_names = st.multiselect("overlay runs", [n for n in names if n != name], key="run.overlay",
                                   help="Draw these runs' curves on the same axes to compare.")
    smoothing = st.slider("smoothing", 0.0, 0.99, 0.6, 0.01, key="run.smoothing",
                          help="Bias-corrected exponential moving average over the faint raw line.")
    log_y = st.toggle("log-scale y", key="run.log_y")
run_dir = dashboard.run_path(name, settings)
if run_dir is None:
    st.warning(f"{name} has been deleted.")
    st.stop()
overlay = [p for p in (dashboard.run_path(n, settings) for n in overlay_names) if p is not None]


@st.fragment(run_every=dashboard.REFRESH_S)
def live() -> None:
    dashboard.live_run(run_dir, overlay, smoothing, log_y, settings, owner)
    # step-by-step controls
    step_controls(run_dir, runs.read_status(run_dir), settings, owner, key=run_dir.name)


@st.fragment
def history() -> None:
    dashboard.grid_history(run_dir)


live()
with st.expander("Sample grid history (time-lapse)", icon=":material/movie:"):
    history()
