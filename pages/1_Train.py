"""Train page: pick a model, a data set and its hyperparameters; Start launches a training process."""
import streamlit as st

from genlab import ConfigError, dashboard, runner
from genlab.config import DATASETS
from genlab.models import MODELS

st.set_page_config(page_title="genlab · train", page_icon=":material/science:", layout="wide")
st.title("Train a model")
lim = runner.limits()
if lim.public:
    st.info(f"Public demo: at most {lim.max_active_runs} run(s) at once and {lim.max_steps} steps per run.")
prefill = dashboard.prefill_from_query()
models, datasets = sorted(MODELS), list(DATASETS)
left, right = st.columns(2)
model = left.selectbox("model", models, index=models.index(prefill.get("model") if prefill.get("model") in models
                                                         else "dcgan"), key="train.model",
                       help="; ".join(f"{m}: {(MODELS[m].__doc__ or '').strip().splitlines()[0]}" for m in models))
dataset = right.selectbox("data set", datasets, index=datasets.index(prefill.get("dataset") if prefill.get("dataset")
                                                               in datasets else "mnist"),
                          key="train.dataset")

with st.form("train-form", border=False):
    config = dashboard.config_form(model, dataset, prefill, lim)
    start = st.form_submit_button("Start training", type="primary", icon=":material/rocket_launch:")

if start:
    try:
        run_dir = runner.start_run(config)
    except (ConfigError, runner.RunnerError, OSError) as error:
        st.error(str(error))
    else:
        st.switch_page("pages/2_Live_run.py", query_params={"run": run_dir.name})
