"""genlab dashboard, home: every run in one table. Served with the explorer by `python -m genlab.serve`."""
import streamlit as st

from genlab import dashboard, runner


def home() -> None:
    """The runs table, refreshed live."""
    st.title("genlab runs")
    root = runner.runs_root()
    st.caption(f"Run folders in `{root.resolve()}`, newest first. Runs are separate processes: closing "
               f"this tab or restarting the dashboard does not stop them.")
    if error := st.session_state.pop("runs_table_error", None):
        st.error(error)

    @st.fragment(run_every=dashboard.REFRESH_S)
    def table() -> None:
        dashboard.runs_table(root)

    table()


st.set_page_config(page_title="genlab", page_icon=":material/science:", layout="wide")
page = st.navigation([
    st.Page(home, title="Runs", icon=":material/table_rows:", default=True),
    st.Page("pages/1_Train.py", title="Train", icon=":material/rocket_launch:"),
    st.Page("pages/2_Run.py", title="Live run", icon=":material/monitoring:"),
    st.Page("pages/3_Explorer.py", title="Latent explorer", icon=":material/explore:", url_path="latent-explorer"),
])
page.run()
