"""The drift report as one self-contained HTML file, with plots (``check --html``).

Everything is inline: the plots are PNG images drawn with matplotlib (Agg, no display) and
embedded as base64 data, the style is in the page; opening the file needs no network access.
Sections: the verdict and every threshold, the outputs' metrics, per-layer SQNR bars (with
``--layers``), per-channel SQNR where an output was measured by channel, a float-vs-quantized
scatter per output, the confusion of top-1 disagreements (with labels: which side was right),
and the bundle's manifest summary.
"""

from __future__ import annotations

import base64
import html
import io
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from edgepack.drift.metrics import top1
from edgepack.drift.report import DriftReport
from edgepack.drift.summary import percent as _pct

SCATTER_POINTS = 20_000  # most points drawn per output (evenly strided)


def render_html(
    report: DriftReport,
    manifest: Mapping[str, Any],
    reference: Mapping[str, np.ndarray],
    quantized: Mapping[str, np.ndarray],
    labels: np.ndarray | None = None,
    layers: Any = None,
    bundle: str = "",
) -> str:
    """The whole page as a string."""
    sections = [
        _verdict_section(report, bundle),
        _outputs_section(report),
    ]
    if len(report.paths) > 1:
        sections.append(_paths_section(report))
    if layers is not None and layers.layers:
        sections.append(_layers_section(layers, report.thresholds.min_sqnr))
    sections += [_channels_section(output) for output in report.outputs if output.channels]
    sections.append(_scatter_section(report, reference, quantized))
    if report.top1_agreement is not None:
        names = manifest.get("labels") or None
        primary = report.primary_output
        sections.append(_confusion_section(reference[primary], quantized[primary], labels, names))
    sections.append(_manifest_section(manifest))
    title = f"edgepack drift report: {html.escape(Path(bundle).name or 'bundle')}"
    return _PAGE.format(title=title, style=_STYLE, body="\n".join(sections))


# ---------------------------------------------------------------------------- sections


def _verdict_section(report: DriftReport, bundle: str) -> str:
    limits = report.thresholds
    verdict = "pass" if report.passed else "FAIL"
    rows = [
        ("bundle", bundle),
        ("verdict", verdict),
        ("samples", str(report.samples)),
        ("runtime", f"{report.runtime} ({report.runtime_kind})"),
        ("execution paths", ", ".join(p.name for p in report.paths) or report.path),
        ("data", f"{report.data.get('path', '')} (sha256 {report.data.get('fingerprint', '')})"),
        (
            "top-1 agreement",
            _pct(report.top1_agreement) + f" (budget >= {_pct(limits.min_agreement)})",
        ),
        (
            "accuracy",
            f"float {_pct(report.accuracy_float)}, quantized {_pct(report.accuracy_quantized)}, "
            f"drop {_pct(report.accuracy_drop)} (budget <= {_pct(limits.max_drop)})",
        ),
        (
            "min SQNR",
            f"{report.min_sqnr_db:.2f} dB (budget >= "
            f"{'-' if limits.min_sqnr is None else f'{limits.min_sqnr} dB'})",
        ),
        ("collapsed channels", "allowed" if limits.allow_collapse else "fail the check"),
    ]
    failures = "".join(f"<li>{html.escape(line)}</li>" for line in report.failures)
    notes = "".join(f"<li>{html.escape(line)}</li>" for line in report.resolution())
    css = "pass" if report.passed else "fail"
    return (
        f'<section><h2>Verdict: <span class="{css}">{verdict}</span></h2>'
        + _table(["", ""], rows)
        + (f"<h3>Failures</h3><ul>{failures}</ul>" if failures else "")
        + (f"<h3>What this sample cannot resolve</h3><ul>{notes}</ul>" if notes else "")
        + "</section>"
    )


def _outputs_section(report: DriftReport) -> str:
    rows = [
        (
            o.name,
            f"{o.sqnr_db:.2f} dB",
            f"{o.cosine:.5f}",
            f"{o.max_abs_error:.4g}",
            _pct(o.top1_agreement),
            str(len(o.collapsed)) if o.channels is not None else "-",
        )
        for o in report.outputs
    ]
    header = ["output", "SQNR", "cosine", "max abs error", "top-1 agreement", "collapsed"]
    found = [
        (
            o.name,
            o.detections.layout,
            f"{o.detections.matched} of {o.detections.float_detections}",
            _pct(o.detections.recall),
            _pct(o.detections.precision),
            "-" if o.detections.mean_iou is None else f"{o.detections.mean_iou:.3f}",
        )
        for o in report.outputs
        if o.detections is not None
    ]
    detections = ""
    if found:
        detections = "<h3>Detections (float detections found again)</h3>" + _table(
            ["output", "layout", "matched", "recall", "precision", "mean box IoU"], found
        )
    return "<section><h2>Outputs</h2>" + _table(header, rows) + detections + "</section>"


def _paths_section(report: DriftReport) -> str:
    rows = [
        (
            p.name,
            _pct(p.top1_agreement),
            _pct(p.accuracy_quantized),
            f"{p.min_sqnr_db:.2f} dB",
            p.verdict,
            p.runtime
            + (f", {p.details['instruction_set']}" if "instruction_set" in p.details else ""),
            p.description,
        )
        for p in report.paths
    ]
    header = ["path", "agreement", "accuracy", "min SQNR", "verdict", "runtime", "what runs"]
    spread = [
        (
            s.output,
            f"{s.max_abs_diff:.4g}" + ("" if s.max_lsb is None else f" ({s.max_lsb:g} LSB)"),
            f"{s.between[0]} / {s.between[1]}",
            "-" if s.top1_differs is None else f"{s.top1_differs} of {report.samples}",
        )
        for s in report.spread
    ]
    return (
        f"<section><h2>Execution paths (verdict: the worst, {html.escape(report.path)})</h2>"
        + _table(header, rows)
        + "<h3>Spread between paths</h3>"
        + _table(["output", "largest difference", "between", "top-1 differs"], spread)
        + "</section>"
    )


CHART_LAYERS = 40  # the chart shows the worst layers; the table below it has every one


def chart_layers(layers: Any) -> list[Any]:
    """The layers the per-layer chart draws: the worst :data:`CHART_LAYERS` (the report lists
    layers worst first), in execution order; a 150-layer model stays readable."""
    return sorted(layers.layers[:CHART_LAYERS], key=lambda d: d.order)


def _layers_section(layers: Any, min_sqnr: float | None = None) -> str:
    plt = _pyplot()

    shown = chart_layers(layers)
    figure, axes = plt.subplots(figsize=(9, 0.3 * len(shown) + 1.4))
    values = [d.sqnr_db for d in shown]
    worst = min(values)
    colours = ["#c0392b" if v == worst else "#2e86c1" for v in values]
    axes.barh([d.layer for d in shown], values, color=colours)
    axes.invert_yaxis()
    if min_sqnr is not None:
        axes.axvline(min_sqnr, color="#7f8c8d", linestyle="--", label=f"budget {min_sqnr:g} dB")
        axes.legend(loc="lower right")
    axes.set_xlabel("SQNR (dB), higher is better")
    rest = len(layers.layers) - len(shown)
    scope = f"the worst {len(shown)} of {len(layers.layers)}" if rest > 0 else "every layer"
    axes.set_title(f"Per-layer SQNR, {scope}, in execution order (worst in red)")
    rows = [
        (
            d.layer,
            f"{d.sqnr_db:.2f} dB",
            "-" if d.contribution_db is None else f"{d.contribution_db:+.2f} dB",
            f"{d.cosine:.5f}",
            "x".join(map(str, d.shape)),
            d.tensor,
        )
        for d in layers.layers
    ]
    unmatched = ", ".join(layers.unmatched)
    unmatched_note = (
        f"<p>No tensor of their own (fused or folded): {html.escape(unmatched)}</p>"
        if unmatched
        else ""
    )
    return (
        f"<section><h2>Per-layer drift ({layers.samples} samples, "
        f"{html.escape(layers.path or 'host')} path)</h2>"
        f"<p>{html.escape(layers.matching)}</p>"
        + _image(figure, "per-layer SQNR bars")
        + f"<p>Own share: {html.escape(layers.contributions or 'not measured')}</p>"
        + _table(["layer", "SQNR", "own share", "cosine", "shape", "tensor"], rows)
        + unmatched_note
        + "</section>"
    )


def _channels_section(output: Any) -> str:
    plt = _pyplot()

    channels = output.channels
    figure, axes = plt.subplots(figsize=(9, 3))
    colours = ["#c0392b" if c.collapsed else "#2e86c1" for c in channels]
    axes.bar([c.name for c in channels], [c.sqnr_db for c in channels], color=colours)
    axes.axhline(0.0, color="black", linewidth=0.8)
    axes.set_ylabel("SQNR (dB)")
    axes.set_title(f"{output.name}: per channel/slice (collapsed in red)")
    axes.tick_params(axis="x", labelrotation=90)
    rows = [
        (c.name, f"{c.float_range:.4g}", f"{c.sqnr_db:.2f} dB", c.reason or "") for c in channels
    ]
    return (
        f"<section><h2>Channels of {html.escape(output.name)}</h2>"
        + _image(figure, f"per-channel SQNR of {output.name}")
        + _table(["channel", "float range", "SQNR", "collapse"], rows)
        + "</section>"
    )


def _scatter_section(
    report: DriftReport, reference: Mapping[str, np.ndarray], quantized: Mapping[str, np.ndarray]
) -> str:
    plt = _pyplot()

    count = len(report.outputs)
    figure, axes_list = plt.subplots(1, count, figsize=(4.5 * count, 4.2), squeeze=False)
    for axes, output in zip(axes_list[0], report.outputs, strict=True):
        ref = np.asarray(reference[output.name], np.float32).ravel()
        out = np.asarray(quantized[output.name], np.float32).ravel()
        step = max(1, ref.size // SCATTER_POINTS)
        axes.scatter(ref[::step], out[::step], s=3, alpha=0.4, color="#2e86c1")
        low, high = float(min(ref.min(), out.min())), float(max(ref.max(), out.max()))
        axes.plot([low, high], [low, high], color="#c0392b", linewidth=0.8)
        axes.set_xlabel("float")
        axes.set_ylabel("quantized")
        axes.set_title(f"{output.name} ({output.sqnr_db:.1f} dB)")
    figure.tight_layout()
    return (
        "<section><h2>Float vs quantized outputs</h2>"
        + _image(figure, "float-vs-quantized scatter")
        + "</section>"
    )


def _confusion_section(
    reference: np.ndarray,
    quantized: np.ndarray,
    labels: np.ndarray | None,
    names: Sequence[str] | None,
) -> str:
    plt = _pyplot()

    float_top, quant_top = top1(reference), top1(quantized)
    disagree = np.flatnonzero(float_top != quant_top)
    title = f"<section><h2>Top-1 disagreements ({disagree.size} of {len(float_top)})</h2>"
    if disagree.size == 0:
        return title + "<p>The float and quantized models agree on every sample.</p></section>"
    classes = int(np.asarray(reference).reshape(len(reference), -1).shape[1])
    counts = np.zeros((classes, classes), dtype=int)
    np.add.at(counts, (float_top[disagree], quant_top[disagree]), 1)
    ticks = [str(n) for n in (names or range(classes))]
    figure, axes = plt.subplots(figsize=(min(2 + 0.5 * classes, 12), min(2 + 0.5 * classes, 12)))
    image = axes.imshow(counts, cmap="Reds")
    figure.colorbar(image, ax=axes)
    for row, column in zip(*np.nonzero(counts), strict=True):
        axes.text(column, row, str(counts[row, column]), ha="center", va="center", fontsize=8)
    axes.set_xticks(range(classes), ticks, rotation=90)
    axes.set_yticks(range(classes), ticks)
    axes.set_xlabel("quantized top-1")
    axes.set_ylabel("float top-1")
    axes.set_title("Samples where float and quantized disagree")
    summary = ""
    if labels is not None:
        truth = np.asarray(labels)[disagree]
        summary = (
            f"<p>Of the disagreements, the float model was right on "
            f"{int(np.sum(float_top[disagree] == truth))}, the quantized model on "
            f"{int(np.sum(quant_top[disagree] == truth))}, neither on "
            f"{int(np.sum((float_top[disagree] != truth) & (quant_top[disagree] != truth)))}.</p>"
        )
    return title + _image(figure, "top-1 disagreement confusion") + summary + "</section>"


def _manifest_section(manifest: Mapping[str, Any]) -> str:
    model = manifest.get("model", {})
    target = manifest.get("target", {})
    rows = [
        ("target", f"{target.get('profile', '')} ({target.get('backend', '')})"),
        ("model file", f"{model.get('file', '')}, {model.get('size_bytes', '')} bytes"),
        ("model sha256", str(model.get("sha256", ""))),
        ("source", f"{manifest.get('source', {}).get('path', '')}"),
        ("calibration", str(manifest.get("calibration", {}).get("fingerprint", ""))),
    ]
    for kind in ("inputs", "outputs"):
        for tensor in manifest.get(kind, []):
            quant = tensor.get("quantization")
            detail = (
                "float"
                if not quant
                else f"scale {quant['scale']:.6g}, zero point {quant['zero_point']}"
            )
            described = f"{tensor.get('dtype', '')} {tensor.get('shape', '')}, {detail}"
            rows.append(
                (
                    f"{kind[:-1]} {tensor.get('source_name', '')}",
                    f"{tensor.get('name', '')}: {described}",
                )
            )
    versions = manifest.get("versions", {})
    rows.append(("versions", ", ".join(f"{k} {v}" for k, v in versions.items())))
    return "<section><h2>Bundle</h2>" + _table(["", ""], rows) + "</section>"


# ---------------------------------------------------------------------------- helpers


def _pyplot() -> Any:
    """matplotlib's pyplot on the Agg backend (files only, no display needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _image(figure: Any, alt: str) -> str:
    plt = _pyplot()

    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=90, bbox_inches="tight")
    plt.close(figure)
    data = base64.b64encode(buffer.getvalue()).decode("ascii")
    return f'<img class="plot" alt="{html.escape(alt)}" src="data:image/png;base64,{data}">'


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header) if any(header) else ""
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(str(cell))}</td>" for cell in row) + "</tr>"
        for row in rows
    )
    return f"<table>{f'<tr>{head}</tr>' if head else ''}{body}</table>"


_STYLE = """
body { font-family: -apple-system, Helvetica, Arial, sans-serif; margin: 2em; color: #222; }
h1 { font-size: 1.5em; } h2 { font-size: 1.2em; border-bottom: 1px solid #ddd; }
table { border-collapse: collapse; margin: 0.5em 0 1em; font-size: 0.9em; }
td, th { border: 1px solid #ddd; padding: 0.25em 0.6em; text-align: left; }
th { background: #f4f6f7; } .pass { color: #1e8449; } .fail { color: #c0392b; }
img.plot { max-width: 100%; display: block; margin: 0.5em 0; }
"""

_PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<style>{style}</style></head>
<body><h1>{title}</h1>
{body}
</body></html>
"""
