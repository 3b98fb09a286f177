"""The Gradio latent explorer, served by the same process under /explorer and embedded here; ?run=NAME
opens that run's newest checkpoint."""
import urllib.parse

import streamlit as st

from genlab import dashboard
from genlab.settings import Settings

st.set_page_config(page_title="genlab · latent explorer", page_icon=dashboard.ICON, layout="wide")
st.title("Latent explorer")
base = st.get_option("server.baseUrlPath").strip("/")
src = f"/{base}/explorer/" if base else "/explorer/"
run = st.query_params.get("run")
if dashboard.run_path(run, Settings.from_env()) is not None:
    src += "?" + urllib.parse.urlencode({"model": f"runs/{run}"})
st.caption(f"The Gradio app at [{src}]({src}), served on this port by `python -m genlab.serve`.")
st.iframe(src, height=1000)
