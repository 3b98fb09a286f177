"""The Streamlit dashboard's building blocks; the pages (app.py, pages/*.py) only arrange them.

Everything shown is read from run folders (`genlab.runs`); runs are started, stopped, resumed
and deleted through `genlab.runner`. Live parts are `st.fragment(run_every=...)` reruns on the
script thread: no Streamlit call is ever made from a background thread.

Each page reads `Settings.from_env()` once and passes it down. Each browser session holds an owner
token (`owner_token`, kept in st.session_state: a reload of the page starts a new session and so a
new token); on a public server Stop / Resume / Delete are offered only for the runs this token
started (`runner.can_control`), while every run can be watched.
"""
from __future__ import annotations

import base64
import hashlib
import io
import json
import math
import os
import re
import time
import urllib.parse
from pathlib import Path

import streamlit as st

from . import runner, runs
from .config import DATASETS, ConfigError, TrainConfig, field_specs
from .data import NATIVE_SHAPES, ROOTED_DATASETS
from .models import MODELS, get_model_class
from .settings import Settings

REFRESH_S = 2.0                       # live views rerun this often
CURVES_URL_ENV = "GENLAB_CURVES_URL"  # set by genlab.serve where the curves route exists
CURVES_ROUTE = "/genlab-curves"
RUN_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,199}")    # a run folder's name
NOT_PLOTTED = {"step", "epoch", "time", "images_per_s"}
METRIC_TITLES = {"loss/d": "D loss", "loss/g": "G loss", "d/real": "D(x)", "d/fake": "D(G(z))",
                 "r1/grad_norm": "R1 gradient norm ‖∇D(x)‖", "loss/total": "Total loss (VAE: negative ELBO)",
                 "loss/recon": "VAE reconstruction −log p(x|z)", "loss/kl": "VAE KL(q(z|x) ‖ p(z))",
                 "loss/info": "InfoGAN mutual-information loss", "info/mi_cat": "MI lower bound, categorical",
                 "info/mi_cont": "MI lower bound, continuous", "info/cat_acc": "Q accuracy on categorical code",
                 "loss/t_low": "Loss, t in the first third", "loss/t_mid": "Loss, t in the middle third",
                 "loss/t_high": "Loss, t in the last third"}
STATE_STYLES = {"starting": "orange", "running": "green", "stopping": "orange", "stopped": "blue",
                "finished": "violet", "failed": "red", "interrupted": "red", "missing": "gray"}
# Quick-eval metrics shown as best-so-far in the runs table: key -> (title, lower is better)
BEST_METRICS = {"eval/fid": ("FID", True), "eval/kid_x1000": ("KID×1000", True), "eval/coverage": ("classes", False),
                "eval/judge_acc": ("judge acc.", False), "eval/elbo": ("ELBO", False)}
RUN_COLORS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#17becf", "#8c564b", "#e377c2")
# Train-page fields, in order (data root and data path are chosen above the form, see `data_source`).
TRAIN_FIELDS = ("steps", "batch_size", "device", "seed", "image_size", "channels", "max_images",
                "log_every", "sample_every", "checkpoint_every", "eval_every", "amp", "channels_last", "compile")
ICON = str(Path(__file__).resolve().parent / "assets" / "icon.png")   # the tab icon, served locally
MEMORY_NAME = ".genlab/data_roots.json"   # RUNS_ROOT/.genlab/data_roots.json: data roots used before
MEMORY_KEEP = 8                           # folders remembered
MAX_PATH_CHARS = 400                      # a remembered folder's path


# ---------------------------------------------------------------- numbers (no Streamlit)
def ema(values: list[float], smoothing: float) -> list[float]:
    """Bias-corrected exponential moving average: m_t = s m_{t-1} + (1-s) x_t, shown as m_t / (1 - s^t)."""
    smoothed, mean, weight = [], 0.0, 0.0
    for value in values:
        if not math.isfinite(value):
            smoothed.append(value)
            continue
        mean = smoothing * mean + (1 - smoothing) * value
        weight = smoothing * weight + (1 - smoothing)          # = 1 - s^t over the finite values seen
        smoothed.append(mean / weight)
    return smoothed


def metric_keys(records: list[dict]) -> list[str]:
    """The plotted metric names of some metric lines, losses first, in a stable order."""
    keys = {k for r in records for k, v in r.items() if k not in NOT_PLOTTED and isinstance(v, (int, float))}
    order = list(METRIC_TITLES)
    return sorted(keys, key=lambda k: (order.index(k) if k in order else len(order), k))


PANEL_HEIGHT, PANEL_GAP, TOP_MARGIN = 270, 80, 70      # px: one panel row, between rows, legend and title
GRID_COLOR = "#EBF0F8"                                  # plotly_white's grid and axis lines


def curves_figure(series: dict[str, list[dict]], smoothing: float = 0.6, log_y: bool = False,
                  colors: dict[str, str] | None = None) -> dict:
    """The curves as a plotly figure in plain JSON form ({"data", "layout"}, as plotly.js takes it):
    one panel per logged metric (x: step, y: the metric), each run a faint raw line under its smoothed
    line, in one colour per run (`colors`, else RUN_COLORS in order) on every panel.

    Runs of different families share a panel only for a metric they both log; each run is in the
    legend once, whichever panels it has. Each smoothed trace names its raw trace in `meta.raw`, so
    the browser can re-smooth without the server (CURVES_JS). Hover shows raw and smoothed values of
    every run at that step. Built as dicts, not plotly.graph_objects: a live page rebuilds it at
    every new metric line, and the validated objects cost ~100x more CPU than this.
    """
    keys = metric_keys([r for records in series.values() for r in records])
    columns = 2 if len(keys) > 1 else 1
    rows = max(1, math.ceil(len(keys) / columns))
    height = PANEL_HEIGHT * rows + TOP_MARGIN
    h_gap, v_gap = 0.07, min(0.3, PANEL_GAP / height)
    width, row_height = (1 - h_gap * (columns - 1)) / columns, (1 - v_gap * (rows - 1)) / rows
    layout = {"height": height, "hovermode": "x unified", "showlegend": True, "uirevision": "curves",
              "paper_bgcolor": "white", "plot_bgcolor": "white", "annotations": [],
              "font": {"family": "Source Sans Pro, sans-serif", "size": 12},
              "margin": {"l": 10, "r": 44, "t": 64, "b": 10},     # the toolbar sits vertically in the right margin
              "modebar": {"orientation": "v"},
              "legend": {"orientation": "h", "yref": "container", "y": 1, "yanchor": "top", "x": 0,
                         "font": {"size": 13}}}
    axis_style = {"gridcolor": GRID_COLOR, "linecolor": GRID_COLOR, "zerolinecolor": GRID_COLOR, "automargin": True,
                  "title": {"font": {"size": 11}}}
    for index, key in enumerate(keys):                       # panel `index`: axes x{n} and y{n}, n = index + 1
        row, column = divmod(index, columns)
        suffix = "" if index == 0 else str(index + 1)
        x_domain = [round(column * (width + h_gap), 6), round(column * (width + h_gap) + width, 6)]
        y_top = round(1 - row * (row_height + v_gap), 6)
        layout[f"xaxis{suffix}"] = {**axis_style, "domain": x_domain, "anchor": f"y{suffix}", "showgrid": True,
                                    "title": {"text": "step", "font": {"size": 11}, "standoff": 4},
                                    "showspikes": True, "spikemode": "across", "spikethickness": 1,
                                    "spikecolor": "#999"}
        layout[f"yaxis{suffix}"] = {**axis_style, "domain": [max(0.0, round(y_top - row_height, 6)), y_top], "anchor": f"x{suffix}",
                                    "type": "log" if log_y else "linear",
                                    "title": {"text": key, "font": {"size": 11}}}
        layout["annotations"].append({"text": METRIC_TITLES.get(key, key), "x": sum(x_domain) / 2, "y": y_top,
                                      "xref": "paper", "yref": "paper", "xanchor": "center", "yanchor": "bottom",
                                      "yshift": 4, "showarrow": False, "font": {"size": 14}})
    data, in_legend = [], set()
    for run_index, (name, records) in enumerate(series.items()):
        color = (colors or {}).get(name) or RUN_COLORS[run_index % len(RUN_COLORS)]
        for index, key in enumerate(keys):
            points = [(r["step"], r[key]) for r in records if key in r and "step" in r]
            if not points:
                continue
            steps, values = (list(v) for v in zip(*points))
            axes = {"xaxis": f"x{index + 1 if index else ''}", "yaxis": f"y{index + 1 if index else ''}"}
            data.append({"type": "scatter", "mode": "lines", "x": steps, "y": values, **axes, "opacity": 0.3,
                         "line": {"color": color, "width": 1}, "name": f"{name} (raw)", "legendgroup": name,
                         "showlegend": False, "hovertemplate": f"{name} raw: %{{y:.4g}}<extra></extra>"})
            data.append({"type": "scatter", "mode": "lines", "x": steps, "y": ema(values, smoothing), **axes,
                         "line": {"color": color, "width": 2}, "name": name, "legendgroup": name,
                         "showlegend": name not in in_legend, "meta": {"raw": len(data) - 1},
                         "hovertemplate": f"{name} smoothed: %{{y:.4g}}<extra></extra>"})
            in_legend.add(name)
    return {"data": data, "layout": layout}


def metrics_signature(run_dirs: list[Path]) -> tuple:
    """(run folder, size, mtime) of each run's metrics.jsonl: changes exactly when new lines arrive."""
    signature = []
    for run_dir in run_dirs:
        try:
            stat = (Path(run_dir) / "metrics.jsonl").stat()
            signature.append((str(run_dir), stat.st_size, stat.st_mtime_ns))
        except FileNotFoundError:
            signature.append((str(run_dir), 0, 0))
    return tuple(signature)


@st.cache_resource(max_entries=64, show_spinner=False)
def cached_curves(signature: tuple, smoothing: float, log_y: bool) -> dict | None:
    """curves_figure for these metric files, built once per version of them (shared by every open tab);
    each run keeps the colour of its place in the signature (the page's run first, then the overlays)."""
    return curves_figure_for(signature, smoothing, log_y)


@st.cache_resource(max_entries=64, show_spinner=False)
def cached_curves_json(signature: tuple) -> tuple[bytes, int] | None:
    """(the figure as JSON, its height) for the curves component, encoded once per version of the
    metrics and shared by the page (height) and the curves route (JSON). The smoothed lines' y are left
    out: the browser computes them from the raw lines with its own smoothing."""
    figure = curves_figure_for(signature)
    if figure is None:
        return None
    data = [{**trace, "y": None} if "meta" in trace else trace for trace in figure["data"]]
    return json.dumps({"data": data, "layout": figure["layout"]}, separators=(",", ":")).encode(), \
        figure["layout"]["height"]


def curves_figure_for(signature: tuple, smoothing: float = 0.0, log_y: bool = False) -> dict | None:
    """The figure of a metrics_signature (None before any metric line), one colour per run in order;
    no smoothing by default (the browser smooths)."""
    series = {Path(run_dir).name: runs.read_metrics(Path(run_dir)) for run_dir, _, _ in signature}
    colors = {name: RUN_COLORS[i % len(RUN_COLORS)] for i, name in enumerate(series)}
    return curves_figure(series, smoothing, log_y, colors) if any(series.values()) else None


def curves_url(signature: tuple, prefix: str) -> str:
    """The curves route's URL for these runs; `v` changes exactly when a metrics file does."""
    names = ",".join(Path(run_dir).name for run_dir, _, _ in signature)
    version = hashlib.sha1(repr(signature).encode()).hexdigest()[:16]
    return f"{prefix}?{urllib.parse.urlencode({'runs': names, 'v': version})}"


def run_folders(names: list[str], settings: Settings) -> list[Path] | None:
    """The run folders called `names` directly under settings.runs_root (a browser's request), or None
    if any name is not one, or there are more than len(RUN_COLORS)."""
    root = Path(settings.runs_root).resolve()
    if not 1 <= len(names) <= len(RUN_COLORS):
        return None
    folders = []
    for name in names:
        path = run_path(name, settings) if RUN_NAME.fullmatch(name) else None
        if path is None or path.resolve().parent != root:
            return None
        folders.append(path)
    return folders


def curves_route(settings: Settings):
    """The Starlette route serving the curves of up to len(RUN_COLORS) run folders of settings.runs_root
    as plotly JSON (read-only): CURVES_ROUTE?runs=A,B,C. Any other name is refused."""
    from starlette.concurrency import run_in_threadpool
    from starlette.responses import PlainTextResponse, Response
    from starlette.routing import Route

    async def curves(request):
        folders = run_folders(request.query_params.get("runs", "").split(","), settings)
        if folders is None:
            return PlainTextResponse("no such runs", status_code=404)
        encoded = await run_in_threadpool(cached_curves_json, metrics_signature(folders))
        if encoded is None:
            return PlainTextResponse("no metrics yet", status_code=404)
        return Response(encoded[0], media_type="application/json", headers={"Cache-Control": "no-store"})

    return Route(CURVES_ROUTE, curves, methods=["GET"])


# The live parts of the Live page (status line, grids, curves) poll one JSON route of genlab.serve
# (live_view.live_route) instead of rerunning the page: one small request every REFRESH_S, answered
# 304 while nothing changed. POLL_JS is shared by their components: one poll per URL for the page,
# which stops once none of its elements is on the page any more.
POLL_JS = """
function subscribe(url, element, pollMs, callback) {
  const hub = (window.genlabPolls = window.genlabPolls || {});
  if (element.genlabPoll && element.genlabPoll !== url && hub[element.genlabPoll])
    hub[element.genlabPoll].listeners.delete(element);
  element.genlabPoll = url;
  let poll = hub[url];
  if (!poll) {
    poll = hub[url] = { listeners: new Map(), etag: null };
    const tick = async () => {
      for (const el of [...poll.listeners.keys()]) if (!el.isConnected) poll.listeners.delete(el);
      if (!poll.listeners.size) { delete hub[url]; return; }
      if (!document.hidden) {
        try {
          const response = await fetch(url, { headers: poll.etag ? { "If-None-Match": poll.etag } : {} });
          if (response.status === 200) {
            poll.etag = response.headers.get("ETag");
            const live = await response.json();
            for (const listener of poll.listeners.values()) listener(live);
          }
        } catch (error) { /* the server restarts or the network drops: try again at the next tick */ }
      }
      setTimeout(tick, pollMs);
    };
    setTimeout(tick, pollMs);
  }
  poll.listeners.set(element, callback);
}
"""


# Live curves. st.plotly_chart gives a chart a new identity whenever its data changes, so the browser
# rebuilds it and the user's zoom is lost at every refresh. This component keeps one element (stable
# key) and one plot div, and updates it with Plotly.react: with layout.uirevision fixed, zoom and
# pan survive. plotly.js is the copy in the plotly package, served by genlab.serve ($GENLAB_PLOTLY_JS).
# Smoothing and log y are applied here in the browser (no rerun per slider key) and kept in the URL.
CURVES_CSS = """
.genlab-curves-bar { display: flex; align-items: center; gap: 14px; font-family: "Source Sans Pro", sans-serif;
  font-size: 14px; margin: 2px 0 4px; flex-wrap: wrap; }
.genlab-curves-bar input[type=range] { width: 220px; accent-color: #ff4b4b; }
.genlab-curves-bar .value { min-width: 34px; font-variant-numeric: tabular-nums; }
"""

CURVES_JS = POLL_JS + """
export default function (component) {
  const { data, parentElement } = component;
  let plot = parentElement.querySelector("div.genlab-curves");
  if (!plot) {
    const bar = document.createElement("div");
    bar.className = "genlab-curves-bar";
    bar.innerHTML = '<label title="Bias-corrected exponential moving average over the faint raw line">smoothing ' +
      '<input type="range" class="smooth" min="0" max="0.99" step="0.01"></label><span class="value"></span>' +
      '<label><input type="checkbox" class="logy"> log-scale y</label>';
    parentElement.appendChild(bar);
    plot = document.createElement("div");
    plot.className = "genlab-curves";
    plot.style.width = "100%";
    parentElement.appendChild(plot);
    plot.view = { smoothing: data.smoothing, logY: data.log_y };
    const smooth = bar.querySelector(".smooth"), logy = bar.querySelector(".logy");
    smooth.value = data.smoothing; logy.checked = data.log_y;
    bar.querySelector(".value").textContent = (+data.smoothing).toFixed(2);
    smooth.addEventListener("input", () => {
      plot.view.smoothing = +smooth.value;
      bar.querySelector(".value").textContent = plot.view.smoothing.toFixed(2);
      draw(plot); saveUrl("smooth", plot.view.smoothing.toFixed(2));
    });
    logy.addEventListener("change", () => { plot.view.logY = logy.checked; draw(plot); saveUrl("logy", logy.checked ? "1" : null); });
  }
  if (!window.genlabPlotly) {
    window.genlabPlotly = new Promise((resolve, reject) => {
      const script = document.createElement("script");
      script.src = data.plotly_js;
      script.onload = () => resolve(window.Plotly);
      script.onerror = () => reject(new Error("could not load " + data.plotly_js));
      document.head.appendChild(script);
    });
  }
  if (data.poll) subscribe(data.poll, plot, data.poll_ms, (live) => { if (live.curves) load(plot, live.curves); });
  load(plot, data.url);
}

function load(plot, url) {
  if (plot.url === url) return;                     // no new metric lines: nothing to redraw
  plot.url = url;
  fetch(url).then((response) => response.ok ? response.json() : null).then((figure) => {
    if (!figure || plot.url !== url) return;        // a newer version is on its way
    plot.figure = figure;
    scheduleDraw(plot);
  });
}

// New metric lines arrive every few seconds while a run trains; redrawing every panel each time would
// cost the training process CPU. They are drawn at most every MIN_REDRAW_MS, and only once the plot is
// on screen (scrolled away, it is drawn when it comes back). The user's own changes draw at once.
const MIN_REDRAW_MS = 5000;

function scheduleDraw(plot) {
  if (!plot.observer) {
    plot.visible = true;
    plot.observer = new IntersectionObserver((entries) => {
      plot.visible = entries[entries.length - 1].isIntersecting;
      if (plot.visible && plot.pending) scheduleDraw(plot);
    });
    plot.observer.observe(plot);
  }
  plot.pending = true;
  if (plot.timer || !plot.visible) return;
  const wait = plot.drawnAt ? plot.drawnAt + MIN_REDRAW_MS - Date.now() : 0;
  plot.timer = setTimeout(() => { plot.timer = null; if (plot.visible && plot.pending) draw(plot); }, Math.max(wait, 0));
}

function ema(values, s) {                           // the same bias-corrected EMA as genlab.dashboard.ema
  let mean = 0, weight = 0;
  return values.map((v) => {
    if (v === null || !isFinite(v)) return v;
    mean = s * mean + (1 - s) * v; weight = s * weight + (1 - s);
    return mean / weight;
  });
}

function draw(plot) {
  if (!plot.figure) return;
  plot.pending = false;
  plot.drawnAt = Date.now();
  const { data, layout } = plot.figure, view = plot.view;
  for (const trace of data)
    if (trace.meta && trace.meta.raw !== undefined) trace.y = ema(data[trace.meta.raw].y, view.smoothing);
  for (const key of Object.keys(layout)) if (key.startsWith("yaxis")) layout[key].type = view.logY ? "log" : "linear";
  window.genlabPlotly.then((Plotly) =>
    Plotly.react(plot, data, layout, { displaylogo: false, responsive: true }));
}

function saveUrl(name, value) {                     // a reload or a shared link keeps the view
  const url = new URL(window.location.href);
  if (value === null) url.searchParams.delete(name); else url.searchParams.set(name, value);
  window.history.replaceState(window.history.state, "", url);
}
"""


@st.cache_resource(show_spinner=False)
def curves_component():
    """The live-curves component, registered once per server."""
    return st.components.v2.component("genlab_curves", js=CURVES_JS, css=CURVES_CSS, isolate_styles=False)


def live_curves(signature: tuple, key: str, smoothing: float = 0.6, log_y: bool = False,
                poll: str | None = None) -> bool:
    """Show the curves of the runs in a metrics_signature (False: no metrics yet). Served by genlab.serve,
    new versions update the plot in place (zoom kept), found by the page's live poll (`poll`, see
    live_view.live_route) or by a rerun, and smoothing / log y are the browser's own controls, starting
    at `smoothing` and `log_y`; otherwise a st.plotly_chart."""
    plotly_js, prefix = os.environ.get("GENLAB_PLOTLY_JS"), os.environ.get(CURVES_URL_ENV)
    if plotly_js is None or prefix is None:     # plain `streamlit run app.py`: no plotly.js or curves route
        figure = cached_curves(signature, smoothing, log_y)
        if figure is not None:
            st.plotly_chart(figure, key=key, config={"displaylogo": False})
        return figure is not None
    encoded = cached_curves_json(signature)
    if encoded is None:
        return False
    curves_component()(key=key, data={"url": curves_url(signature, prefix), "plotly_js": plotly_js,
                                      "smoothing": smoothing, "log_y": log_y, "poll": poll,
                                      "poll_ms": int(REFRESH_S * 1000)}, height=encoded[1] + 36)
    return True


def format_age(seconds: float) -> str:
    """'12 s', '5 min', '3 h', '2 d'."""
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds / size:.0f} {unit}"
    return f"{max(seconds, 0):.0f} s"


def progress(status: dict, config: dict) -> tuple[float, str]:
    """(fraction done, 'step 1200 / 3000 · 850 images/s · ETA 2 min') of a run."""
    step = status.get("step", 0) or 0
    total = status.get("total_steps") or config.get("train", {}).get("steps") or max(step, 1)
    text = f"step {step} / {total}"
    images_per_s = status.get("images_per_s")
    if images_per_s:
        text += f" · {images_per_s:,.0f} images/s"
        if runs.is_active(status) and step < total:
            batch = config.get("train", {}).get("batch_size", 1)
            text += f" · ETA {format_age((total - step) * batch / images_per_s)}"
    return min(step / total, 1.0), text


def last_losses(metrics: dict) -> str:
    """'D 0.52 · G 1.9' from a metric line: the losses only."""
    return " · ".join(f"{METRIC_TITLES.get(k, k).replace(' loss', '')} {v:.3g}" for k, v in metrics.items()
                      if k.startswith("loss/") and isinstance(v, (int, float)))


def thumbnail_uri(path: Path | None, size: int = 96) -> str | None:
    """A small PNG of a sample grid as a data: URI (for tables), or None."""
    if path is None:
        return None
    try:
        return _thumbnail(str(path), Path(path).stat().st_mtime, size)
    except OSError:
        return None


@st.cache_data(max_entries=512, show_spinner=False)
def _thumbnail(path: str, mtime: float, size: int) -> str | None:
    """thumbnail_uri's work, cached per file version (mtime is part of the key)."""
    from PIL import Image
    try:
        with Image.open(path) as image:
            image.thumbnail((size, size))
            buffer = io.BytesIO()
            image.save(buffer, format="PNG")
    except OSError:
        return None
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def run_path(name: str | None, settings: Settings) -> Path | None:
    """The folder of the run called `name` under the runs root, or None for an unknown name."""
    if not isinstance(name, str) or not name or "/" in name or "\\" in name or name.startswith("."):
        return None
    path = Path(settings.runs_root) / name
    return path if (path / "config.json").exists() else None


def owner_token(settings: Settings) -> str:
    """This browser session's owner token (made once per session, kept in st.session_state)."""
    if "genlab_owner" not in st.session_state:
        st.session_state["genlab_owner"] = runner.new_owner_token(settings)
    return st.session_state["genlab_owner"]


# ---------------------------------------------------------------- what the Train form offers
def offered_datasets(settings: Settings) -> list[str]:
    """The data sets a visitor may pick: all locally, only the built-in ones on a public server."""
    if settings.public and settings.limits.builtin_data_only:
        return [d for d in DATASETS if d != "imagefolder"]
    return list(DATASETS)


def train_specs(settings: Settings) -> dict[str, dict]:
    """TrainConfig's field specs with the public caps folded into their ranges and help."""
    specs = {s["name"]: dict(s) for s in field_specs(TrainConfig)}
    if not settings.public:
        return specs
    lim = settings.limits
    caps = {"steps": ("high", lim.max_steps), "batch_size": ("high", lim.max_batch_size),
            "image_size": ("high", lim.max_image_size), "sample_every": ("low", lim.min_sample_every),
            "checkpoint_every": ("low", lim.min_checkpoint_every)}
    for name, (side, cap) in caps.items():
        if cap is None:
            continue
        spec = specs[name]
        old = spec[side]
        spec[side] = cap if old is None else (min(old, cap) if side == "high" else max(old, cap))
        default = spec["default"]
        if default is not None:
            spec["default"] = min(default, spec[side]) if side == "high" else max(default, spec[side])
        spec["help"] += f" {'At most' if side == 'high' else 'At least'} {spec[side]} on this server."
    return specs


def in_range(spec: dict, value) -> str | None:
    """Why a value does not fit a field's type, choices or range (None: it fits)."""
    kind = spec["type"]
    if spec["choices"] and value not in spec["choices"]:
        return f"must be one of {', '.join(map(str, spec['choices']))}"
    if kind in (int, float) and not isinstance(value, bool):
        if kind is float and not math.isfinite(value):
            return "must be a finite number"
        if spec["low"] is not None and value < spec["low"]:
            return f"must be at least {spec['low']}"
        if spec["high"] is not None and value > spec["high"]:
            return f"must be at most {spec['high']}"
    return None


# ---------------------------------------------------------------- widgets
class InvalidField(ValueError):
    """A form field whose text is not a valid value; the Start button reports it."""


def field_widget(spec: dict, key: str, default=None):
    """One input widget for a config field, from its type, choices, range and help. A default out of
    range (e.g. from the URL) is replaced by the field's own default, so the widget always renders.
    Numbers are checked here, not by the widget (a browser number box refuses an out-of-range value
    silently): a value that is not valid comes back as an InvalidField naming the field."""
    label = spec["name"].replace("_", " ")
    value = spec["default"] if default is None or in_range(spec, default) else default
    help_text = spec["help"]                               # the range in words (the widget has none)
    if spec["low"] is not None and "At least" not in help_text:
        help_text += f" At least {spec['low']}."
    if spec["high"] is not None and "At most" not in help_text:
        help_text += f" At most {spec['high']}."
    if spec["choices"]:
        options = list(spec["choices"])
        return st.selectbox(label, options, index=options.index(value) if value in options else 0,
                            help=spec["help"], key=key)
    if spec["type"] is bool:
        return st.checkbox(label, value=bool(value), help=spec["help"], key=key)
    if spec["type"] is int:
        if value is None:                                  # optional int: empty means None
            text = st.text_input(label, value="", help=help_text + " Empty: none.", key=key).strip()
            if not text:
                return None
            problem = in_range(spec, int(text)) if text.isdigit() else "is not a whole number"
            return InvalidField(f"{label}: {text!r} {problem}") if problem else int(text)
        number = st.number_input(label, value=int(value), step=1, help=help_text, key=key)
    elif spec["type"] is float:
        small = spec["log"] or (value and abs(value) < 1e-2)
        number = st.number_input(label, value=float(value), help=help_text, key=key,
                                 step=float(value) / 10 if spec["log"] and value else 0.01,
                                 format="%.2e" if small else "%.4g")
    else:
        text = st.text_input(label, value="" if value is None else str(value), help=spec["help"], key=key)
        return text or (None if spec["default"] is None else text)
    problem = in_range(spec, number)
    return InvalidField(f"{label}: {number:g} {problem}") if problem else number


def config_form(model: str, dataset: str, prefill: dict, settings: Settings, data: dict | None = None) -> dict:
    """Widgets for the model's own config and the training settings; returns {"train", "model"}.
    `data` is what `data_source` returned (data_root, data_path); without it, the server's data root.
    A field whose text is invalid is an InvalidField value (see `form_problems`)."""
    model_specs = [s for s in field_specs(get_model_class(model).config_class) if not s["derived"]]
    specs = train_specs(settings)
    left, right = st.columns(2)
    with left:
        st.markdown(f"**{model} hyperparameters**")
        model_values = {s["name"]: field_widget(s, f"model.{model}.{s['name']}", prefill.get(s["name"]))
                        for s in model_specs}
    with right:
        st.markdown("**Training**")
        shown = [n for n in TRAIN_FIELDS if not (n == "channels" and dataset != "synthetic")
                 and not (n == "image_size" and dataset in NATIVE_SHAPES)]
        train_values = {n: field_widget(specs[n], f"train.{n}", prefill.get(n)) for n in shown}
    train_values.update(data or {"data_root": str(settings.data_root)})
    return {"train": dict(train_values, model=model, dataset=dataset), "model": model_values}


# ---------------------------------------------------------------- where the data is
def fixed_data(settings: Settings) -> bool:
    """Whether this server chooses the data root itself (public, built-in data sets only)."""
    return settings.public and settings.limits.builtin_data_only


def recent_data_roots(settings: Settings) -> list[dict]:
    """The data roots used before on this runs root, newest first: [{"root", "datasets"}]. None on a
    server whose data root is fixed. Entries that are not well-formed are skipped."""
    if fixed_data(settings):
        return []
    stored = runs.read_json(Path(settings.runs_root) / MEMORY_NAME, [])
    found = []
    for item in stored if isinstance(stored, list) else []:
        root = item.get("root") if isinstance(item, dict) else None
        datasets = item.get("datasets") if isinstance(item, dict) else None
        if isinstance(root, str) and 0 < len(root) <= MAX_PATH_CHARS and "\0" not in root and \
                isinstance(datasets, list) and all(d in DATASETS for d in datasets):
            found.append({"root": root, "datasets": datasets})
    return found[:MEMORY_KEEP]


def remember_data_root(settings: Settings, dataset: str, data_root: str, data_path: str | None = None) -> None:
    """Put a data root where `dataset` (MNIST, Fashion-MNIST, or CelebA in its usual place) was found first in the list
    of recent ones (at most MEMORY_KEEP); nothing on a server whose data root is fixed."""
    root = str(data_root)
    if fixed_data(settings) or data_path or dataset not in ROOTED_DATASETS or not root or \
            len(root) > MAX_PATH_CHARS:
        return
    known = recent_data_roots(settings)
    before = next((item["datasets"] for item in known if item["root"] == root), [])
    entry = {"root": root, "datasets": sorted(set(before) | {dataset})}
    kept = [entry] + [item for item in known if item["root"] != root]
    runs.atomic_write_json(Path(settings.runs_root) / MEMORY_NAME, kept[:MEMORY_KEEP])


@st.cache_data(ttl=5, max_entries=64, show_spinner=False)
def cached_data_check(dataset: str, data_root: str, data_path: str | None, shown_root: str | None):
    """genlab.data.check_data, at most every few seconds per choice (it lists files)."""
    from .data import check_data
    return check_data(dataset, data_root, data_path, shown_root=shown_root)


def data_source(dataset: str, prefill: dict, settings: Settings) -> dict:
    """The data root (and data path) inputs, with whether the data set is there and how many images,
    shown before Start. Returns {"data_root", "data_path"}. A server with a fixed data root shows no
    input and names no path."""
    specs = train_specs(settings)
    shown_root = None
    if fixed_data(settings):
        chosen = {"data_root": str(settings.data_root)}
        shown_root = "the server's data root"
    else:
        recent = [item["root"] for item in recent_data_roots(settings)]
        wanted = prefill.get("data_root") or (recent[0] if recent else str(settings.data_root))
        options = list(dict.fromkeys([wanted, *recent, str(settings.data_root)]))
        chosen = {"data_root": str(settings.data_root)}
        if dataset in ROOTED_DATASETS:
            found_in = {item["root"]: item["datasets"] for item in recent_data_roots(settings)}
            root = st.selectbox("data root", options, index=0, accept_new_options=True, key="train.data_root",
                                format_func=lambda r: r + (f"  ({', '.join(found_in[r])} found here before)"
                                                           if r in found_in else ""),
                                help=specs["data_root"]["help"] + " Type a folder to use another one; "
                                "MNIST is the folder that holds MNIST/raw.")
            chosen["data_root"] = str(root or settings.data_root).strip()
        if dataset in ("imagefolder", "celeba64"):
            chosen["data_path"] = st.text_input("data path", value=prefill.get("data_path") or "",
                                                help=specs["data_path"]["help"], key="train.data_path").strip() \
                or None
    check = cached_data_check(dataset, chosen["data_root"], chosen.get("data_path"), shown_root)
    if check.found:
        st.success(check.message, icon=":material/check_circle:")
    elif check.downloadable:
        st.info(check.message + ("." if shown_root else ". If this computer is offline, put the files there "
                                 "or type the folder that holds them."), icon=":material/download:")
    else:
        st.error(check.message + ". Start is refused until the data is there.", icon=":material/error:")
    return chosen


def form_problems(config: dict) -> list[str]:
    """The fields of a config_form result whose text was not a valid value."""
    return [str(v) for part in config.values() if isinstance(part, dict) for v in part.values()
            if isinstance(v, InvalidField)]


def prefill_from_query(settings: Settings) -> tuple[dict, list[str]]:
    """(form defaults, problems) from the page URL (?model=vae&dataset=synthetic&steps=500&z_dim=8):
    values of the right type and in range (public caps included); each other one is a problem line
    and the field keeps its default."""
    values, problems = {}, []
    specs = {}
    for cls in MODELS.values():
        specs.update({s["name"]: s for s in field_specs(cls.config_class)})
    specs.update(train_specs(settings))
    hidden = {"data_root", "data_path"} if settings.public and settings.limits.builtin_data_only else set()
    for name, text in st.query_params.items():
        spec = specs.get(name)
        if spec is None or name in hidden or name in ("model", "dataset"):
            if name in ("model", "dataset"):
                values[name] = text
            continue
        try:
            value = (text.lower() in ("1", "true", "yes")) if spec["type"] is bool else spec["type"](text)
        except (TypeError, ValueError, OverflowError):
            problems.append(f"{name}={text[:40]!r} is not a {spec['type'].__name__}")
            continue
        problem = in_range(spec, value)
        if problem:
            problems.append(f"{name}={text[:40]!r} {problem}")
        else:
            values[name] = value
    return values, problems


# ---------------------------------------------------------------- run views
def state_label(run_dir: Path, status: dict) -> str:
    """The state as a colored badge (Streamlit markdown)."""
    state = runner.shown_state(run_dir, status)
    if state == "running" and runs.is_paused(status):         # the process waits between steps
        return f":orange-badge[paused at step {status.get('step', 0)}]"
    return f":{STATE_STYLES.get(state, 'gray')}-badge[{state}]"


def run_controls(run_dir: Path, status: dict, key: str, settings: Settings, owner: str) -> None:
    """Stop / Resume buttons (and a new total for Resume) for one run this session may control."""
    if not runner.can_control(run_dir, settings, owner):
        st.caption("Started by another visitor: you can watch it.")
        return
    state = runner.shown_state(run_dir, status)
    config = runs.read_json(run_dir / "config.json", {}) or {}
    if runs.is_active(status):
        if st.button("Stop", icon=":material/stop_circle:", key=f"stop-{key}", disabled=state != "running",
                     help="Finish the current step, save a checkpoint, then stop (once the run is running)."):
            try:
                runner.stop_run(run_dir, settings, owner=owner)
            except (runner.RunnerError, OSError) as error:
                st.error(str(error))
                return
            st.toast(f"Asked {run_dir.name} to stop; it saves a checkpoint first.")
            st.rerun()
        return
    total = config.get("train", {}).get("steps", 1)
    step = status.get("step", 0) or 0
    cap = settings.limits.max_steps if settings.public else None
    wanted = total if step < total else 2 * total
    new_total = st.number_input("total steps", min_value=1, max_value=cap,
                                value=min(wanted, cap) if cap else wanted,
                                key=f"steps-{key}", help="Train on to this many steps in total." +
                                (f" At most {cap} on this server." if cap else ""))
    if st.button("Resume", icon=":material/play_arrow:", key=f"resume-{key}", type="primary",
                 help="Continue from the last checkpoint in a new training process."):
        try:
            runner.resume_run(run_dir, settings, owner=owner, steps=int(new_total) if new_total != total else None)
        except (runner.RunnerError, ConfigError, OSError) as error:
            st.error(str(error))
        else:
            st.rerun()


def plain(text: str) -> str:
    """Text shown as itself in Streamlit markdown (visitors' names and notes): the characters of inline
    markup (links, images, emphasis, code, colour directives, HTML) escaped, and a list marker at the start."""
    escaped = "".join("\\" + c if c in "\\`*_{}[]()<>#!~$|" else c for c in str(text))
    return "\\" + escaped if escaped[:1] in ("-", "+") else escaped


@st.cache_data(max_entries=512, show_spinner=False)
def _summary(path: str, size: int, mtime: int) -> dict:
    """run_summary's work, cached per version of metrics.jsonl."""
    best = {}
    for record in runs.read_metrics(Path(path)):
        for key, value in record.items():
            if key in BEST_METRICS and isinstance(value, (int, float)) and math.isfinite(value):
                lower = BEST_METRICS[key][1]
                if key not in best or (value < best[key][0] if lower else value > best[key][0]):
                    best[key] = (value, record.get("step"))
    return best


def run_summary(run_dir: Path) -> dict:
    """{metric key: (best value so far, its step)} of the quick evaluations a run logged (BEST_METRICS)."""
    stat = (Path(run_dir) / "metrics.jsonl")
    try:
        info = stat.stat()
    except OSError:
        return {}
    return _summary(str(run_dir), info.st_size, info.st_mtime_ns)


def restart_query(config: dict) -> dict[str, str]:
    """The Train-page address parameters that prefill the form from a run's config (Edit and restart)."""
    train, model = config.get("train", {}), config.get("model", {})
    name = train.get("model")
    derived = set()
    if name in MODELS:
        derived = {s["name"] for s in field_specs(get_model_class(name).config_class) if s["derived"]}
    query = {k: v for k, v in model.items() if k not in derived}
    query.update(train)
    return {k: (str(v).lower() if isinstance(v, bool) else str(v)) for k, v in query.items() if v is not None}


# Long run names wrap in the runs table instead of being cut with an ellipsis.
TABLE_CSS = """<style>
.st-key-runs-table [data-testid="stPageLink-NavLink"] p { white-space: normal; overflow-wrap: anywhere; }
.st-key-runs-table [data-testid="stPageLink-NavLink"] { padding-left: 0; }
</style>"""


def short_losses(metrics: dict) -> str:
    """'d 0.52 · g 1.9' from a metric line: the losses only, by their short names (for the runs table)."""
    return " · ".join(f"{k.split('/', 1)[1]} {v:.3g}" for k, v in metrics.items()
                      if k.startswith("loss/") and isinstance(v, (int, float)))


def runs_table(settings: Settings, owner: str) -> None:
    """Every run, newest first, one row each: a sample thumbnail, its name (a link to its live view),
    model and data, state, progress, best quick-eval metrics and last losses, age, and labelled actions.
    Filters by state and model above it."""
    root = Path(settings.runs_root)
    infos = runs.list_runs(root)
    if not infos:
        st.info(f"No runs yet in `{root if not settings.public else 'this server'}`. Start one on the "
                f"**Train** page, or from a terminal with "
                f"`python train.py --model dcgan --dataset mnist --runs-root {root}`.")
        return
    states = sorted({runner.shown_state(i.path, i.status) for i in infos})
    models = sorted({str(i.config.get("train", {}).get("model", "?")) for i in infos})
    left, right, _ = st.columns([2, 2, 3])
    shown_states = left.multiselect("state", states, key="home.states", placeholder="all states")
    shown_models = right.multiselect("model", models, key="home.models", placeholder="all models")
    infos = [i for i in infos if (not shown_states or runner.shown_state(i.path, i.status) in shown_states)
             and (not shown_models or str(i.config.get("train", {}).get("model", "?")) in shown_models)]
    widths = [0.6, 2.6, 1.3, 1.6, 2.0, 3.4]
    st.html(TABLE_CSS)
    with st.container(key="runs-table"):
        header = st.columns(widths)
        for column, title in zip(header[1:], ["run", "state", "progress", "best / last", "actions"]):
            column.markdown(f"**{title}**")
        for info in infos:
            with st.container(border=True, key=f"row-{info.name}"):
                run_row(info, widths, settings, owner)
    if not infos:
        st.caption("No run matches these filters.")


def run_row(info: runs.RunInfo, widths: list[float], settings: Settings, owner: str) -> None:
    """One row of the runs table."""
    cells = st.columns(widths, vertical_alignment="center")
    thumb = thumbnail_uri(info.newest_sample)
    if thumb:
        cells[0].image(thumb, width=56)
    else:
        cells[0].caption("no grid yet")
    cfg = info.config.get("train", {})
    label = runner.read_label(info.path)
    with cells[1]:
        st.markdown(f"**{plain(cfg.get('model', '?'))}** · {plain(cfg.get('dataset', '?'))}")
        st.page_link("pages/2_Live_run.py", label=plain(label.get("name") or info.name),
                     query_params={"run": info.name}, help=f"Open the live view of {info.name}")
        if label.get("name"):
            st.caption(plain(info.name))
        if label.get("note"):
            st.caption(plain(label["note"]))
    with cells[2]:
        st.markdown(state_label(info.path, info.status))
        st.caption(f"{format_age(time.time() - info.created)} ago")
    fraction, _ = progress(info.status, info.config)
    total = info.status.get("total_steps") or cfg.get("steps", "?")
    cells[3].progress(fraction, text=f"{info.status.get('step', 0) or 0} / {total}")
    ips = info.status.get("images_per_s") or info.last_metrics.get("images_per_s")
    if ips:
        cells[3].caption(f"{ips:,.0f} images/s")
    lines = [f"**{BEST_METRICS[k][0]} {v:.3g}** (step {step})" for k, (v, step) in run_summary(info.path).items()]
    losses = short_losses(info.last_metrics)
    cells[4].markdown("  \n".join(lines + ([losses] if losses else [])) or "–")
    with cells[5]:
        run_actions(info, settings, owner)


def run_actions(info: runs.RunInfo, settings: Settings, owner: str) -> None:
    """Labelled actions that wrap instead of being clipped: Open, Explore (once there is a checkpoint),
    and where this session may control the run Stop / Resume, Edit and restart, Delete (asks first)."""
    name, active = info.name, runs.is_active(info.status)
    state = runner.shown_state(info.path, info.status)
    with st.container(horizontal=True, gap="small"):
        if st.button("Open", icon=":material/monitoring:", key=f"open-{name}", help="The live view"):
            st.switch_page("pages/2_Live_run.py", query_params={"run": name})
        if runs.checkpoint_path(info.path).exists():
            st.page_link("pages/3_Latent_explorer.py", label="Explore", icon=":material/explore:",
                         query_params={"run": name}, help="Open this run's newest checkpoint in the latent explorer")
        if not runner.can_control(info.path, settings, owner):
            return
        if active:
            if st.button("Stop", icon=":material/stop_circle:", key=f"stop-{name}", disabled=state != "running",
                         help="Finish the step, save a checkpoint, stop (once the run is running)"):
                try:
                    runner.stop_run(info.path, settings, owner=owner)
                except (runner.RunnerError, OSError) as error:
                    st.session_state["runs_table_error"] = str(error)
                st.rerun()
        else:
            if st.button("Resume", icon=":material/play_arrow:", key=f"resume-{name}",
                         help="Continue from the last checkpoint"):
                try:
                    runner.resume_run(info.path, settings, owner=owner)
                except (runner.RunnerError, ConfigError, OSError) as error:
                    st.session_state["runs_table_error"] = f"{name}: {error}"
                st.rerun()
            if state in ("failed", "interrupted", "stopped") and \
                    st.button("Edit and restart", icon=":material/edit:", key=f"edit-{name}",
                              help="Open the Train page filled in from this run's config (a new run folder)"):
                st.switch_page("pages/1_Train.py", query_params=restart_query(info.config))
        if st.button("Delete", icon=":material/delete:", key=f"delete-{name}", help="Delete the run (asks first)"):
            st.session_state["confirm_delete"] = name
            st.rerun()
    if st.session_state.get("confirm_delete") == name:
        st.warning(f"Delete **{plain(name)}** and all its files?" +
                   (" It is running: it is stopped first." if active else ""))
        yes, no = st.columns(2)
        if yes.button("Yes, delete", key=f"confirm-delete-{name}", type="primary"):
            try:
                runner.delete_run(info.path, settings, owner=owner)
            except (runner.RunnerError, OSError) as error:
                st.session_state["runs_table_error"] = str(error)
            st.session_state.pop("confirm_delete", None)
            st.rerun()
        if no.button("Cancel", key=f"cancel-delete-{name}"):
            st.session_state.pop("confirm_delete", None)
            st.rerun()
