"""The run report: one self-contained HTML page (every picture a data URI, no scripts, no network).

It holds the resolved config, the learning curves, the latest and the best samples, the evolution
(animated and as a strip), the judged grid, the metrics table and the checkpoints. While a run trains
the loop rewrites it (train.report_every) with a meta refresh, so an open page follows the run.
"""

from __future__ import annotations

import base64
import datetime
import html
import io
import json
from pathlib import Path
from typing import Any

from PIL import Image

from gankit.data.files import atomic_write_bytes
from gankit.errors import GankitError, first_line
from gankit.run import RunDir, list_checkpoints, read_stats

EVOLUTION_FRAMES = 40  # frames of the embedded evolution GIF (spread over the run), to keep the page light
EVOLUTION_SIDE = 384  # px: the largest side of an embedded evolution frame

_CSS = """
body { font-family: system-ui, sans-serif; margin: 1.5em auto; max-width: 1100px; color: #222; padding: 0 1em; }
h1 { font-size: 1.5em; } h2 { font-size: 1.15em; border-bottom: 1px solid #ccc; padding-bottom: .2em; margin-top: 2em; }
img { max-width: 100%; image-rendering: pixelated; border: 1px solid #ddd; }
figure { display: inline-block; margin: 0 1em 1em 0; vertical-align: top; }
figcaption { font-size: .85em; color: #555; }
table { border-collapse: collapse; font-size: .9em; }
td, th { border: 1px solid #ccc; padding: .25em .6em; text-align: right; }
th { background: #f3f3f3; } td.l, th.l { text-align: left; }
pre { background: #f6f6f6; padding: .8em; overflow-x: auto; font-size: .85em; }
.status { padding: .5em .8em; background: #eef5ff; border-left: 4px solid #4a8; }
.note { color: #777; font-style: italic; }
.scroll { overflow-x: auto; }
"""


def data_uri(data: bytes, mime: str) -> str:
    """``data:MIME;base64,...``."""
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


def _png(image: Image.Image) -> str:
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return data_uri(buf.getvalue(), "image/png")


def _file_uri(path: Path) -> str:
    mime = {".png": "image/png", ".gif": "image/gif", ".jpg": "image/jpeg", ".jpeg": "image/jpeg"}[path.suffix]
    return data_uri(path.read_bytes(), mime)


def _figure(uri: str, caption: str, alt: str) -> str:
    return (f'<figure><img src="{uri}" alt="{html.escape(alt)}">'
            f"<figcaption>{html.escape(caption)}</figcaption></figure>")


def _note(text: str) -> str:
    return f'<p class="note">{html.escape(text)}</p>'


def checkpoint_rows(run: RunDir) -> list[dict[str, Any]]:
    """Name, step, time and size of each checkpoint folder (the rotation and ``best``)."""
    folders = list_checkpoints(run)
    if (run.checkpoints / "best").is_dir():
        folders.append(run.checkpoints / "best")
    latest = (run.checkpoints / "latest").read_text().strip() if (run.checkpoints / "latest").exists() else None
    rows = []
    for p in folders:
        try:
            meta = json.loads((p / "state.json").read_text())
        except (OSError, ValueError):
            rows.append({"name": p.name, "step": None, "time": None, "mb": None, "note": "incomplete"})
            continue
        size = sum(f.stat().st_size for f in p.iterdir() if f.is_file())
        rows.append({"name": p.name, "step": meta.get("step"), "time": meta.get("time"), "mb": size / 2**20,
                     "note": "latest" if p.name == latest else ""})
    return rows


def metric_rows(run: RunDir, stats: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per measurement: ``gankit eval`` results (RUN/eval/*.json) and eval records in the stats."""
    rows = []
    for p in sorted((run.path / "eval").glob("*.json")):
        try:
            r = json.loads(p.read_text())
        except (OSError, ValueError):
            continue
        values = {k: v for k, v in r.items() if isinstance(v, int | float) and not isinstance(v, bool)
                  and k not in ("step", "n", "seed", "seconds", "inception_seconds", "samples")}
        rows.append({"step": r.get("step"), "source": f"gankit eval (n={r.get('n')}, vs {r.get('against')})",
                     "values": values})
    for r in stats:
        if r.get("kind") == "eval":
            rows.append({"step": r.get("step"), "source": "during training",
                         "values": {k: v for k, v in r.items() if k not in ("step", "kind")}})
    return rows


def _metrics_table(rows: list[dict[str, Any]]) -> str:
    keys: list[str] = []
    for r in rows:
        keys += [k for k in r["values"] if k not in keys]
    head = "".join(f"<th>{html.escape(k)}</th>" for k in keys)
    out = [f'<table id="metrics"><thead><tr><th>step</th><th class="l">measured by</th>{head}</tr></thead><tbody>']
    for r in rows:
        cells = "".join(f"<td>{r['values'][k]:.4g}</td>" if isinstance(r["values"].get(k), int | float) else "<td></td>"
                        for k in keys)
        out.append(f"<tr><td>{r['step']}</td><td class=\"l\">{html.escape(r['source'])}</td>{cells}</tr>")
    if not rows:
        out.append('<tr><td></td><td class="l">no measurements yet: gankit eval RUN, or train.eval_every</td></tr>')
    out.append("</tbody></table>")
    return "".join(out)


def _checkpoint_table(rows: list[dict[str, Any]]) -> str:
    out = ['<table id="checkpoints"><thead><tr><th class="l">checkpoint</th><th>step</th><th class="l">written</th>'
           '<th>MB</th><th class="l"></th></tr></thead><tbody>']
    for r in rows:
        when = datetime.datetime.fromtimestamp(r["time"]).strftime("%Y-%m-%d %H:%M:%S") if r["time"] else ""
        mb = f"{r['mb']:.2f}" if r["mb"] is not None else ""
        out.append(f"<tr><td class=\"l\">{html.escape(r['name'])}</td><td>{r['step'] if r['step'] is not None else ''}"
                   f"</td><td class=\"l\">{when}</td><td>{mb}</td><td class=\"l\">{html.escape(r['note'])}</td></tr>")
    out.append("</tbody></table>")
    return "".join(out)


def _best_samples(run: RunDir, cfg: Any) -> tuple[str, str] | None:
    """(data URI, caption) of the best checkpoint's samples: its step's saved grid, else rendered from it."""
    from gankit.run import load_checkpoint

    best = run.checkpoints / "best"
    if not best.is_dir():
        return None
    try:
        _, state = load_checkpoint(best)
    except GankitError:
        return None
    b = state.get("best", {})
    caption = f"best: step {state['step']:,}" + (f", {b['metric']} {b['value']:.4g}" if "metric" in b else "")
    saved = run.samples / f"step-{state['step']:08d}.png"
    # the saved grid shows the best generator only if that step's evaluation in the stats is the best
    # one (after a rollback the step may have been re-run by another generator): else render from it
    evals = [r for r in read_stats(run) if r.get("kind") == "eval" and r.get("step") == state["step"]]
    if saved.exists() and (not b or (evals and evals[-1].get(b.get("metric")) == b.get("value"))):
        return _file_uri(saved), caption
    import torch

    from gankit.sample import load_generator
    from gankit.train.loop import fixed_inputs
    from gankit.viz.grid import default_scale, make_grid
    from gankit.viz.interpolate import render

    lg = load_generator(run.path, checkpoint="best")
    z, y = fixed_inputs(cfg, cfg.train.sample_grid, lg.classes, torch.device("cpu"))
    nrow = len(lg.classes) if y is not None and cfg.train.sample_grid % len(lg.classes) == 0 else None
    grid = make_grid(render(lg, z, y), nrow=nrow, scale=default_scale(lg.info.resolution))
    return _png(grid), caption + " (the fixed noise, rendered from the checkpoint)"


def build_report(run_dir: str | Path, *, refresh: int | None = None, judge_missing: bool = False,
                 root: str | None = None) -> str:
    """The report's HTML text. ``refresh``: seconds between reloads (a run still training); ``judge_missing``:
    make the judged grid from the latest checkpoint when the run wrote none (loads the dataset)."""
    from gankit.viz.animate import evolution_frames, evolution_strip, gif_bytes, sample_frames
    from gankit.viz.plots import plot_curves, training_records

    run = RunDir(run_dir)
    cfg = run.config()
    stats = read_stats(run)
    train = training_records(stats)
    ckpts = checkpoint_rows(run)
    step = max((r["step"] for r in train), default=0)
    kimg = train[-1]["kimg"] if train else 0.0
    secs = train[-1].get("seconds", 0.0) if train else 0.0
    if refresh:
        status = f"training: step {step:,} of {cfg.train.steps:,}; this page reloads itself every {refresh} s"
    elif step >= cfg.train.steps:
        status = f"finished: {step:,} steps"
    else:
        status = f"stopped at step {step:,} of {cfg.train.steps:,} (continue with gankit train --resume)"
    parts = ["<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">",
             f'<meta http-equiv="refresh" content="{int(refresh)}">' if refresh else "",
             f"<title>gankit report: {html.escape(run.path.name)}</title>"
             f'<link rel="icon" href="data:,"><style>{_CSS}</style></head><body>',
             f"<h1>{html.escape(cfg.name)} <small>{html.escape(str(run.path))}</small></h1>",
             f"<p>{html.escape(cfg.description)}</p>" if cfg.description else "",
             f'<p class="status" id="status">{html.escape(status)}; {kimg:,.1f} thousand images seen in '
             f"{secs / 60:.1f} min of training. Written {datetime.datetime.now():%Y-%m-%d %H:%M:%S}.</p>"]

    parts.append("<h2>Learning curves</h2>")
    try:
        parts.append(_figure(data_uri(plot_curves(stats), "image/png"), "losses (raw, smoothed), D's accuracy and "
                             "the metrics measured during training, against steps and images seen", "learning curves"))
    except GankitError as exc:
        parts.append(_note(str(exc)))

    parts.append("<h2>Samples</h2>")
    frames = sample_frames(run.samples)
    if frames:
        s, p = frames[-1]
        parts.append(_figure(_file_uri(p), f"latest: step {s:,} (the fixed noise)", "latest samples"))
    best = _best_samples(run, cfg)
    if best:
        parts.append(_figure(best[0], best[1], "best samples"))
    if not frames and not best:
        parts.append(_note("no samples yet"))

    parts.append("<h2>Evolution</h2>")
    if frames:
        try:  # (one section's damaged files must not cost the whole page)
            ev = evolution_frames(run.samples, max_frames=EVOLUTION_FRAMES, max_side=EVOLUTION_SIDE)
            gif = gif_bytes(ev, durations=[300] * (len(ev) - 1) + [2000])
            strip = _png(evolution_strip(run.samples, k=6, thumb=160))
        except GankitError as exc:
            parts.append(_note(f"no evolution: {first_line(exc)}"))
        else:
            parts.append(_figure(data_uri(gif, "image/gif"), f"the fixed noise over {len(ev)} snapshots", "evolution"))
            parts.append(_figure(strip, "evolution strip", "evolution strip"))
    else:
        parts.append(_note("no sample grids yet"))

    parts.append("<h2>How D judges</h2>")
    judged = sample_frames(run.path / "judge")
    judge_failed = None
    if not judged and judge_missing and ckpts:
        from gankit.viz.judge import judge_run

        try:
            judge_run(run.path, root=root)
        except GankitError as exc:
            judge_failed = first_line(exc)
        judged = sample_frames(run.path / "judge")
    if judge_failed:
        parts.append(_note(f"no judged grid: {judge_failed}"))
    elif judged:
        s, p = judged[-1]
        parts.append(_figure(_file_uri(p), f"step {s:,}: real images (green titles) and generated ones (red), "
                             "each titled with D's verdict", "judged grid"))
    else:
        parts.append(_note("no judged grid: gankit judge RUN, or train.judge_every"))

    parts.append("<h2>Metrics</h2>")
    parts.append(f'<div class="scroll">{_metrics_table(metric_rows(run, stats))}</div>')
    parts.append("<h2>Checkpoints</h2>")
    parts.append(_checkpoint_table(ckpts) if ckpts else _note("no checkpoints yet"))
    parts.append("<h2>Config</h2>")
    parts.append(f'<pre id="config">{html.escape(run.config_path.read_text())}</pre>')
    parts.append("</body></html>\n")
    return "\n".join(p for p in parts if p)


def write_report(run_dir: str | Path, *, out: str | Path | None = None, refresh: int | None = None,
                 judge_missing: bool = False, root: str | None = None) -> Path:
    """``gankit report``: RUN/report.html (or ``out``), written atomically so a reloading browser never
    sees half a page."""
    path = Path(out) if out else Path(run_dir) / "report.html"
    if path.suffix.lower() not in (".html", ".htm"):
        raise GankitError(f"--out {path}: the report is a web page; give a .html file name")
    text = build_report(run_dir, refresh=refresh, judge_missing=judge_missing, root=root)
    atomic_write_bytes(path, text.encode("utf-8"))
    return path
