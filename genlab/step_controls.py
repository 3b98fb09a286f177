"""Step-by-step controls of a running run, as GAN Lab has them for 2-D points: pause, continue, manual
steps of one phase (a GAN's D or G) or of all, and slow motion.

Every button goes through `genlab.runner` (pause_run, continue_run, step_run, set_slow_motion), which
checks that this visitor may control the run and writes RUN/control.json; the training process reads
it between steps and writes a metrics line and a sample grid after each manual step, so the curves and
the grid of the Live page follow step by step.
"""
from __future__ import annotations

from pathlib import Path

import streamlit as st

from . import runner, runs
from .config import ConfigError
from .settings import Settings


def act(error_key: str, call, *args, **kwargs) -> None:
    """A button's callback: one runner call; a refusal is kept as one line for the page to show."""
    try:
        call(*args, **kwargs)
        st.session_state.pop(error_key, None)
    except (runner.RunnerError, ConfigError, OSError) as error:
        st.session_state[error_key] = str(error)


def step_label(phases: tuple[str, ...], k: int) -> str:
    """"Step both ×k" for a two-phase model, "Step all ×k" for more, "Step ×k" for one."""
    whole = {1: "", 2: " both"}.get(len(phases), " all")
    return f"Step{whole} ×{k}"


def step_controls(run_dir: Path, status: dict, settings: Settings, owner: str | None, key: str) -> None:
    """Pause / Continue, "Step D only" / "Step G only" (models with more than one phase), "Step both ×k"
    and a slow-motion slider, for a running single-process run this session may control."""
    run_dir = Path(run_dir)
    if runner.shown_state(run_dir, status) != "running" or not runner.can_control(run_dir, settings, owner):
        return
    if (status.get("world_size") or 1) != 1:
        st.caption("Step-by-step control works for single-process runs only.")
        return
    config = runs.read_json(run_dir / "config.json", {}) or {}
    try:
        phases = runner.model_phases(config)
    except (KeyError, TypeError, ConfigError):
        return
    control = runs.read_control(run_dir)
    paused, pausing = runs.is_paused(status), control["mode"] == "paused"
    with st.container(border=True, key=f"step-controls-{key}"):
        note = ""
        if paused:
            note = f" · :orange-badge[paused] at step {status.get('step', 0)}"
        elif pausing:
            note = " · pausing after this step…"
        manual = status.get("manual_steps") or 0
        if manual:
            note += f" · {manual} manual step{'s' if manual != 1 else ''}"
        st.markdown(f"**Step by step**{note}")
        errors = f"step-error-{key}"
        buttons = st.columns(len(phases) + 2 if len(phases) > 1 else 2)
        with buttons[0]:
            if pausing:
                st.button("Continue", icon=":material/play_arrow:", key=f"continue-{key}", type="primary",
                          help="Train on by itself again.",
                          on_click=act, args=(errors, runner.continue_run, run_dir, settings, owner))
            else:
                st.button("Pause", icon=":material/pause:", key=f"pause-{key}",
                          help="Pause after the current step; the process keeps its place.",
                          on_click=act, args=(errors, runner.pause_run, run_dir, settings, owner))
        if len(phases) > 1:
            for column, phase in zip(buttons[1:], phases):
                with column:
                    st.button(f"Step {phase} only", key=f"step-{phase}-{key}",
                              help=f"Pause and run one step of phase {phase} alone: only its networks learn, "
                                   f"the others stay exactly as they are.",
                              on_click=act, args=(errors, runner.step_run, run_dir, settings, owner),
                              kwargs={"phases": [phase], "k": 1})
        k_key = f"step-k-{key}"
        k = int(st.session_state.get(k_key, 1))
        with buttons[-1]:
            st.button(step_label(phases, k), key=f"step-all-{key}",
                      help=f"Pause and run {k} whole step(s); the curves and the grid update after each.",
                      on_click=lambda: act(errors, runner.step_run, run_dir, settings, owner, phases=None,
                                           k=int(st.session_state.get(k_key, 1))))
        left, right = st.columns(2)
        with left:
            st.number_input("steps per click (k)", min_value=1, max_value=runs.MAX_STEP_K, value=1,
                            key=k_key, help=f"1 to {runs.MAX_STEP_K}.")
        with right:
            slow_key = f"slow-{key}"
            st.slider("slow motion (seconds between steps)", 0.0, runs.MAX_SLOW_S, float(control["slow_s"]), 0.1,
                      key=slow_key, help="0 trains at full speed.",
                      on_change=lambda: act(errors, runner.set_slow_motion, run_dir, settings, owner,
                                            seconds=float(st.session_state[slow_key])))
        if st.session_state.get(errors):
            st.error(st.session_state[errors])
