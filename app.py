"""genlab dashboard: the page list (Runs, Train, Live run, Latent explorer) and the Runs page, every run
in one table. Served with the explorer by `python -m genlab.serve`."""
import streamlit as st

from genlab import dashboard
from genlab.settings import Settings


def runs_page() -> None:
    """Home: every run in one table, refreshed every few seconds."""
    settings = Settings.from_env()
    owner = dashboard.owner_token(settings)
    st.title("genlab runs")
    where = "this server's runs folder" if settings.public else f"`{settings.runs_root.resolve()}`"
    st.caption(f"Run folders in {where}, newest first. Each run is a process of its own: closing this tab "
               f"or restarting the dashboard does not stop it. Start one on the **Train** page.")
    if settings.public:
        st.caption("Everyone can watch every run; you can stop, resume and delete the runs this browser session "
                   "started.")
    if error := st.session_state.pop("runs_table_error", None):
        st.error(error)

    @st.fragment(run_every=dashboard.REFRESH_S)
    def table() -> None:
        dashboard.runs_table(settings, owner)

    table()


st.set_page_config(page_title="genlab runs", page_icon=dashboard.ICON, layout="wide")
st.navigation([st.Page(runs_page, title="Runs", default=True),
               st.Page("pages/1_Train.py", title="Train", url_path="Train"),
               st.Page("pages/2_Live_run.py", title="Live run", url_path="Live_run"),
               st.Page("pages/3_Latent_explorer.py", title="Latent explorer", url_path="Latent_explorer")]).run()
