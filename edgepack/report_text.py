"""Human-readable output of the CLI (rich tables on stdout)."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from edgepack.drift.summary import percent as _pct
from edgepack.errors import BundleError
from edgepack.tune import CONFIDENCE, rank_sqnr

# In a terminal: its own width, and table cells wrap long names (paths, tensor names) onto
# more lines rather than cut them. In logs and pipes: wide enough for every value in full on
# one line (what users copy from CI logs), as wide as each table needs.
UNWRAPPED_WIDTH = 1000
_console = Console(
    highlight=False, width=None if Console().is_terminal else UNWRAPPED_WIDTH, soft_wrap=False
)


def _short_path(path: Path) -> str:
    with contextlib.suppress(ValueError):
        return str(path.relative_to(Path.cwd()))
    return str(path)


def _verdict(passed: bool) -> str:
    return "[green]pass[/green]" if passed else "[red]FAIL[/red]"


def print_build_results(results: Sequence[Any], failures: Sequence[tuple[str, Any]] = ()) -> None:
    """The build table: one row per target, failed targets too (their error below it)."""
    table = Table(title="edgepack build", title_justify="left")
    for column in (
        "target",
        "bundle",
        "size",
        "agreement",
        "accuracy float -> quant",
        "min SQNR",
        "drift",
    ):
        table.add_column(column, overflow="fold")
    for result in results:
        report = result.report
        accuracy = "-"
        if report.accuracy_float is not None:
            accuracy = f"{_pct(report.accuracy_float)} -> {_pct(report.accuracy_quantized)}"
        table.add_row(
            result.target,
            _short_path(result.bundle),
            f"{result.manifest['model']['size_bytes'] / 1024:.1f} KiB",
            _pct(report.top1_agreement),
            accuracy,
            f"{report.min_sqnr_db:.2f} dB",
            _verdict(result.passed),
        )
    for target, error in failures:
        table.add_row(target, "-", "-", "-", "-", "-", f"[red]{escape(error.kind)}[/red]")
    _console.print(table)
    for result in results:
        _print_result_notes(result)


def _print_result_notes(result: Any) -> None:
    """The lines under the build table for one target: what the verdict rests on, tuning,
    execution paths, the worst layer, failures and placement."""
    report = result.report
    _console.print(f"{result.target}: {_verdict_basis(result.manifest, report)}")
    tuning = result.manifest.get("tuning")
    if tuning:
        _console.print(f"{result.target}: {escape(_tuning_line(tuning))}")
        if tuning.get("precision"):
            line = escape(_precision_line(tuning, result.manifest["model"]))
            colour = "" if tuning["precision"]["holds"] else "red"
            _console.print(
                f"[{colour}]{result.target}: {line}[/{colour}]"
                if colour
                else f"{result.target}: {line}"
            )
        if tuning.get("effect"):
            _console.print(f"{result.target}: {escape(_effect_line(tuning['effect']))}")
    for note in report.resolution():
        _console.print(f"[yellow]{result.target}: {escape(note)}[/yellow]")
    if len(report.paths) > 1:
        _console.print(
            f"{result.target}: figures of the worst of {len(report.paths)} execution paths, "
            f"{report.path} ({', '.join(p.name for p in report.paths)}; each in drift.json)"
        )
    worst = result.layers.worst if result.layers is not None else None
    if worst is not None:
        _console.print(
            f"{result.target}: worst layer {worst.layer} ({worst.sqnr_db:.1f} dB; "
            "per-layer drift in drift.json)"
        )
    for failure in result.report.failures:
        # escaped: a failure names its path in brackets ("[xnnpack] ..."), not markup
        _console.print(f"[red]{result.target}: {escape(failure)}[/red]")
    if result.compat is not None:
        _print_placement_lines(result.target, result.compat)


def _print_placement_lines(target: str, compat: Any) -> None:

    for placement in compat.placements:
        required = " (required)" if placement.device in compat.require else ""
        _console.print(f"{target}: NPU {escape(placement.line())}{required}")
    for failure in compat.failures:
        _console.print(f"[red]{target}: placement: {escape(failure)}[/red]")


def print_compat(manifest: dict[str, Any], compat: Any) -> None:
    """``inspect --compat``: one row per device, then every op left to the CPU with the
    tool's reason."""

    if compat is None:
        _console.print(
            f"{manifest['target']['profile']}: no placement recorded (the profile lists no "
            "[compat] devices its target places, or the bundle predates placement)"
        )
        return
    table = Table(title="NPU placement", title_justify="left")
    for column in (
        "device",
        "accelerator",
        "how",
        "ops on it",
        "partitions",
        "CPU ops",
        "compiled",
        "verdict",
    ):
        table.add_column(column, overflow="fold")  # fmt: skip
    for p in compat.placements:
        compiled = {True: "yes", False: "FAILED", None: "-"}[p.compiled]
        required = p.device in compat.require
        verdict = "-" if p.status != "ok" else ("whole" if p.whole else "falls off")
        if required:
            verdict = _verdict(p.whole) + " (required)"
        table.add_row(
            p.device,
            escape(f"{p.vendor} {p.accelerator}"),
            p.kind,
            f"{p.ops_offloaded}/{p.ops_total}" if p.status == "ok" else p.status,
            str(p.partitions) if p.status == "ok" else "-",
            str(len(p.fallen)) + (f" (+{len(p.cpu_ops) - len(p.fallen)} boundary)"
                                  if len(p.cpu_ops) > len(p.fallen) else ""),
            compiled,
            verdict,
        )  # fmt: skip
    _console.print(table)
    for p in compat.placements:
        if p.status != "ok":
            _console.print(f"{p.device}: {escape(p.line())}")
            continue
        for op in p.cpu_ops:
            where = "boundary, on the CPU by design" if op.boundary else "CPU"
            name = f" {op.name}" if op.name else ""
            _console.print(escape(f"{p.device}: #{op.index} {op.op}{name} -> {where}: {op.reason}"))
        if p.compile_error:
            _console.print(f"[red]{p.device}: compile: {escape(p.compile_error)}[/red]")
        versions = ", ".join(f"{k} {v}" for k, v in p.versions.items())
        _console.print(escape(f"{p.device}: {p.tool}; {versions}"))
        for note in p.notes:
            _console.print(escape(f"{p.device}: note: {note}"))
        if p.artefact:
            _console.print(escape(f"{p.device}: compiled model in the bundle: {p.artefact}"))
    for failure in compat.failures:
        _console.print(f"[red]placement: {escape(failure)}[/red]")


def _data_kind(drift: dict[str, Any]) -> str:
    """Where a manifest's drift summary's samples came from (older manifests: held out)."""
    split = drift.get("data", {}).get("split", "held-out part of the calibration set")
    return "evaluation set" if split == "evaluation set" else "held out"


def _tuning_lines(tuning: dict[str, Any]) -> str:
    """The tuning section of a manifest, or a bundle error when it is not the one a build
    writes (its nesting is deep; only a damaged manifest lacks a piece of it)."""
    try:
        lines = [_tuning_line(tuning)]
        if tuning.get("effect"):
            lines.append(_effect_line(tuning["effect"]))
    except (KeyError, IndexError, TypeError, StopIteration, AttributeError) as exc:
        raise BundleError(
            f"manifest.json: the tuning section is damaged ({type(exc).__name__}: {exc})"
        ) from None
    return "\n".join(lines)


def _tuning_line(tuning: dict[str, Any]) -> str:
    """What the calibration search kept, against the profile's own choice."""
    trials = tuning["candidates"]
    default = trials[0]
    chosen = next(t for t in trials if t["name"] == tuning["chosen"])
    line = (
        f"calibration search kept {chosen['name']} ({_trial_figures(chosen)}); profile's own "
        f"{default['name']}: {_trial_figures(default)}; {len(trials)} candidates on "
        f"{tuning['validation_samples']} validation samples in {tuning['seconds']:.0f} s"
    )
    if tuning.get("stopped"):
        line += f" (stopped early: {tuning['stopped']})"
    passed_over = _passed_over(trials, chosen)
    if passed_over is not None:
        mine, theirs = passed_over["folds_sqnr_db"], default["folds_sqnr_db"]
        won = sum(rank_sqnr(a) > rank_sqnr(b) for a, b in zip(mine, theirs, strict=False))
        line += (
            f"; {passed_over['name']} scored higher ({_trial_figures(passed_over)}) but beat "
            f"the profile's own on {won} of {len(mine)} folds and in "
            f"{passed_over['resampled_wins']:.0%} of resampled validation sets: not a "
            f"consistent gain (a switch needs most folds"
            + ("" if default["failures"] else f" and {CONFIDENCE:.0%}")
            + ")"
        )
    return line


def _passed_over(trials: list[dict[str, Any]], chosen: dict[str, Any]) -> dict[str, Any] | None:
    """The best-scored candidate the search did not keep because its gain over the
    profile's own choice was not consistent (README: Tuning), if it ranks above the kept one."""
    doubtful = [
        t
        for t in trials
        if t.get("may_replace") is False
        and t.get("resampled_wins") is not None
        and t["failures"] == chosen["failures"]
        and rank_sqnr(t["min_sqnr_db"]) > rank_sqnr(chosen["min_sqnr_db"])
    ]
    return max(doubtful, key=lambda t: rank_sqnr(t["min_sqnr_db"]), default=None)


def _precision_line(tuning: dict[str, Any], model: dict[str, Any]) -> str:
    """What mixed precision widened, what it measured, and what ops now compute in."""
    precision = tuning["precision"]
    start = next(t for t in tuning["candidates"] if t["name"] == tuning["chosen"])
    widened = precision["layers"]
    chosen = next((t for t in precision["trials"] if t["layers"] == widened), None)
    counts = model.get("precision_counts")
    ops = "" if not counts else "; ops " + ", ".join(f"{n} {p}" for p, n in counts.items())
    if precision["holds"] and chosen is not None:
        named = ", ".join(f"{layer} -> {p}" for layer, p in widened.items())
        return (
            f"mixed precision: {named}; validation {_trial_figures(start)} -> "
            f"{_db(chosen['min_sqnr_db'])}, budget holds{ops}"
        )
    missing = [r["layer"] for r in precision["ranked"] if r["layer"] not in widened]
    kept = ", ".join(widened) or "no layer"
    reason = precision["stopped"] or "no plan held the budget on the validation samples"
    if missing:
        rest = f"layers that would also have to be widened or go float: {', '.join(missing)}"
    else:
        rest = (
            f"all {len(precision['ranked'])} layers with an own share of 0.1 dB or more were "
            "tried: the rest of the drift is spread over layers that each add less"
        )
    return f"mixed precision could not hold the budget ({reason}); kept {kept} widened; {rest}{ops}"


def _effect_line(effect: dict[str, Any]) -> str:
    """The default bundle against the tuned one, both measured on the verdict's samples."""
    default, tuned = effect["default"], effect["tuned"]

    def figures(bundle: dict[str, Any]) -> str:
        agreement = bundle["top1_agreement"]
        shown = f"{_db(bundle['min_sqnr_db'])}" + (
            "" if agreement is None else f", agreement {_pct(agreement)}"
        )
        return f"{shown} ({bundle['verdict']})"

    counts = tuned.get("precision_counts") or {}
    ops = ", ".join(f"{n} {p}" for p, n in counts.items() if n)
    size = tuned["size_bytes"] / default["size_bytes"]
    latency = tuned["latency_ms"] / default["latency_ms"] if default["latency_ms"] else float("nan")
    return (
        f"default -> tuned on {effect['measured_on']}: {figures(default)} -> {figures(tuned)}; "
        f"size x{size:.2f}, host latency x{latency:.2f} ({effect['latency_path']} path)"
        + (f"; ops {ops}" if ops else "")
    )


def _db(value: float | None) -> str:
    return "SQNR inf" if value is None else f"{value:.2f} dB"


def _trial_figures(trial: dict[str, Any]) -> str:
    if trial["error"] is not None:
        return f"failed: {trial['error']}"
    sqnr = trial["min_sqnr_db"]
    figures = "SQNR inf" if sqnr is None else f"{sqnr:.2f} dB"
    if trial["failures"]:
        figures += f", {trial['failures']} failures"
    return figures


def _verdict_basis(manifest: dict[str, Any], report: Any) -> str:
    """What the build's verdict rests on: how many samples of what, and one sample's share."""
    calibration = manifest["calibration"]
    data = report.data
    where = (
        f"evaluation set {_short_path(Path(data['path']))}"
        if data.get("split") == "evaluation set"
        else "held out from the calibration set"
    )
    return (
        f"calibrated on {calibration['samples']} samples; verdict on {report.samples} samples "
        f"{where} (one sample = {1 / report.samples:.2%})"
    )


def print_check_result(result: Any) -> None:
    report = result.report
    table = Table(
        title=f"edgepack check {result.bundle} ({report.samples} samples)", title_justify="left"
    )
    for column in ("output", "SQNR", "cosine", "max abs error", "top-1 agreement"):
        table.add_column(column, overflow="fold")
    for output in report.outputs:
        table.add_row(
            output.name,
            f"{output.sqnr_db:.2f} dB",
            f"{output.cosine:.5f}",
            f"{output.max_abs_error:.4g}",
            _pct(output.top1_agreement),
        )
    _console.print(table)
    _print_channels(report)
    _print_detections(report)
    _print_paths(report)
    if result.layers is not None:
        _print_layers(result.layers)
    limits = report.thresholds
    intervals = report.intervals()
    if report.top1_agreement is not None:
        _console.print(
            f"top-1 agreement {_pct(report.top1_agreement)}, 95% interval "
            f"{_interval(intervals['top1_agreement'])}"
        )
    if report.accuracy_float is not None:
        _console.print(
            f"accuracy: float {_pct(report.accuracy_float)}, quantized "
            f"{_pct(report.accuracy_quantized)}, drop {_pct(report.accuracy_drop)} "
            f"(95% interval {_interval(intervals['accuracy_drop'])})"
        )
    _console.print(
        f"budget: agreement >= {_pct(limits.min_agreement)}, drop <= "
        f"{_pct(limits.max_drop)}, SQNR >= "
        f"{'-' if limits.min_sqnr is None else f'{limits.min_sqnr} dB'}, collapsed channels "
        f"{'allowed' if limits.allow_collapse else 'fail'}"
    )
    for note in report.resolution():
        _console.print(f"[yellow]resolution: {escape(note)}[/yellow]")
    worst = f" (worst of {len(report.paths)} execution paths)" if len(report.paths) > 1 else ""
    _console.print(f"runtime: {report.runtime}{worst}")
    _console.print(f"verdict: {_verdict(report.passed)}")


def _print_detections(report: Any) -> None:
    for output in report.outputs:
        found = output.detections
        if found is None:
            continue
        iou = "-" if found.mean_iou is None else f"{found.mean_iou:.3f}"
        _console.print(
            f"detections of {output.name!r} ({found.layout}, score >= {found.score_threshold:g}): "
            f"{found.matched} of the float model's {found.float_detections} found again "
            f"(recall {_pct(found.recall)}, precision {_pct(found.precision)}, mean box IoU "
            f"{iou}); the bundle detects {found.quantized_detections}"
        )


def _interval(bounds: Sequence[float] | None) -> str:
    return "-" if bounds is None else f"[{bounds[0]:.2%}, {bounds[1]:.2%}]"


def _print_paths(report: Any) -> None:
    """Each execution path's figures, then how far apart the paths are."""
    if len(report.paths) < 2:
        return
    table = Table(title="execution paths (the verdict is the worst)", title_justify="left")
    for column in ("path", "agreement", "accuracy", "min SQNR", "drift", "runtime"):
        table.add_column(column, overflow="fold")
    for path in report.paths:
        table.add_row(
            path.name,
            _pct(path.top1_agreement),
            _pct(path.accuracy_quantized),
            f"{path.min_sqnr_db:.2f} dB",
            _verdict(path.verdict == "pass"),
            _path_runtime(path),
        )
    _console.print(table)
    for spread in report.spread:
        lsb = "" if spread.max_lsb is None else f" ({spread.max_lsb:g} LSB)"
        top1 = "" if spread.top1_differs is None else f"; top-1 differs on {spread.top1_differs}"
        _console.print(
            f"spread of {spread.output!r}: up to {spread.max_abs_diff:.4g}{lsb} between "
            f"{spread.between[0]} and {spread.between[1]}{top1} of {report.samples} samples"
        )


def _path_runtime(path: Any) -> str:
    isa = path.details.get("instruction_set")
    return f"{path.runtime}, {isa}" if isa else path.runtime


@contextlib.contextmanager
def progress_bars(show: bool) -> Iterator[Callable[[str, int, int], None] | None]:
    """A ``progress(phase, done, total)`` callback drawing one rich bar per phase on stderr
    (cleared at the end), or None when ``show`` is false."""
    if not show:
        yield None
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

    bars = Progress(
        "{task.description}",
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=Console(stderr=True),
        transient=True,
    )
    tasks: dict[str, Any] = {}
    lock = threading.Lock()  # execution paths report from their own threads

    def progress(phase: str, done: int, total: int) -> None:
        with lock:
            if phase not in tasks:
                tasks[phase] = bars.add_task(phase, total=total)
            bars.update(tasks[phase], completed=done, total=total)

    with bars:
        yield progress


def _print_layers(layers: Any, rows: int = 10) -> None:
    table = Table(
        title=f"per-layer drift, worst first ({layers.samples} samples, "
        f"{layers.path or 'host'} path, {layers.extra.get('seconds', 0):.1f} s)",
        title_justify="left",
    )
    for column in ("layer", "SQNR", "own share", "cosine", "shape", "tensor"):
        table.add_column(column, overflow="fold")
    for drift in layers.layers[:rows]:
        tensor = drift.tensor
        share = "-" if drift.contribution_db is None else f"{drift.contribution_db:+.2f} dB"
        table.add_row(
            drift.layer,
            f"{drift.sqnr_db:.2f} dB",
            share,
            f"{drift.cosine:.5f}",
            "x".join(map(str, drift.shape)),
            tensor,
        )
    _console.print(table)
    if len(layers.layers) > rows:
        _console.print(f"... {len(layers.layers) - rows} more layers in the --json report")
    if layers.unmatched:
        _console.print("no tensor of their own (fused or folded): " + ", ".join(layers.unmatched))
    ranked = layers.by_contribution()
    if ranked:
        top = ", ".join(f"{d.layer} ({d.contribution_db:+.2f} dB)" for d in ranked[:5])
        _console.print(f"own share, largest first (output SQNR recovered kept in float): {top}")
    elif layers.contributions:
        _console.print(f"own share: {layers.contributions}")


def _print_channels(report: Any) -> None:
    """Outputs measured per channel or slice: the worst five, and every collapse."""
    for output in report.outputs:
        if output.channels is None:
            continue
        table = Table(title=f"{output.name}: per channel/slice (worst first)", title_justify="left")
        for column in ("channel", "axis", "float range", "SQNR", "collapse"):
            table.add_column(column, overflow="fold")
        ranked = sorted(output.channels, key=lambda c: (not c.collapsed, c.sqnr_db))
        for channel in ranked[: max(5, len(output.collapsed))]:
            table.add_row(
                channel.name,
                str(channel.axis),
                f"{channel.float_range:.4g}",
                f"{channel.sqnr_db:.2f} dB",
                channel.reason or "",
            )
        _console.print(table)


def _print_app(manifest: dict[str, Any]) -> None:
    """The app-facing name and what the model file's own metadata carries."""
    model, app = manifest["model"], manifest.get("app")
    if app:  # bundles from before the app section lack it
        version = f" {app['version']}" if app["version"] else ""
        class_name = f", Xcode class {model['class_name']}" if model.get("class_name") else ""
        signature = f", signature {model['signature']}" if model.get("signature") else ""
        _console.print(escape(f"app name: {app['name']}{version}{class_name}{signature}"))
    if model.get("metadata"):
        _console.print(escape(f"metadata in the model file: {model['metadata']}"))


def _tensor_table(manifest: dict[str, Any]) -> Table:
    """Inputs and outputs as an app addresses them: index, name (signature key), what they
    hold; the source name only where it differs."""
    tensors = [(kind[:-4], t) for kind in ("inputs", "outputs") for t in manifest[kind]]
    renamed = any(t["source_name"] != t["name"] for _, t in tensors)
    table = Table(title="tensors", title_justify="left")
    columns = ["", "#", "name [key]", "source name", "shape", "dtype", "layout"]
    columns += ["scale, zero point", "holds"]
    for column in columns:
        if column != "source name" or renamed:
            table.add_column(column, overflow="fold")
    for kind, tensor in tensors:
        quant = tensor.get("quantization") or {}
        labels = tensor.get("labels")
        holds = tensor.get("semantics") or "-"
        if labels:
            holds += f", {labels['file']}[axis {labels['axis']}]"
        key = tensor.get("key")
        name = tensor["name"] + (f" [{key}]" if key and key != tensor["name"] else "")
        row = [kind, "-" if tensor.get("index") is None else str(tensor["index"]), name]
        row += [tensor["source_name"]] if renamed else []
        row += [str(tensor["shape"]), tensor["dtype"], tensor.get("layout") or "-"]
        row += [f"{quant['scale']:.4g}, {quant['zero_point']}" if quant else "-"]
        table.add_row(*[escape(cell) for cell in [*row, holds]])
    return table


def print_manifest(manifest: dict[str, Any]) -> None:
    target, model = manifest["target"], manifest["model"]
    _console.print(f"[bold]{target['profile']}[/bold] bundle: {target['description']}")
    _console.print(
        f"model: {model['file']}, {model['size_bytes'] / 1024:.1f} KiB, "
        f"sha256 {model['sha256'][:16]}..."
    )
    _print_app(manifest)
    source = manifest["source"]
    _console.print(
        f"source: {source['file']} ({source['format']}), sha256 {source['sha256'][:16]}..."
    )
    _console.print(_tensor_table(manifest))
    pre = manifest["preprocessing"]
    if pre is None:
        _console.print("preprocessing: none (integer inputs, fed as they are)")
    else:
        antialias = "Pillow filter" if pre.get("antialias", True) else "plain, no antialias"
        _console.print(
            escape(
                f"preprocessing: size {pre['size']}, {pre['color']}, fit "
                f"{pre.get('fit', 'stretch')}, resize {pre['resize']} ({antialias}), "
                f"scale {pre['scale']:.6g}, mean {pre['mean']}, std {pre['std']}, "
                f"{pre['layout']}; {pre['formula']} (manifest 'conventions' spells out each "
                "field)"
            )
        )
    labels = manifest.get("labels")
    if labels:
        _console.print(
            f"labels ({len(labels)}): {', '.join(labels[:20])}"
            + (" ..." if len(labels) > 20 else "")
        )
    drift = manifest["drift"]
    _console.print(
        f"drift ({drift['samples']} samples, {_data_kind(drift)}, {drift['runtime']}): "
        f"agreement {_pct(drift['top1_agreement'])}, accuracy drop "
        f"{_pct(drift['accuracy_drop'])}, min SQNR {drift['min_sqnr_db']:.2f} dB, "
        f"verdict {drift['verdict']}"
    )
    checked = [p["name"] for p in drift.get("paths", [])]
    if checked:
        _console.print(f"execution paths checked: {', '.join(checked)} (worst: {drift['path']})")
    calib = manifest["calibration"]
    _console.print(
        f"calibration: {calib['samples']} samples (seed {calib['seed']}, "
        f"{calib['method']}), fingerprint {calib['fingerprint'][:16]}..."
    )
    if manifest.get("tuning"):
        _console.print(escape(_tuning_lines(manifest["tuning"])))
    versions = ", ".join(f"{k} {v}" for k, v in manifest["versions"].items())
    _console.print(f"versions: {versions}")
    if target.get("firmware_note"):
        # the copy in the bundle: the profile's own path names a repository folder an
        # installed edgepack does not have
        _console.print(escape(f"deployment notes: {target['firmware_note']} (in the bundle)"))


def print_targets(infos: Sequence[Any], verbose: bool = False) -> None:
    """The profiles, one row each; ``verbose``: also every setting and the profile's tables
    (what ``--set`` and the config can change)."""
    table = Table(title="targets", title_justify="left")
    columns = ["name", "backend", "execution paths checked", "description"]
    if verbose:
        columns += ["settings (--set KEY=VALUE)", "drift, compat"]
    for column in columns:
        table.add_column(column, overflow="fold")
    for info in infos:
        backend = info.backend if info.available else f"{info.backend} (not in this version)"
        row = [info.name, backend, ", ".join(info.paths), info.description]
        if verbose:
            row.append(escape("\n".join(f"{k} = {_toml(v)}" for k, v in info.settings.items())))
            tables = {
                "drift": info.tables.get("drift", {}),
                "compat": info.tables.get("compat", {}),
            }
            row.append(
                escape(
                    "\n".join(
                        f"{section}.{k} = {_toml(v)}"
                        for section, values in tables.items()
                        for k, v in values.items()
                    )
                )
            )
        table.add_row(*row)
    _console.print(table)


def _toml(value: Any) -> str:
    """A value as it is written in a profile or config."""
    import json

    if isinstance(value, bool):
        return "true" if value else "false"
    return json.dumps(value) if isinstance(value, str | list | tuple) else str(value)


def print_summary(summary: Any) -> None:
    """``edgepack report``: one row per verdict found, failures under the table."""
    from edgepack.drift.summary import COLUMNS, cells

    passed = sum(row.verdict == "pass" for row in summary.rows)
    table = Table(
        title=f"edgepack report: {passed} of {len(summary.rows)} verdicts pass",
        title_justify="left",
    )
    for column in (*COLUMNS, "report"):
        table.add_column(column, overflow="fold")
    for row in summary.rows:
        shown = [escape(c) for c in cells(row)]
        shown[2] = _verdict(row.verdict == "pass") if row.verdict != "error" else "[red]error[/red]"
        table.add_row(*shown, escape(row.source))
    _console.print(table)
    for row in summary.rows:
        if row.verdict != "pass" and row.detail:
            _console.print(f"[red]{escape(row.target)}: {escape(row.detail)}[/red]")
    if summary.junit:
        _console.print(f"JUnit files: {len(summary.junit)}")
