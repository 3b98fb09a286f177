"""The Gradio latent explorer, served by the same process under /explorer and embedded here."""
import streamlit as st

st.set_page_config(page_title="genlab · latent explorer", page_icon=":material/science:", layout="wide")
st.title("Latent explorer")
base = st.get_option("server.baseUrlPath").strip("/")
src = f"/{base}/explorer/" if base else "/explorer/"
st.caption(f"The Gradio app at [{src}]({src}), served on this port by `python -m genlab.serve`.")
st.iframe(src, height=1000)
