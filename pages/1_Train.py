"""Train page: pick a model, a data set (checked before Start) and its hyperparameters; Start launches a
training process."""
import streamlit as st

from genlab import ConfigError, dashboard, runner
from genlab.config import DEFAULT_MODEL
from genlab.models import MODELS
from genlab.settings import Settings

st.set_page_config(page_title="genlab · train", page_icon=dashboard.ICON, layout="wide")
settings = Settings.from_env()
owner = dashboard.owner_token(settings)
st.title("Train a model")
lim = settings.limits
if settings.public:
    caps = [f"{lim.max_active_runs} run(s) at once" if lim.max_active_runs else None,
            f"{lim.max_steps} steps" if lim.max_steps else None,
            f"batches of {lim.max_batch_size}" if lim.max_batch_size else None,
            f"{lim.max_parameters:,} parameters" if lim.max_parameters else None,
            f"images of {lim.max_image_size} px" if lim.max_image_size else None,
            f"{lim.max_run_seconds / 60:.0f} minutes per run" if lim.max_run_seconds else None]
    st.info("Public demo: at most " + ", ".join(c for c in caps if c) +
            ("; built-in data sets only." if lim.builtin_data_only else "."))
prefill, problems = dashboard.prefill_from_query(settings)
if problems:
    st.error("Ignored from the page address (the form keeps its defaults): " + "; ".join(problems) + ".")
models, datasets = sorted(MODELS), dashboard.offered_datasets(settings)
left, right = st.columns(2)
model = left.selectbox("model", models, index=models.index(prefill.get("model") if prefill.get("model") in models
                                                         else DEFAULT_MODEL), key="train.model",
                       help="; ".join(f"{m}: {(MODELS[m].__doc__ or '').strip().splitlines()[0]}" for m in models))
dataset = right.selectbox("data set", datasets, index=datasets.index(prefill.get("dataset") if prefill.get("dataset")
                                                               in datasets else "mnist"),
                          key="train.dataset")
data = dashboard.data_source(dataset, prefill, settings)        # checked here, before Start

with st.form("train-form", border=False):
    name_col, note_col = st.columns([1, 2])
    label = {"name": name_col.text_input("run name (optional)", key="train.label_name", max_chars=80,
                                         help="Shown in the runs table; the folder keeps its unique name."),
             "note": note_col.text_input("note (optional)", key="train.label_note", max_chars=500,
                                         help="A line about this run, shown under its name in the runs table.")}
    config = dashboard.config_form(model, dataset, prefill, settings, data)
    start = st.form_submit_button("Start training", type="primary", icon=":material/rocket_launch:")

if start:
    try:
        if invalid := dashboard.form_problems(config):
            raise ConfigError("Fix these fields first: " + "; ".join(invalid))
        runner.check_config(config, settings)              # names the public cap a value breaks
        with st.spinner("Checking the data and starting the training process…"):
            run_dir = runner.start_run(config, settings, owner=owner, label=label)
    except (ConfigError, runner.RunnerError, OSError) as error:
        st.error(str(error))
    else:
        dashboard.remember_data_root(settings, dataset, config["train"]["data_root"], config["train"].get("data_path"))
        st.switch_page("pages/2_Live_run.py", query_params={"run": run_dir.name})
