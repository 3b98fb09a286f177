"""Step-by-step training: the control file, a model's phases run alone, pause / manual steps / continue
in the loop (bit-exact when no phase was left out), the runner's and the CLI's refusals, and a real
training process paused, stepped by phase, continued and stopped through the runner."""
import json
import math
import threading

import pytest
import torch

import genlab
from genlab import cli, runner, runs
from genlab.checkpoint import read_checkpoint
from genlab.config import ConfigError
from genlab.models import MODELS, StepContext, build_model
from genlab.settings import PublicLimits, Settings
from genlab.training.plan import Plan

from helpers import tiny_config, wait_for, wait_until_inactive
from picks import GAN_PAIR, ONE_NETWORK

MULTI_PHASE = sorted(name for name, cls in MODELS.items() if len(cls.phases) > 1)


# ---------------------------------------------------------------- the control file
def request(seq, phases=None, k=1):
    return {"seq": seq, "phases": phases, "k": k}


def test_a_valid_control_round_trips_and_a_missing_one_reads_as_running(tmp_path):
    assert runs.read_control(tmp_path) == runs.default_control()
    control = runs.update_control(tmp_path, lambda c: dict(c, mode="paused", slow_s=0.5,
                                                            requests=[request(1, ["D"]), request(3, None, 4)]))
    assert runs.read_control(tmp_path) == control == {"mode": "paused", "slow_s": 0.5,
                                                      "requests": [request(1, ["D"]), request(3, None, 4)]}
    assert runs.control_stamp(tmp_path) is not None
    runs.clear_control(tmp_path)
    assert runs.control_stamp(tmp_path) is None and runs.read_control(tmp_path)["mode"] == "running"


@pytest.mark.parametrize("control", [
    [], {"mode": "fast"}, {"mode": "paused", "extra": 1}, {"slow_s": -0.1}, {"slow_s": 5.5},
    {"slow_s": math.nan}, {"slow_s": True}, {"slow_s": "1"},
    {"requests": [request(1, k=0)]}, {"requests": [request(1, k=runs.MAX_STEP_K + 1)]},
    {"requests": [request(1, k=True)]}, {"requests": [request(2), request(2)]}, {"requests": [request(0)]},
    {"requests": [request(1, "D")]}, {"requests": [request(1, [])]}, {"requests": [request(1, ["D", "D"])]},
    {"requests": [request(1, ["../x"])]}, {"requests": [{"seq": 1, "k": 1}]},
    {"requests": [request(i + 1) for i in range(runs.MAX_PENDING + 1)]},
], ids=lambda c: json.dumps(c)[:40])
def test_bad_control_content_is_refused_with_its_reason(control):
    with pytest.raises(ConfigError):
        runs.check_control(control)


@pytest.mark.parametrize("content", [b"{not json", b"\xff\xfe", b'{"mode": "fast"}', b"[]",
                                     b'{"mode": "paused"' + b" " * runs.MAX_CONTROL_BYTES + b"}"])
def test_a_bad_or_oversized_control_file_reads_as_the_default(tmp_path, content):
    (tmp_path / runs.CONTROL_NAME).write_bytes(content)
    assert runs.read_control(tmp_path) == runs.default_control()


# ---------------------------------------------------------------- a model's phases alone
def build(name, **fields):
    torch.manual_seed(0)
    return build_model(name, dict(MODELS[name].tiny, **fields)).train()


def batches():
    gen = torch.Generator().manual_seed(1)
    return lambda: (torch.rand(6, 1, 28, 28, generator=gen) * 2 - 1, torch.randint(10, (6,), generator=gen))


def step(model, optimizers, phases, step_index=0):
    ctx = StepContext(step_index, torch.Generator().manual_seed(2), diagnostics=True, total_steps=10, phases=phases)
    return model.training_step(batches(), optimizers, ctx)


def changed_parts(before: dict, after: dict) -> set[str]:
    """Top-level sub-networks with a parameter or buffer that changed."""
    return {key.split(".")[0] for key in before if not torch.equal(before[key], after[key])}


def snapshot(model) -> dict:
    return {key: value.clone() for key, value in model.state_dict().items()}


def test_every_gan_family_model_has_two_phases_and_the_others_one():
    assert MULTI_PHASE, "no registered model has more than one phase"
    for name, cls in MODELS.items():
        assert len(cls.phases) == len(set(cls.phases)) >= 1 and all(p.isalnum() for p in cls.phases), name


@pytest.mark.parametrize("name", MULTI_PHASE)
def test_a_step_of_one_phase_changes_only_that_phases_networks_and_the_ema_follows_g(name):
    parts = {}
    for phase in MODELS[name].phases:
        model = build(name, ema_decay=0.9)
        before = snapshot(model)
        logs = step(model, model.make_optimizers(), (phase,))
        parts[phase] = changed_parts(before, snapshot(model))
        assert parts[phase] and logs and all(torch.isfinite(v) for v in logs.values()), phase
    full = build(name, ema_decay=0.9)
    before = snapshot(full)
    step(full, full.make_optimizers(), None)
    everything = changed_parts(before, snapshot(full))
    phases = MODELS[name].phases
    for phase in phases:                                   # disjoint: no phase touches another's networks
        others = set().union(*(parts[p] for p in phases if p != phase))
        assert not parts[phase] & others, (phase, parts)
    assert set().union(*parts.values()) == everything
    ema_of = MODELS[name].ema_of
    assert [p for p in phases if "ema" in parts[p]] == [p for p in phases if ema_of in parts[p]]


@pytest.mark.parametrize("name", MULTI_PHASE)
def test_all_phases_named_is_the_same_step_as_none_bit_exact(name):
    results = []
    for phases in (None, MODELS[name].phases):
        model = build(name)
        optimizers = model.make_optimizers()
        logs = [step(model, optimizers, phases, i) for i in range(2)]
        results.append((snapshot(model), logs))
    (a, logs_a), (b, logs_b) = results
    assert all(torch.equal(a[key], b[key]) for key in a)
    assert all(torch.equal(x[key], y[key]) for x, y in zip(logs_a, logs_b) for key in x)


# ---------------------------------------------------------------- the loop, in this process
def final_weights(run) -> dict:
    _, tensors = read_checkpoint(runs.checkpoint_path(run))
    return {key: value for key, value in tensors.items() if key.startswith("model.")}


def on_log_at(step_wanted: int, action):
    """An on_event hook doing `action()` once, at the log line of `step_wanted`."""
    done = []

    def on_event(kind, payload):
        if kind == "log" and payload["step"] == step_wanted and not done:
            done.append(1)
            action()
    return on_event


def in_thread(run, condition, then):
    """Once `condition()` holds, `then()`; on any failure the run is asked to stop (it never hangs)."""
    failures = []

    def watch():
        try:
            wait_for(condition, timeout=60, what="the paused run")
            then()
        except BaseException as error:      # noqa: BLE001  (reported by the test)
            failures.append(error)
            runs.request_stop(run)
    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    return thread, failures


def test_pause_whole_manual_steps_slow_motion_and_continue_leave_training_bit_exact(tmp_path):
    config = tiny_config(GAN_PAIR, steps=6)
    plain, controlled = tmp_path / "plain", tmp_path / "controlled"
    genlab.train(config, plain)

    def paused_after_two_manual_steps():
        status = runs.read_status(controlled)
        return runs.is_paused(status) and status.get("manual_steps") == 2

    thread, failures = in_thread(controlled, paused_after_two_manual_steps,
                                 lambda: runs.update_control(controlled, lambda c: dict(c, mode="running")))
    status = genlab.train(config, controlled, on_event=on_log_at(2, lambda: runs.update_control(
        controlled, lambda c: dict(c, mode="paused", slow_s=0.01, requests=[request(1, None, 2)]))))
    thread.join(10)
    assert not failures and status["state"] == "finished" and status["step"] == 6
    assert not status["paused"] and status["manual_steps"] == 2 and status["partial_steps"] == 0
    a, b = final_weights(plain), final_weights(controlled)
    assert all(torch.equal(a[key], b[key]) for key in a)             # a whole manual step is a step
    lines = runs.read_metrics(controlled)
    assert [(r["step"], r.get("manual")) for r in lines] == [(2, None), (3, "all"), (4, "all"), (6, None)]
    assert not (controlled / runs.CONTROL_NAME).exists()


def test_d_only_and_g_only_steps_are_logged_sampled_and_counted(tmp_path):
    run = tmp_path / "run"
    requests = [request(1, ["D"]), request(2, ["G"], 2), request(3, ["Q"])]      # Q: no such phase, ignored
    status = genlab.train(tiny_config(GAN_PAIR, steps=8), run, on_event=on_log_at(2, lambda: runs.update_control(
        run, lambda c: dict(c, requests=requests))))
    assert status["state"] == "finished" and status["step"] == 8
    assert status["manual_steps"] == 3 and status["partial_steps"] == 3 and status["control_seq"] == 3
    lines = {r["step"]: r for r in runs.read_metrics(run)}
    assert [(s, r.get("manual")) for s, r in lines.items()] == [(2, None), (3, "D"), (4, "G"), (5, "G"),
                                                                 (6, None), (8, None)]
    assert "loss/d" in lines[3] and "loss/g" not in lines[3]
    assert "loss/g" in lines[4] and "loss/d" not in lines[4]
    # A grid after every manual step; only the newest one that was not due is kept (3 went when 4 came).
    assert [s for s, _ in runs.list_samples(run)] == [0, 1, 2, 4, 5, 6, 8]      # 0 and 1: the early grids
    runs.write_status(run, "interrupted", paused=True)             # as if it had died while paused
    resumed = genlab.resume(run, steps=10)
    assert resumed["step"] == 10 and not resumed["paused"] and resumed["partial_steps"] == 3   # kept


def test_a_stop_file_ends_a_paused_run_with_a_checkpoint(tmp_path):
    run = tmp_path / "run"
    thread, failures = in_thread(run, lambda: runs.is_paused(runs.read_status(run)), lambda: runs.request_stop(run))
    status = genlab.train(tiny_config(GAN_PAIR, steps=8), run, on_event=on_log_at(2, lambda: runs.update_control(
        run, lambda c: dict(c, mode="paused"))))
    thread.join(10)
    assert not failures and status["state"] == "stopped" and status["step"] == 2 and not status["paused"]
    assert runs.checkpoint_path(run).exists()


# ---------------------------------------------------------------- the runner's and the CLI's refusals
def fake_running(tmp_path, model=GAN_PAIR, **status):
    """A run folder whose status says this (live) process runs it: what the runner checks, no training."""
    run = tmp_path / "runs" / "run-1"
    run.mkdir(parents=True)
    runs.atomic_write_json(run / "config.json", tiny_config(model))
    runs.write_status(run, "running", step=5, world_size=1, **status)
    return run


def test_step_requests_pause_the_run_and_carry_increasing_numbers(tmp_path):
    run = fake_running(tmp_path)
    settings = Settings(runs_root=tmp_path / "runs")
    runner.step_run(run, settings, phases=["D"])
    runner.step_run(run, settings, phases="G", k=3)
    runner.step_run(run, settings, phases=list(reversed(MODELS[GAN_PAIR].phases)))     # all: a whole step
    control = runs.read_control(run)
    assert control["mode"] == "paused"
    assert control["requests"] == [request(1, ["D"]), request(2, ["G"], 3), request(3, None)]
    runs.write_status(run, "running", control_seq=2)                 # the process took the first two
    runner.step_run(run, settings, k=runs.MAX_STEP_K)
    assert runs.read_control(run)["requests"] == [request(3, None), request(4, None, runs.MAX_STEP_K)]
    runner.set_slow_motion(run, settings, seconds=0.5)
    runner.continue_run(run, settings)
    assert runs.read_control(run)["mode"] == "running" and runs.read_control(run)["slow_s"] == 0.5
    runner.pause_run(run, settings)
    assert runs.read_control(run)["mode"] == "paused"
    for _ in range(runs.MAX_PENDING - 2):
        runner.step_run(run, settings)
    with pytest.raises(runner.RunnerError, match="at most"):
        runner.step_run(run, settings)


@pytest.mark.parametrize("call, match", [
    (lambda r, s: runner.step_run(r, s, phases=["X"]), "no phase X; it has phases D, G"),
    (lambda r, s: runner.step_run(r, s, phases=[]), "no phase"),
    (lambda r, s: runner.step_run(r, s, k=0), "from 1 to"),
    (lambda r, s: runner.step_run(r, s, k=runs.MAX_STEP_K + 1), "from 1 to"),
    (lambda r, s: runner.step_run(r, s, k="2"), "from 1 to"),
    (lambda r, s: runner.step_run(r, s, k=True), "from 1 to"),
    (lambda r, s: runner.set_slow_motion(r, s, seconds=-1), "0 to 5"),
    (lambda r, s: runner.set_slow_motion(r, s, seconds=math.nan), "0 to 5"),
    (lambda r, s: runner.set_slow_motion(r, s, seconds=60), "0 to 5"),
])
def test_bad_control_input_is_one_clear_refusal(tmp_path, call, match):
    run = fake_running(tmp_path)
    with pytest.raises(runner.RunnerError, match=match):
        call(run, Settings(runs_root=tmp_path / "runs"))
    assert not (run / runs.CONTROL_NAME).exists()


def test_a_one_phase_model_is_stepped_whole(tmp_path):
    run = fake_running(tmp_path, model=ONE_NETWORK)
    settings = Settings(runs_root=tmp_path / "runs")
    with pytest.raises(runner.RunnerError, match="one phase: step it whole"):
        runner.step_run(run, settings, phases=["D"])
    runner.step_run(run, settings, k=2)
    assert runs.read_control(run)["requests"] == [request(1, None, 2)]


def test_only_a_running_single_process_run_of_ones_own_is_controlled(tmp_path):
    run = fake_running(tmp_path)
    root = tmp_path / "runs"
    public = Settings(runs_root=root, public=True, limits=PublicLimits(), secret="test-secret")
    owner, visitor = runner.new_owner_token(public), runner.new_owner_token(public)
    runs.atomic_write_json(run / runner.OWNER_NAME, {"owner_sha256": runner.owner_hash(owner)})
    for who in (visitor, None, "forged.token"):
        with pytest.raises(runner.RunnerError, match="belongs to another visitor"):
            runner.pause_run(run, public, who)
    runner.pause_run(run, public, owner)
    runs.write_status(run, "running", world_size=2)
    with pytest.raises(runner.RunnerError, match="single-process runs only"):
        runner.step_run(run, public, owner)
    runs.write_status(run, "stopped", world_size=1)
    with pytest.raises(runner.RunnerError, match="is stopped, not running; resume it first"):
        runner.continue_run(run, public, owner)
    runs.write_status(run, "running")
    runs.request_stop(run)
    with pytest.raises(runner.RunnerError, match="stopping"):
        runner.step_run(run, public, owner)


def test_the_cli_drives_a_run_and_refuses_bad_input_in_one_line(tmp_path, capsys):
    run = fake_running(tmp_path)
    settings = Settings(runs_root=tmp_path / "runs")
    assert cli.main(["control", str(run), "step", "--phase", "D", "--k", "2"], settings) == 0
    assert cli.main(["control", str(run), "slow", "0.2"], settings) == 0
    assert cli.main(["control", str(run), "continue"], settings) == 0
    assert runs.read_control(run) == {"mode": "running", "slow_s": 0.2, "requests": [request(1, ["D"], 2)]}
    capsys.readouterr()
    for argv in (["step", "--phase", "X"], ["step", "--k", "0"], ["slow", "9"], ["slow", "fast"], ["jump"]):
        assert cli.main(["control", str(run), *argv], settings) == 2, argv
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "error" in err and "Traceback" not in err, err
    assert cli.main(["control", str(tmp_path / "nowhere"), "pause"], settings) == 2


# ---------------------------------------------------------------- a real training process
REAL = {"train": {"model": GAN_PAIR, "dataset": "synthetic", "image_size": 28, "steps": 100000,
                  "batch_size": 8, "log_every": 5, "sample_every": 50, "checkpoint_every": 1000, "device": "cpu"},
        "model": {}}


@pytest.mark.slow
def test_a_running_process_pauses_steps_d_then_g_continues_and_stops(tmp_path):
    settings = Settings(runs_root=tmp_path / "runs")
    run = runner.start_run(REAL, settings)
    try:
        wait_for(lambda: runs.read_metrics(run), what="the first metrics line")
        runner.pause_run(run, settings)
        wait_for(lambda: runs.is_paused(runs.read_status(run)), what="the run to pause")
        at = runs.read_status(run)["step"]
        runner.step_run(run, settings, phases=["D"])
        wait_for(lambda: any(r.get("manual") == "D" for r in runs.read_metrics(run)), what="the D step")
        runner.step_run(run, settings, phases=["G"])
        wait_for(lambda: any(r.get("manual") == "G" for r in runs.read_metrics(run)), what="the G step")
        manual = [(r["step"], r["manual"]) for r in runs.read_metrics(run) if "manual" in r]
        assert manual == [(at + 1, "D"), (at + 2, "G")]
        wait_for(lambda: runs.read_status(run)["step"] == at + 2,
                 what="the status after the G step")                  # written just after its metrics line
        status = runs.read_status(run)
        assert runs.is_paused(status) and status["partial_steps"] == 2
        wait_for(lambda: runs.list_samples(run)[-1][0] == at + 2, what="the grid of the G step")
        train = REAL["train"]
        plan = Plan(train["steps"], train["log_every"], train["sample_every"], train["checkpoint_every"])
        if not plan.is_sample_step(at + 1):                            # an early (log-spaced) grid is kept
            assert at + 1 not in dict(runs.list_samples(run))         # the D step's grid went

        runner.continue_run(run, settings)
        wait_for(lambda: runs.read_metrics(run)[-1]["step"] > at + 2 and
                 not runs.is_paused(runs.read_status(run)), what="training to go on")
        runner.pause_run(run, settings)
        wait_for(lambda: runs.is_paused(runs.read_status(run)), what="the second pause")
        runner.stop_run(run, settings, wait=True)                     # Stop works while paused
        stopped = wait_until_inactive(run)
        assert stopped["state"] == "stopped" and stopped["error"] is None and not stopped["paused"]
        assert runs.checkpoint_path(run).exists() and "Traceback" not in runner.read_log(run)
        with pytest.raises(runner.RunnerError, match="not running; resume it first"):
            runner.step_run(run, settings)
    finally:
        if runs.is_active(runs.read_status(run)):
            runner.stop_run(run, settings, wait=True)


# ---------------------------------------------------------------- the widget (Streamlit's AppTest)
WIDGET = """
from pathlib import Path
from genlab import runs
from genlab.settings import Settings
from genlab.step_controls import step_controls
run = Path({run!r})
step_controls(run, runs.read_status(run), Settings(runs_root=run.parent), None, key="k")
"""


def widget(run):
    from streamlit.testing.v1 import AppTest
    return AppTest.from_string(WIDGET.format(run=str(run)), default_timeout=60).run()


def test_the_widget_offers_phase_steps_only_for_models_with_phases_and_its_buttons_act(tmp_path):
    gan = widget(fake_running(tmp_path / "two-phases"))
    labels = [button.label for button in gan.button]
    assert labels == ["Pause", "Step D only", "Step G only", "Step both ×1"] and not gan.exception
    gan.button[1].click().run()                                      # Step D only
    run = tmp_path / "two-phases" / "runs" / "run-1"
    assert runs.read_control(run) == {"mode": "paused", "slow_s": 0.0, "requests": [request(1, ["D"])]}
    assert gan.button[0].label == "Continue"
    gan.slider[0].set_value(0.5).run()
    assert runs.read_control(run)["slow_s"] == 0.5

    one = widget(fake_running(tmp_path / "one", model=ONE_NETWORK))
    assert [button.label for button in one.button] == ["Pause", "Step ×1"]

    stopped = fake_running(tmp_path / "stopped")
    runs.write_status(stopped, "stopped")
    assert not widget(stopped).button                                # nothing to control
