"""genlab dashboard, home: every run in one table. Served with the explorer by `python -m genlab.serve`."""
import streamlit as st

from genlab import dashboard, runner

st.set_page_config(page_title="genlab runs", page_icon=":material/science:", layout="wide")
st.title("genlab runs")
root = runner.runs_root()
st.caption(f"Run folders in `{root.resolve()}`, newest first. Each run is a process of its own: closing this tab "
           f"or restarting the dashboard does not stop it. Start one on the **Train** page.")
if error := st.session_state.pop("runs_table_error", None):
    st.error(error)


@st.fragment(run_every=dashboard.REFRESH_S)
def table() -> None:
    dashboard.runs_table(root)


table()
