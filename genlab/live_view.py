"""The Live run page's parts: one run (and overlaid runs) while it trains, all in the browser.

- Sample grids: a client-side component (GRIDS_JS) holds every grid's URL, one step slider over all
  image panels, Play/Pause and the arrow keys; moving through steps never reruns the page. The
  PNGs come from one confined route of genlab.serve (`sample_route`): /genlab-runs/RUN/samples/FILE,
  RUN a run folder directly under settings.runs_root, FILE a `step_NNNNNN.png` name.
- The view (smoothing, log y, overlays, step) lives in the URL query, so a reload or a shared link
  shows the same thing: `?run=A&overlay=B,C&smooth=0.8&logy=1&step=500`.
- Compare: the differing config fields of the overlaid runs; a run's grid history as a GIF.

Without genlab.serve (plain `streamlit run app.py`, AppTest) the page falls back to Streamlit's own
widgets (a slider and st.image), which rerun the page.
"""
from __future__ import annotations

import io
import math
import os
import re
import time
from dataclasses import dataclass, field
from pathlib import Path

import streamlit as st

from . import runs
from .dashboard import POLL_JS, RUN_NAME
from .settings import Settings

SAMPLES_URL_ENV = "GENLAB_SAMPLES_URL"      # set by genlab.serve where the sample route exists
SAMPLES_PREFIX = "/genlab-runs"
LIVE_ROUTE = "/genlab-live"                 # the live poll (live_route), every dashboard.REFRESH_S
SAMPLE_FILE = re.compile(r"step_\d{6,12}\.png")
GIF_MAX_FRAMES = 60                         # a GIF export holds at most this many grids
GIF_FRAME_MS = 250
MAX_OVERLAYS = 7


# ---------------------------------------------------------------- the view, from and to the URL
@dataclass
class View:
    """What the Live page shows, as read from the URL query; `problems` are the values refused."""
    smoothing: float = 0.6
    log_y: bool = False
    step: int | None = None                 # None: follow the newest grid
    overlay: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


def view_from_query(query: dict) -> View:
    """A View from URL query values (strings); a bad value is reported and its default kept."""
    view = View()
    text = query.get("smooth")
    if text is not None:
        try:
            value = float(text)
        except ValueError:
            value = math.nan
        if 0.0 <= value <= 0.99:
            view.smoothing = value
        else:
            view.problems.append(f"smooth={text[:20]!r} must be a number from 0 to 0.99")
    if query.get("logy") is not None:
        view.log_y = query["logy"].lower() in ("1", "true", "yes")
    text = query.get("step")
    if text is not None:
        if text.isdigit() and len(text) <= 12:
            view.step = int(text)
        else:
            view.problems.append(f"step={text[:20]!r} must be a whole number of steps")
    text = query.get("overlay")
    if text:
        view.overlay = [name for name in text.split(",") if name][:MAX_OVERLAYS]
    return view


def run_names(runs_root: Path) -> list[str]:
    """The run folders under runs_root, newest first: cheap enough for every refresh (no metrics read)."""
    root = Path(runs_root)
    found = []
    try:
        children = list(root.iterdir())
    except OSError:
        return []
    for path in children:
        try:
            if not path.name.startswith("."):
                found.append(((path / "config.json").stat().st_mtime, path.name))
        except OSError:
            continue
    return [name for _, name in sorted(found, reverse=True)]


# ---------------------------------------------------------------- the sample route (genlab.serve)
def sample_file(runs_root: Path, run: str, file: str) -> Path | None:
    """The sample grid RUN/samples/FILE under `runs_root`, or None: names are checked against strict
    patterns, the run must be a run folder (config.json) and the resolved path must stay inside."""
    if not (isinstance(run, str) and isinstance(file, str) and RUN_NAME.fullmatch(run) and SAMPLE_FILE.fullmatch(file)):
        return None
    root = Path(runs_root).resolve()
    run_dir = root / run
    path = (run_dir / "samples" / file)
    try:
        resolved = path.resolve(strict=True)
    except (OSError, RuntimeError):
        return None
    if not resolved.is_relative_to(root / run / "samples") or not (run_dir / "config.json").is_file() \
            or not resolved.is_file():
        return None
    return resolved


def sample_route(settings: Settings):
    """The Starlette route serving sample grids read-only from run folders of settings.runs_root."""
    from starlette.responses import FileResponse, PlainTextResponse
    from starlette.routing import Route

    async def sample_png(request):
        path = sample_file(settings.runs_root, request.path_params["run"], request.path_params["file"])
        if path is None:
            return PlainTextResponse("no such sample grid", status_code=404)
        # A grid's URL carries its mtime (?v=...), so a rewritten grid (after a resume) gets a new URL.
        cache = "public, max-age=31536000, immutable" if request.query_params.get("v") else "no-cache"
        return FileResponse(path, media_type="image/png", headers={"Cache-Control": cache})

    return Route(SAMPLES_PREFIX + "/{run}/samples/{file}", sample_png, methods=["GET", "HEAD"])


def frames(run_dir: Path, prefix: str) -> list[list]:
    """[[step, url], ...] of every sample grid of a run, oldest first; the URL changes with the file."""
    found = []
    for step, path in runs.list_samples(run_dir):
        try:
            version = path.stat().st_mtime_ns
        except OSError:
            continue
        found.append([step, f"{prefix}/{run_dir.name}/samples/{path.name}?v={version}"])
    return found


# ---------------------------------------------------------------- the live poll
BADGE_COLORS = {"green": ("#21c35419", "#158237"), "orange": ("#ffa42119", "#e2660c"), "blue": ("#1c83e119", "#0054a3"),
                "violet": ("#803df519", "#583f84"), "red": ("#ff2b2b17", "#bd4043"), "gray": ("#31333f19", "#31333f")}


def header(run_dir: Path, status: dict | None = None) -> dict:
    """What the status line of a run shows: its state badge, model, data and device, progress, a note
    while it starts; `key` changes with what the page's buttons and step controls show (state, paused
    or pausing, the step while paused, manual steps taken). Pass the `status` the page drew its
    buttons from: a key read later could already name the next state, and the poll would then never
    see a change to rerun the page for."""
    from . import dashboard, runner
    status = runs.read_status(run_dir) if status is None else status
    config = runs.read_json(run_dir / "config.json", {}) or {}
    train = config.get("train", {})
    state = runner.shown_state(run_dir, status)
    paused = state == "running" and runs.is_paused(status)
    fraction, text = dashboard.progress(status, config)
    note = ""
    if status.get("state") == "starting":
        note = (f"Process {status.get('pid')} is loading the data and building the model "
                f"({dashboard.format_age(time.time() - status.get('heartbeat', time.time()))} so far)…")
    color = "orange" if paused else dashboard.STATE_STYLES.get(state, "gray")
    steering = (runs.read_control(run_dir)["mode"], status.get("step") if paused else None, status.get("manual_steps"))
    return {"key": f"{state}:{paused}:{steering}", "name": run_dir.name,
            "badge": f"paused at step {status.get('step', 0)}" if paused else state,
            "colors": BADGE_COLORS[color if color in BADGE_COLORS else "gray"],
            "about": f"{train.get('model')} on {train.get('dataset')} · {status.get('device', train.get('device', ''))}",
            "fraction": fraction, "text": text, "note": note}


def page_key(run_dirs: list[Path], runs_root: Path, state_key: str) -> str:
    """Changes exactly when the page's Streamlit parts must be redrawn (the browser then reruns it):
    the run's state (`state_key`: buttons, step controls), the list of runs (the pickers), the first
    metric line (the curves replace "no metrics yet"), its first grid (the GIF export) and its newest
    denoising strip."""
    import hashlib
    from .dashboard import metrics_signature
    strips = runs.list_samples(run_dirs[0], "strip")
    has_grids = any((run_dirs[0] / "samples").glob("step_*.png"))
    has_metrics = any(size for _, size, _ in metrics_signature(run_dirs))
    parts = (state_key, tuple(run_names(runs_root)), has_metrics, has_grids, strips[-1][0] if strips else None)
    return hashlib.sha1(repr(parts).encode()).hexdigest()[:16]


def live_data(run_dirs: list[Path], runs_root: Path) -> dict:
    """Everything the live parts of the page need, for the page's run (first) and its overlays: the
    status line of the first, every run's grids, the URL of the curves (None before the first metric
    line) and the page_key."""
    from . import dashboard
    signature = dashboard.metrics_signature(run_dirs)
    status_line = header(run_dirs[0])
    return {"header": status_line, "page": page_key(run_dirs, runs_root, status_line["key"]),
            "runs": [{"name": run_dir.name, "frames": frames(run_dir, SAMPLES_PREFIX)} for run_dir in run_dirs],
            "curves": dashboard.curves_url(signature, dashboard.CURVES_ROUTE) if any(s[1] for s in signature) else None}


def live_url(run_dirs: list[Path]) -> str:
    """The live poll's URL for the page's run and its overlays."""
    return f"{LIVE_ROUTE}?runs={','.join(run_dir.name for run_dir in run_dirs)}"


def live_route(settings: Settings):
    """The Starlette route the Live page polls: live_data of up to 8 run folders of settings.runs_root as
    JSON, LIVE_ROUTE?runs=A,B; 304 when the browser's ETag is still current. Any other name is refused."""
    import hashlib
    import json
    from starlette.concurrency import run_in_threadpool
    from starlette.responses import PlainTextResponse, Response
    from starlette.routing import Route
    from .dashboard import run_folders

    async def live(request):
        folders = run_folders(request.query_params.get("runs", "").split(","), settings)
        if folders is None:
            return PlainTextResponse("no such runs", status_code=404)
        body = json.dumps(await run_in_threadpool(live_data, folders, settings.runs_root), separators=(",", ":")).encode()
        etag = '"' + hashlib.sha1(body).hexdigest()[:20] + '"'
        headers = {"ETag": etag, "Cache-Control": "no-cache"}
        if request.headers.get("if-none-match") == etag:
            return Response(status_code=304, headers=headers)
        return Response(body, media_type="application/json", headers=headers)

    return Route(LIVE_ROUTE, live, methods=["GET"])


STATUS_CSS = """
.genlab-status { font-family: "Source Sans Pro", sans-serif; }
.genlab-status h3 { font-size: 1.75rem; font-weight: 600; margin: 0 0 0.4rem; padding: 0; line-height: 1.2;
  overflow-wrap: anywhere; }
.genlab-status .line { font-size: 1rem; margin-bottom: 0.6rem; }
.genlab-status .badge { border-radius: 0.5rem; padding: 0.1rem 0.4rem; font-size: 0.875rem; }
.genlab-status .text { font-size: 0.875rem; margin-bottom: 0.3rem; font-variant-numeric: tabular-nums; }
.genlab-status .bar { height: 0.5rem; border-radius: 0.25rem; background: #f0f2f6; overflow: hidden; }
.genlab-status .fill { height: 100%; background: #ff4b4b; }
.genlab-status .note { font-size: 0.875rem; color: #808495; margin-top: 0.4rem; }
"""

STATUS_JS = POLL_JS + """
export default function (component) {
  const { data, parentElement, setTriggerValue } = component;
  let root = parentElement.querySelector("div.genlab-status");
  if (!root) {
    root = document.createElement("div");
    root.className = "genlab-status";
    root.innerHTML = '<h3></h3><div class="line"><span class="badge"></span> <span class="about"></span></div>' +
      '<div class="text" role="status"></div><div class="bar" role="progressbar" aria-valuemin="0" aria-valuemax="100">' +
      '<div class="fill"></div></div><div class="note"></div>';
    parentElement.appendChild(root);
  }
  root.page = data.page;                            // what the page's Streamlit parts were drawn for
  render(root, data.header);
  subscribe(data.poll, root, data.poll_ms, (live) => {
    render(root, live.header);
    if (live.page !== root.page) { root.page = live.page; setTriggerValue("state", live.page); }   // rerun the page
  });
}

function render(root, header) {
  root.querySelector("h3").textContent = header.name;
  const badge = root.querySelector(".badge");
  badge.textContent = header.badge;
  badge.style.background = header.colors[0]; badge.style.color = header.colors[1];
  root.querySelector(".about").textContent = "· " + header.about;
  root.querySelector(".text").textContent = header.text;
  const percent = Math.round(100 * header.fraction);
  root.querySelector(".fill").style.width = percent + "%";
  root.querySelector(".bar").setAttribute("aria-valuenow", percent);
  root.querySelector(".note").textContent = header.note;
  root.querySelector(".note").hidden = !header.note;
}
"""


@st.cache_resource(show_spinner=False)
def status_component():
    """The live status-line component, registered once per server."""
    return st.components.v2.component("genlab_status", js=STATUS_JS, css=STATUS_CSS, isolate_styles=False)


# ---------------------------------------------------------------- the grids component
GRIDS_CSS = """
.genlab-grids { font-family: "Source Sans Pro", sans-serif; font-size: 14px; outline: none; }
.genlab-grids .bar { display: flex; align-items: center; gap: 10px; flex-wrap: wrap; margin-bottom: 8px; }
.genlab-grids .bar button { min-width: 38px; height: 32px; border: 1px solid #bbb; border-radius: 6px;
  background: #fff; cursor: pointer; font-size: 14px; }
.genlab-grids .bar button:hover { border-color: #ff4b4b; }
.genlab-grids input[type=range] { flex: 1 1 240px; min-width: 160px; accent-color: #ff4b4b; }
.genlab-grids .label { min-width: 150px; font-variant-numeric: tabular-nums; }
.genlab-grids .panels { display: flex; gap: 16px; flex-wrap: wrap; }
.genlab-grids figure { margin: 0; flex: 0 1 330px; min-width: 220px; border-top: 4px solid; padding-top: 4px; }
.genlab-grids figure img { width: 100%; image-rendering: pixelated; display: block; background: #eee; }
.genlab-grids figcaption { font-size: 13px; color: #444; margin-bottom: 4px; overflow: hidden;
  text-overflow: ellipsis; white-space: nowrap; }
.genlab-grids .empty { color: #777; padding: 40px 0; text-align: center; background: #f6f6f6; }
"""

GRIDS_JS = POLL_JS + """
export default function (component) {
  const { data, parentElement } = component;
  let root = parentElement.querySelector("div.genlab-grids");
  if (!root) {
    root = document.createElement("div");
    root.className = "genlab-grids";
    root.tabIndex = 0;
    root.innerHTML = '<div class="bar"><button class="play" title="Play / pause (space)">▶</button>' +
      '<button class="prev" title="Previous grid (←)">◀</button><button class="next" title="Next grid (→)">▶|</button>' +
      '<input type="range" min="0" max="0" value="0" aria-label="grid step">' +
      '<span class="label"></span><label><input type="checkbox" class="follow"> follow newest</label></div>' +
      '<div class="panels"></div>';
    parentElement.appendChild(root);
    root.g = { follow: data.step === null || data.step === undefined, wanted: data.step, timer: null, steps: [] };
    const slider = root.querySelector("input[type=range]");
    slider.addEventListener("input", () => { stop(root); setIndex(root, +slider.value, true); });
    root.querySelector(".play").addEventListener("click", () => toggle(root));
    root.querySelector(".prev").addEventListener("click", () => { stop(root); setIndex(root, root.g.index - 1, true); });
    root.querySelector(".next").addEventListener("click", () => { stop(root); setIndex(root, root.g.index + 1, true); });
    root.querySelector(".follow").addEventListener("change", (e) => {
      root.g.follow = e.target.checked; if (root.g.follow) setIndex(root, root.g.steps.length - 1, false); saveUrl(root); });
    root.addEventListener("keydown", (e) => {
      if (e.target === slider) return;                    // the slider moves itself with the arrows
      if (e.key === "ArrowLeft" || e.key === "ArrowRight") {
        e.preventDefault(); stop(root); setIndex(root, root.g.index + (e.key === "ArrowLeft" ? -1 : 1), true);
      } else if (e.key === " ") { e.preventDefault(); toggle(root); }
    });
  }
  update(root, data);
  if (data.poll) subscribe(data.poll, root, data.poll_ms, (live) => {   // new grids without a rerun
    const frames = Object.fromEntries(live.runs.map((run) => [run.name, run.frames]));
    if (data.runs.every((run) => frames[run.name]))
      update(root, { ...data, runs: data.runs.map((run) => ({ ...run, frames: frames[run.name] })) });
  });
  const url = new URL(window.location.href);          // the run and overlays too: this page owns its URL
  for (const [name, value] of Object.entries(data.query || {}))
    if (value === null) url.searchParams.delete(name); else url.searchParams.set(name, value);
  if (url.href !== window.location.href) window.history.replaceState(window.history.state, "", url);
}

function update(root, data) {
  const g = root.g;
  g.runs = data.runs;
  g.fps = data.fps || 4;
  const steps = [...new Set(data.runs.flatMap((r) => r.frames.map((f) => f[0])))].sort((a, b) => a - b);
  const current = g.steps.length ? g.steps[g.index] : g.wanted;
  g.steps = steps;
  const panels = root.querySelector(".panels");
  if (panels.children.length !== data.runs.length ||
      [...panels.children].some((p, i) => p.dataset.run !== data.runs[i].name)) {
    panels.innerHTML = "";
    for (const run of data.runs) {
      const fig = document.createElement("figure");
      fig.dataset.run = run.name;
      fig.style.borderTopColor = run.color;
      fig.innerHTML = '<figcaption></figcaption><img alt=""><div class="empty" hidden>no grid yet</div>';
      panels.appendChild(fig);
    }
  }
  for (const run of data.runs)                    // warm the browser cache (scrubbing is then instant),
    for (const [, url] of run.frames.slice(-200))  // one at a time after the grids on show
      if (!preloaded.has(url)) { preloaded.add(url); queue.push(url); }
  if (!loading) setTimeout(preloadNext, 1500);
  const slider = root.querySelector("input[type=range]");
  slider.max = Math.max(steps.length - 1, 0);
  slider.disabled = steps.length < 2;
  let index = steps.length - 1;
  if (!g.follow && current !== null && current !== undefined) {
    index = 0;
    for (let i = 0; i < steps.length; i++) if (steps[i] <= current) index = i;
  }
  setIndex(root, index, false);
}

const preloaded = new Set(), queue = [];
let loading = false;

function preloadNext() {
  const url = queue.shift();
  if (!url) { loading = false; return; }
  loading = true;
  const image = new Image();
  image.onload = image.onerror = preloadNext;
  image.src = url;
}

function setIndex(root, index, byUser) {
  const g = root.g;
  if (!g.steps.length) { render(root, null); return; }
  index = Math.max(0, Math.min(index, g.steps.length - 1));
  g.index = index;
  if (byUser) g.follow = index === g.steps.length - 1;
  root.querySelector("input[type=range]").value = index;
  root.querySelector(".follow").checked = g.follow;
  render(root, g.steps[index]);
  if (byUser) saveUrl(root);
}

function render(root, step) {
  const g = root.g;
  const last = g.steps.length ? g.steps[g.steps.length - 1] : null;
  root.querySelector(".label").textContent = step === null ? "no grid yet" : `step ${step} of ${last}`;
  root.querySelector(".play").textContent = g.timer ? "❚❚" : "▶";
  [...root.querySelectorAll("figure")].forEach((fig, i) => {
    const run = g.runs[i];
    let shown = null;
    for (const f of run.frames) if (step !== null && f[0] <= step) shown = f;
    const img = fig.querySelector("img"), empty = fig.querySelector(".empty");
    fig.querySelector("figcaption").textContent = run.name + (shown ? ` · samples at step ${shown[0]}` : "");
    img.hidden = !shown; empty.hidden = !!shown;
    if (shown && img.getAttribute("src") !== shown[1]) {
      img.setAttribute("src", shown[1]);
      img.alt = `${run.name}: samples at step ${shown[0]}`;
    }
  });
}

function stop(root) { if (root.g.timer) { clearInterval(root.g.timer); root.g.timer = null; render(root, root.g.steps[root.g.index]); } }

function toggle(root) {
  const g = root.g;
  if (g.timer) { stop(root); return; }
  if (g.index >= g.steps.length - 1) setIndex(root, 0, true);   // play again from the start
  g.timer = setInterval(() => {
    if (g.index >= g.steps.length - 1) { stop(root); setIndex(root, g.index, true); return; }
    setIndex(root, g.index + 1, false);
  }, 1000 / g.fps);
  render(root, g.steps[g.index]);
}

function saveUrl(root) {                                      // a reload or a shared link shows this step
  const url = new URL(window.location.href);
  if (root.g.follow) url.searchParams.delete("step"); else url.searchParams.set("step", root.g.steps[root.g.index]);
  window.history.replaceState(window.history.state, "", url);
}
"""


@st.cache_resource(show_spinner=False)
def grids_component():
    """The sample-grids component, registered once per server."""
    return st.components.v2.component("genlab_grids", js=GRIDS_JS, css=GRIDS_CSS, isolate_styles=False)


def grids(panels: list[tuple[Path, str]], step: int | None, key: str, query: dict | None = None,
          poll: str | None = None) -> None:
    """Every panel's sample grids under one step slider (Play/Pause, ←/→), client-side when served by
    genlab.serve; `panels` is [(run folder, colour)], `step` the step to show first (None: the newest),
    `query` URL parameters the browser sets (None: removes one) next to its own step, `poll` the live
    poll's URL that brings new grids (None: new grids come with a rerun)."""
    from .dashboard import REFRESH_S
    prefix = os.environ.get(SAMPLES_URL_ENV)
    if prefix is None:
        return fallback_grids(panels, step, key)
    data = {"runs": [{"name": run_dir.name, "color": color, "frames": frames(run_dir, prefix)}
                     for run_dir, color in panels], "step": step, "fps": 4, "query": query or {},
            "poll": poll, "poll_ms": int(REFRESH_S * 1000)}
    grids_component()(key=key, data=data)


def fallback_grids(panels: list[tuple[Path, str]], step: int | None, key: str) -> None:
    """The server-side grids: a step slider (reruns the page) and one st.image per run."""
    samples = {run_dir: runs.list_samples(run_dir) for run_dir, _ in panels}
    steps = sorted({s for found in samples.values() for s, _ in found})
    if not steps:
        st.info("No sample grid yet: the first is drawn before the first step.")
        return
    chosen = steps[-1] if step is None else max([s for s in steps if s <= step] or steps[:1])
    if len(steps) > 1:
        chosen = st.select_slider("grid at step", options=steps, value=chosen, key=f"{key}-step")
    columns = st.columns(len(panels))
    for column, (run_dir, _) in zip(columns, panels):
        shown = [(s, p) for s, p in samples[run_dir] if s <= chosen]
        if shown:
            column.image(str(shown[-1][1]), caption=f"{run_dir.name}: samples at step {shown[-1][0]}", width="stretch")
        else:
            column.caption(f"{run_dir.name}: no grid yet")


# ---------------------------------------------------------------- compare and export
def flat_config(config: dict) -> dict:
    """{"train.lr": 0.0002, "model.z_dim": 100, ...} of a run config."""
    return {f"{part}.{name}": value for part in ("train", "model") for name, value in (config.get(part) or {}).items()}


def config_diff(configs: dict[str, dict]) -> list[dict]:
    """One row per config field whose value is not the same in every run: {"field", run: value, ...}."""
    flat = {name: flat_config(config) for name, config in configs.items()}
    fields = sorted({key for values in flat.values() for key in values})
    rows = []
    for key in fields:
        values = [flat[name].get(key, "–") for name in flat]
        if any(v != values[0] for v in values[1:]):
            rows.append({"field": key, **{name: "–" if v is None else str(v) for name, v in zip(flat, values)}})
    return rows


def grid_gif(run_dir: Path, max_frames: int = GIF_MAX_FRAMES, frame_ms: int = GIF_FRAME_MS) -> bytes:
    """A run's sample grids as an animated GIF, at most `max_frames` of them (evenly spaced, the first
    and the newest kept), each labelled with its step."""
    from PIL import Image, ImageDraw
    samples = runs.list_samples(run_dir)
    if not samples:
        raise ValueError(f"{run_dir.name} has no sample grids yet")
    if len(samples) > max_frames:
        picks = sorted({round(i * (len(samples) - 1) / (max_frames - 1)) for i in range(max_frames)})
        samples = [samples[i] for i in picks]
    images = []
    for step, path in samples:
        with Image.open(path) as grid:
            grid = grid.convert("RGB")
        frame = Image.new("RGB", (grid.width, grid.height + 16), "white")
        frame.paste(grid, (0, 16))
        ImageDraw.Draw(frame).text((3, 2), f"step {step}", fill="black")
        images.append(frame.convert("P", palette=Image.Palette.ADAPTIVE, colors=128))
    buffer = io.BytesIO()
    images[0].save(buffer, format="GIF", save_all=True, append_images=images[1:], duration=frame_ms, loop=0,
                   optimize=False)
    return buffer.getvalue()


# ---------------------------------------------------------------- the page's live part
def served() -> bool:
    """Whether genlab.serve serves plotly.js, the sample grids and the curves (the client-side view works)."""
    from .dashboard import CURVES_URL_ENV
    return all(os.environ.get(name) for name in ("GENLAB_PLOTLY_JS", SAMPLES_URL_ENV, CURVES_URL_ENV))


def live_run(run_dir: Path, overlay: list[Path], view: View, settings: Settings, owner: str) -> None:
    """State, progress, Stop/Resume, the curves (overlaid runs too), every run's grids under one step
    slider, and the comparison of the overlaid runs' configs."""
    from . import dashboard
    from .step_controls import step_controls
    if not (run_dir / "config.json").exists():
        st.warning(f"{run_dir.name} has been deleted.")
        return
    status = runs.read_status(run_dir)
    shown = [run_dir, *overlay]
    poll = live_url(shown) if served() else None
    head, buttons = st.columns([4, 1])
    with head:
        if poll:                                  # updated in the browser by the live poll, no rerun
            status_line = header(run_dir, status)          # the status the buttons below are drawn from
            status_component()(key=f"status-{run_dir.name}", on_state_change=lambda: None,
                               data={"header": status_line, "page": page_key(shown, settings.runs_root, status_line["key"]),
                                     "poll": poll, "poll_ms": int(dashboard.REFRESH_S * 1000)})
        else:
            config = runs.read_json(run_dir / "config.json", {}) or {}
            train_cfg = config.get("train", {})
            st.markdown(f"### {run_dir.name}  \n{dashboard.state_label(run_dir, status)} · {train_cfg.get('model')} on "
                        f"{train_cfg.get('dataset')} · {status.get('device', train_cfg.get('device', ''))}")
            fraction, text = dashboard.progress(status, config)
            st.progress(fraction, text=text)
            if status.get("state") == "starting":
                st.caption(f"Process {status.get('pid')} is loading the data and building the model "
                           f"({dashboard.format_age(time.time() - status.get('heartbeat', time.time()))} so far)…")
    with buttons:
        dashboard.run_controls(run_dir, status, run_dir.name, settings, owner)
    step_controls(run_dir, status, settings, owner, key=run_dir.name)      # Pause, D / G only, ×k, slow motion
    if status.get("state") in ("failed", "interrupted"):
        from . import runner
        st.error(f"{status['state']}: {status.get('error') or 'no error recorded'}")
        log = runner.read_log(run_dir)
        if status.get("traceback") or log:
            with st.expander("details"):
                st.code(status.get("traceback") or log)
    colors = {p: dashboard.RUN_COLORS[i % len(dashboard.RUN_COLORS)] for i, p in enumerate(shown)}
    st.markdown("**Sample grids** · the same latents at every grid" +
                (" · one slider for all runs: drag it, ←/→, or Play" if served() else ""))
    grids([(p, colors[p]) for p in shown], view.step, key=f"grids-{run_dir.name}",
          query={"run": run_dir.name, "overlay": ",".join(p.name for p in overlay) or None}, poll=poll)
    denoising_strip(run_dir)
    compare_and_export(run_dir, overlay)
    st.markdown("**Curves** · every metric the model logs, one colour per run")
    if not dashboard.live_curves(dashboard.metrics_signature(shown), key=f"curves-{run_dir.name}",
                                 smoothing=view.smoothing, log_y=view.log_y, poll=poll):
        st.info("No metrics yet: the first line is written after `log_every` steps.")


def denoising_strip(run_dir: Path) -> None:
    """The newest denoising strip of a run whose model has a sampling trajectory (nothing for other runs):
    refreshed with the page, not moved by the grids' step slider."""
    strips = runs.list_samples(run_dir, "strip")
    if not strips:
        return
    step, path = strips[-1]
    st.markdown(f"**Denoising** at step {step} · from noise (left) to the image (right), a few sampling steps; "
                "per seed the state x_t above the model's prediction of the final image")
    column, _ = st.columns([2, 1])
    column.image(str(path), caption=f"{run_dir.name}: denoising strip at step {step}", width="stretch")


def compare_and_export(run_dir: Path, overlay: list[Path]) -> None:
    """The config fields where the overlaid runs differ, and the grid history as a GIF download."""
    left, right = st.columns([4, 1], vertical_alignment="center")
    with left:
        if overlay:
            configs = {p.name: runs.read_json(p / "config.json", {}) or {} for p in [run_dir, *overlay]}
            rows = config_diff(configs)
            with st.expander(f"Config differences ({len(rows)} fields)", icon=":material/difference:"):
                if rows:
                    st.dataframe(rows, hide_index=True, width="stretch")
                else:
                    st.caption("The runs have the same config.")
    with right:
        samples = runs.list_samples(run_dir)
        st.download_button("Time-lapse GIF", data=lambda: grid_gif(run_dir), file_name=f"{run_dir.name}.gif",
                           mime="image/gif", icon=":material/movie:", key=f"gif-{run_dir.name}", on_click="ignore",
                           disabled=not samples, help=f"The grid history of {run_dir.name} as an animated GIF "
                                                      f"(at most {GIF_MAX_FRAMES} grids, evenly spaced).")
