"""Human-readable output of the CLI (rich tables on stdout)."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

_console = Console(highlight=False, width=max(100, Console().width))


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.2%}"


def _short_path(path: Path) -> str:
    with contextlib.suppress(ValueError):
        return str(path.relative_to(Path.cwd()))
    return str(path)


def _verdict(passed: bool) -> str:
    return "[green]pass[/green]" if passed else "[red]FAIL[/red]"


def print_build_results(results: Sequence[Any]) -> None:
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
        table.add_column(column)
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
    _console.print(table)
    for result in results:
        worst = result.layers.worst if result.layers is not None else None
        if worst is not None:
            _console.print(
                f"{result.target}: worst layer {worst.layer} ({worst.sqnr_db:.1f} dB; "
                "per-layer drift in drift.json)"
            )
        for failure in result.report.failures:
            _console.print(f"[red]{result.target}: {failure}[/red]")


def print_check_result(result: Any) -> None:
    report = result.report
    table = Table(
        title=f"edgepack check {result.bundle} ({report.samples} samples)", title_justify="left"
    )
    for column in ("output", "SQNR", "cosine", "max abs error", "top-1 agreement"):
        table.add_column(column)
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
    if result.layers is not None:
        _print_layers(result.layers)
    limits = report.thresholds
    if report.accuracy_float is not None:
        _console.print(
            f"accuracy: float {_pct(report.accuracy_float)}, quantized "
            f"{_pct(report.accuracy_quantized)}, drop {_pct(report.accuracy_drop)}"
        )
    _console.print(
        f"budget: agreement >= {_pct(limits.min_agreement)}, drop <= "
        f"{_pct(limits.max_drop)}, SQNR >= "
        f"{'-' if limits.min_sqnr is None else f'{limits.min_sqnr} dB'}, collapsed channels "
        f"{'allowed' if limits.allow_collapse else 'fail'}"
    )
    _console.print(f"runtime: {report.runtime}")
    _console.print(f"verdict: {_verdict(report.passed)}")


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

    def progress(phase: str, done: int, total: int) -> None:
        if phase not in tasks:
            tasks[phase] = bars.add_task(phase, total=total)
        bars.update(tasks[phase], completed=done, total=total)

    with bars:
        yield progress


def _print_layers(layers: Any, rows: int = 10) -> None:
    table = Table(
        title=f"per-layer drift, worst first ({layers.samples} samples, "
        f"{layers.extra.get('seconds', 0):.1f} s)",
        title_justify="left",
    )
    for column in ("layer", "SQNR", "cosine", "shape", "tensor"):
        table.add_column(column)
    for drift in layers.layers[:rows]:
        tensor = drift.tensor if len(drift.tensor) <= 40 else drift.tensor[:37] + "..."
        table.add_row(
            drift.layer,
            f"{drift.sqnr_db:.2f} dB",
            f"{drift.cosine:.5f}",
            "x".join(map(str, drift.shape)),
            tensor,
        )
    _console.print(table)
    if len(layers.layers) > rows:
        _console.print(f"... {len(layers.layers) - rows} more layers in the --json report")
    if layers.unmatched:
        _console.print("no tensor of their own (fused or folded): " + ", ".join(layers.unmatched))


def _print_channels(report: Any) -> None:
    """Outputs measured per channel or slice: the worst five, and every collapse."""
    for output in report.outputs:
        if output.channels is None:
            continue
        table = Table(title=f"{output.name}: per channel/slice (worst first)", title_justify="left")
        for column in ("channel", "float range", "SQNR", "collapse"):
            table.add_column(column)
        ranked = sorted(output.channels, key=lambda c: (not c.collapsed, c.sqnr_db))
        for channel in ranked[: max(5, len(output.collapsed))]:
            table.add_row(
                channel.name,
                f"{channel.float_range:.4g}",
                f"{channel.sqnr_db:.2f} dB",
                channel.reason or "",
            )
        _console.print(table)


def print_manifest(manifest: dict[str, Any]) -> None:
    target, model = manifest["target"], manifest["model"]
    _console.print(f"[bold]{target['profile']}[/bold] bundle: {target['description']}")
    _console.print(
        f"model: {model['file']}, {model['size_bytes'] / 1024:.1f} KiB, "
        f"sha256 {model['sha256'][:16]}..."
    )
    source = manifest["source"]
    _console.print(
        f"source: {source['file']} ({source['format']}), sha256 {source['sha256'][:16]}..."
    )
    table = Table(title="tensors", title_justify="left")
    for column in (
        "kind",
        "name",
        "source name",
        "shape",
        "dtype",
        "layout",
        "scale",
        "zero point",
    ):
        table.add_column(column)
    for kind in ("inputs", "outputs"):
        for tensor in manifest[kind]:
            quant = tensor.get("quantization") or {}
            table.add_row(
                kind[:-1],
                tensor["name"],
                tensor["source_name"],
                str(tensor["shape"]),
                tensor["dtype"],
                tensor.get("layout") or "-",
                f"{quant['scale']:.6g}" if quant else "-",
                str(quant.get("zero_point", "-")),
            )
    _console.print(table)
    pre = manifest["preprocessing"]
    _console.print(
        f"preprocessing: size {pre['size']}, {pre['color']}, resize {pre['resize']}, "
        f"scale {pre['scale']:.6g}, mean {pre['mean']}, std {pre['std']}, "
        f"{pre['layout']}; {pre['formula']}"
    )
    labels = manifest.get("labels")
    if labels:
        _console.print(
            f"labels ({len(labels)}): {', '.join(labels[:20])}"
            + (" ..." if len(labels) > 20 else "")
        )
    drift = manifest["drift"]
    _console.print(
        f"drift ({drift['samples']} held-out samples, {drift['runtime']}): "
        f"agreement {_pct(drift['top1_agreement'])}, accuracy drop "
        f"{_pct(drift['accuracy_drop'])}, min SQNR {drift['min_sqnr_db']:.1f} dB, "
        f"verdict {drift['verdict']}"
    )
    calib = manifest["calibration"]
    _console.print(
        f"calibration: {calib['samples']} samples (seed {calib['seed']}, "
        f"{calib['method']}), fingerprint {calib['fingerprint'][:16]}..."
    )
    versions = ", ".join(f"{k} {v}" for k, v in manifest["versions"].items())
    _console.print(f"versions: {versions}")
    if target.get("firmware_note"):
        _console.print(f"deployment notes: {target['firmware_note']}")


def print_targets(infos: Sequence[Any]) -> None:
    table = Table(title="targets", title_justify="left")
    for column in ("name", "backend", "description"):
        table.add_column(column)
    for info in infos:
        backend = info.backend if info.available else f"{info.backend} (not in this version)"
        table.add_row(info.name, backend, info.description)
    _console.print(table)
