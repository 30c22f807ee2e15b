"""The ``edgepack`` command: Click options, then one call into :mod:`edgepack.api`.

Errors are printed as one line on stderr with the exit code of their type
(see :mod:`edgepack.errors`); ``-v`` adds native logs and, for internal errors, the traceback.
"""

from __future__ import annotations

import json
import logging
import shutil
import sys
import textwrap
import traceback
from collections.abc import Callable
from functools import wraps
from pathlib import Path
from typing import Any, NoReturn

import click

from edgepack import __version__
from edgepack._native import set_verbosity
from edgepack.errors import (
    EXIT_DRIFT,
    EXIT_INTERNAL,
    EXIT_INTERRUPTED,
    EdgepackError,
    output_error,
)

F = Callable[..., Any]


def _verbosity_options(function: F) -> F:
    function = click.option(
        "-q", "--quiet", count=True, help="Print less (warnings and errors only)."
    )(function)
    return click.option(
        "-v", "--verbose", count=True, help="Print more: steps' native logs (-vv: also warnings)."
    )(function)


def _budget_options(function: F) -> F:
    """The drift budget flags, shared by ``build`` and ``check``."""
    function = click.option(
        "--allow-collapse",
        is_flag=True,
        default=None,
        help="Report collapsed output channels without failing the check.",
    )(function)
    function = click.option(
        "--min-sqnr", default=None, help="Minimum SQNR per output in dB, or off."
    )(function)
    function = click.option(
        "--min-recall",
        default=None,
        help="Detection outputs: share of the float model's detections the bundle must find, "
        "e.g. 90% [default: 90%], or off.",
    )(function)
    function = click.option(
        "--max-drop", default=None, help="Accuracy drop budget, e.g. 1% or 0.01, or off."
    )(function)
    function = click.option(
        "--path",
        "paths",
        multiple=True,
        help="Execution path to check (repeatable; see 'edgepack targets'): e.g. xnnpack for "
        "tflite, unoptimized for onnx [default: every path the host has].",
        callback=lambda _ctx, _param, value: list(value) or None,
    )(function)
    return click.option(
        "--min-agreement", default=None, help="Top-1 agreement budget, e.g. 99% or 0.99, or off."
    )(function)


def _target_names(incomplete: str) -> list[Any]:
    """Shell completion of --target: the built-in profile names and ``all``, then files."""
    from click.shell_completion import CompletionItem

    from edgepack.profiles import builtin_profile_names

    names = [n for n in [*builtin_profile_names(), "all"] if n.startswith(incomplete)]
    return [CompletionItem(n) for n in names] or [CompletionItem(incomplete, type="file")]


def _show_progress(no_progress: bool) -> bool:
    """Progress bars on stderr when it is a terminal, unless asked not to (or -q)."""
    return not (no_progress or _quiet()) and sys.stderr.isatty()


def _report_options(command: str) -> Callable[[F], F]:
    """--json, --junit, --html, --layers and --no-progress, shared by build and check."""
    several = " (one page per target when there are several: FILE-<target>.html)"

    def add(function: F) -> F:
        function = click.option(
            "--no-progress",
            is_flag=True,
            default=False,
            help="No progress bars (they are off anyway when stderr is not a terminal).",
        )(function)
        function = click.option(
            "--layers",
            is_flag=True,
            default=None,
            help="Also measure drift per layer (worst first), named as in the source model.",
        )(function)
        function = click.option(
            "--html",
            "html_path",
            default=None,
            type=click.Path(path_type=str),
            help="Also write a self-contained HTML report with plots to this file"
            + (several if command == "build" else "")
            + ".",
        )(function)
        function = click.option(
            "--junit",
            "junit_path",
            default=None,
            type=click.Path(path_type=str),
            help="Also write the verdict as JUnit XML (one test case per threshold and output"
            + ("; per target, and one per required NPU device)." if command == "build" else ")."),
        )(function)
        return click.option(
            "--json",
            "json_path",
            default=None,
            type=click.Path(path_type=str),
            help="Also write the drift report"
            + (" of every target, with its placement and any build error," if command == "build"
               else "")
            + " as JSON to this file.",
        )(function)  # fmt: skip

    return add


def _configure(verbose: int, quiet: int) -> None:
    """Verbosity and logging for the command; and every EDGEPACK_* variable checked, by every
    command (a misspelt one is an error, not silently ignored)."""
    from edgepack.options import env_layer, environ_snapshot

    env_layer(environ_snapshot())
    ctx = click.get_current_context()
    state = ctx.find_root().ensure_object(dict)
    state["verbose"] = state.get("verbose", 0) + verbose
    state["quiet"] = state.get("quiet", 0) + quiet
    set_verbosity(state["verbose"])
    level = (
        logging.WARNING if state["quiet"] else (logging.DEBUG if state["verbose"] else logging.INFO)
    )
    logger = logging.getLogger("edgepack")
    logger.handlers.clear()
    # Progress is the command's narrative, on stdout beside its results; stderr holds only
    # warnings and, when a command fails, its one error line.
    progress = _CurrentStreamHandler("stdout")
    progress.addFilter(lambda record: record.levelno < logging.WARNING)
    problems = _CurrentStreamHandler("stderr")
    problems.setLevel(logging.WARNING)
    for handler in (progress, problems):
        handler.setFormatter(_LineFormatter(handler.stream))
        logger.addHandler(handler)
    logger.setLevel(level)
    logger.propagate = False


class _CurrentStreamHandler(logging.StreamHandler):
    """Writes to ``sys.stdout`` / ``sys.stderr`` as they are when a record comes: while
    progress bars are drawn, rich replaces them so that lines print above the bars."""

    def __init__(self, which: str) -> None:
        super().__init__(getattr(sys, which))
        self.which = which

    def emit(self, record: logging.LogRecord) -> None:
        self.stream = getattr(sys, self.which)
        super().emit(record)


class _LineFormatter(logging.Formatter):
    """``edgepack: <message>``; in a terminal, wrapped to its width (continuation lines
    indented), so that long messages read like the tables beside them. Logs keep one line."""

    def __init__(self, stream: Any) -> None:
        super().__init__("edgepack: %(message)s")
        self.terminal = bool(getattr(stream, "isatty", lambda: False)())

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        if not self.terminal:
            return line
        width = shutil.get_terminal_size().columns
        wrapped = textwrap.wrap(line, width, subsequent_indent="  ", break_on_hyphens=False)
        return "\n".join(wrapped) or line


def _quiet() -> bool:
    return bool(click.get_current_context().find_root().ensure_object(dict).get("quiet"))


def _verbose() -> int:
    return int(click.get_current_context().find_root().ensure_object(dict).get("verbose", 0))


def _reported(function: F) -> F:
    """Turn edgepack errors into one line and their exit code; anything else is a bug."""

    @wraps(function)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return function(*args, **kwargs)
        except EdgepackError as exc:
            click.echo(f"edgepack: {exc.kind}: {exc}", err=True)
            sys.exit(exc.exit_code)
        except KeyboardInterrupt:
            click.echo("edgepack: interrupted", err=True)
            sys.exit(EXIT_INTERRUPTED)
        except OSError as exc:
            error = output_error(exc, "the output")
            if error is None:
                _internal_error(exc)
            click.echo(f"edgepack: {error.kind}: {error}", err=True)
            sys.exit(error.exit_code)
        except Exception as exc:
            _internal_error(exc)

    return wrapper


def _internal_error(exc: BaseException) -> NoReturn:
    if _verbose():
        traceback.print_exc()
    message = " ".join(str(exc).split())[:300]
    click.echo(
        f"edgepack: internal error: {type(exc).__name__}: {message} "
        "(a bug: rerun with -v and report it)",
        err=True,
    )
    sys.exit(EXIT_INTERNAL)


class _OneLineErrors(click.Group):
    """A group whose usage errors are one line too (Click prints usage and a hint)."""

    def main(self, *args: Any, **kwargs: Any) -> Any:
        kwargs["standalone_mode"] = False
        try:
            code = super().main(*args, **kwargs)
        except click.exceptions.NoArgsIsHelpError as exc:
            # bare `edgepack`: the help, as `edgepack --help` prints it (not an error line)
            click.echo(exc.ctx.get_help())
            sys.exit(0)
        except click.ClickException as exc:
            click.echo(f"edgepack: usage error: {exc.format_message()} (see --help)", err=True)
            sys.exit(exc.exit_code)
        except EdgepackError as exc:  # raised before a command runs (its environment)
            click.echo(f"edgepack: {exc.kind}: {exc}", err=True)
            sys.exit(exc.exit_code)
        except click.exceptions.Abort:
            click.echo("edgepack: interrupted", err=True)
            sys.exit(EXIT_INTERRUPTED)
        sys.exit(code if isinstance(code, int) else 0)


@click.group(cls=_OneLineErrors, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "--version", prog_name="edgepack")
@_verbosity_options
def cli(verbose: int, quiet: int) -> None:
    """Turn a trained model into drift-checked bundles for phones and edge devices."""
    _configure(verbose, quiet)


@cli.command()
@click.argument("model", type=click.Path(path_type=str))
@click.option(
    "-t",
    "--target",
    "targets",
    multiple=True,
    required=True,
    help="Target profile name (see 'edgepack targets'), 'all', or a profile .toml.",
    shell_complete=lambda _ctx, _param, incomplete: _target_names(incomplete),
)
@click.option(
    "-c",
    "--calib",
    required=True,
    type=click.Path(path_type=str),
    help="Calibration set folder (with calibration.toml).",
)
@click.option(
    "-e",
    "--eval",
    "eval",
    default=None,
    type=click.Path(path_type=str),
    help="Evaluation folder for the drift check; then every calibration sample calibrates "
    "[default: hold out part of the calibration set].",
)
@click.option("-o", "--out", default=None, help="Output folder for bundles [default: bundles].")
@click.option(
    "-n",
    "--num-calib",
    type=int,
    default=None,
    help="Calibration samples to use [default: from the profile].",
)
@click.option("--seed", type=int, default=None, help="Seed of the sample selection [default: 0].")
@click.option(
    "--calib-method",
    default=None,
    type=click.Choice(["minmax", "percentile", "entropy"]),
    help="Calibration method where the target offers a choice.",
)
@click.option("--force", is_flag=True, default=None, help="Replace existing bundles.")
@click.option(
    "--drift-samples",
    type=int,
    default=None,
    help="Most samples for the drift check (evaluation or held-out).",
)
@click.option(
    "--tune/--no-tune",
    default=None,
    help="Search the target's calibration choices on a validation part of the calibration "
    "set and build the best [default: from the profile/config, off].",
)
@click.option(
    "--tune-seconds",
    type=float,
    default=None,
    help="Time budget of the search [default: 600].",
)
@click.option(
    "--tune-precisions",
    default=None,
    metavar="LIST",
    help="Precisions mixed precision may raise a layer to, where the target has them: "
    "int16, float, int16,float or none [default: int16,float].",
)
@click.option(
    "--set",
    "overrides",
    multiple=True,
    metavar="KEY=VALUE",
    help="Override an option or backend setting, as in the config: quantize=w8a8, "
    "drift.max_drop=2%, targets.onnx.per_channel=false; repeatable (see 'edgepack targets "
    "--verbose').",
)
@click.option(
    "--require-npu",
    "require_npu",
    multiple=True,
    metavar="DEVICE",
    help="Fail (exit 1, bundle written) unless every op runs on DEVICE: a SoC (SM8650, "
    "mt6989, Tensor_G4) or nnapi, coreml-ep, ane; repeatable (README: NPU placement).",
    callback=lambda _ctx, _param, value: list(value) or None,
)
@_report_options("build")
@_budget_options
@_verbosity_options
@_reported
def build(
    model: str,
    targets: tuple[str, ...],
    calib: str,
    verbose: int,
    quiet: int,
    no_progress: bool,
    **options: Any,
) -> None:
    """Build one bundle per target from MODEL (.keras, .h5, SavedModel folder, .onnx)."""
    _configure(verbose, quiet)
    from edgepack import api
    from edgepack.errors import TargetsFailedError
    from edgepack.report_text import print_build_results, progress_bars

    failures: list[tuple[str, Any]] = []
    with progress_bars(_show_progress(no_progress)) as progress:
        try:
            results = api.build(model, list(targets), calib, progress=progress, **options)
        except TargetsFailedError as failed:
            results, failures = failed.results, failed.failures
    if not _quiet():
        print_build_results(results, failures)
    for target, error in failures:
        click.echo(f"edgepack: {target}: {error.kind}: {error}", err=True)
    drifted = [r.target for r in results if not r.report.passed]
    misplaced = [r.target for r in results if not r.placement_passed]
    if drifted:
        click.echo(
            "edgepack: drift exceeded: the budget does not hold for "
            + ", ".join(drifted)
            + " (bundles written)",
            err=True,
        )
    if misplaced:
        click.echo(
            "edgepack: placement: a required NPU device does not take every op of "
            + ", ".join(misplaced)
            + " (bundles written; inspect --compat names the ops)",
            err=True,
        )
    codes = [error.exit_code for _, error in failures]
    if drifted or misplaced:
        codes.append(EXIT_DRIFT)
    if codes:
        sys.exit(max(codes))


@cli.command()
@click.argument("bundle", type=click.Path(path_type=str))
@click.option(
    "-d",
    "--data",
    required=True,
    type=click.Path(path_type=str),
    help="Evaluation folder (calibration.toml optional: the bundle's contract is used).",
)
@click.option(
    "-m",
    "--model",
    default=None,
    type=click.Path(path_type=str),
    help="The float source model, if not where the manifest says.",
)
@_budget_options
@click.option("--samples", type=int, default=None, help="Most samples to evaluate.")
@click.option(
    "--runtime",
    type=click.Choice(["emulated", "native"]),
    default="emulated",
    show_default=True,
    help="Core ML bundles: edgepack's emulator, or Apple's runtime (macOS only).",
)
@_report_options("check")
@_verbosity_options
@_reported
def check(
    bundle: str, data: str, verbose: int, quiet: int, no_progress: bool, **options: Any
) -> None:
    """Re-check BUNDLE's drift against its float source model on DATA; exit 1 if over budget."""
    _configure(verbose, quiet)
    from edgepack import api
    from edgepack.report_text import print_check_result, progress_bars

    with progress_bars(_show_progress(no_progress)) as progress:
        result = api.check(bundle, data, progress=progress, **options)
    if not _quiet():
        print_check_result(result)
    if not result.passed:
        click.echo("edgepack: drift exceeded: " + "; ".join(result.report.failures), err=True)
        sys.exit(EXIT_DRIFT)


@cli.command()
@click.argument("bundle", type=click.Path(path_type=str))
@click.option(
    "--json", "as_json", is_flag=True, help="Print the raw manifest (with --compat: its placement)."
)
@click.option(
    "--compat",
    is_flag=True,
    help="Where each op runs: per NPU device, the ops it takes, its partitions and every op "
    "left to the CPU with the vendor tool's reason.",
)
@_verbosity_options
@_reported
def inspect(bundle: str, as_json: bool, compat: bool, verbose: int, quiet: int) -> None:
    """Summarise BUNDLE's manifest: inputs/outputs, quantization, size, drift."""
    _configure(verbose, quiet)
    from edgepack import api
    from edgepack.report_text import print_compat, print_manifest

    manifest = api.inspect(bundle)
    if compat:
        placement = api.inspect_compat(manifest, bundle)
        if as_json:
            click.echo(json.dumps(manifest.get("compat"), indent=2))
        else:
            print_compat(manifest, placement)
    elif as_json:
        click.echo(json.dumps(manifest, indent=2))
    else:
        print_manifest(manifest)


@cli.command()
@click.option(
    "--json", "as_json", is_flag=True, help="Print the profiles as JSON (every setting and table)."
)
@_verbosity_options
@_reported
def targets(as_json: bool, verbose: int, quiet: int) -> None:
    """List the target profiles (-v: with every setting, drift and compat option)."""
    _configure(verbose, quiet)
    from edgepack import api
    from edgepack.report_text import print_targets

    infos = api.targets()
    if as_json:
        click.echo(json.dumps([info.to_dict() for info in infos], indent=2))
    else:
        print_targets(infos, verbose=bool(verbose))


@cli.command()
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=str))
@click.option(
    "--html",
    "html_path",
    default=None,
    type=click.Path(path_type=str),
    help="Also write an HTML index (rows link each report's HTML page).",
)
@click.option(
    "--markdown",
    "markdown_path",
    default=None,
    type=click.Path(path_type=str),
    help="Also write the table as Markdown (for a CI job summary).",
)
@click.option(
    "--junit",
    "junit_path",
    default=None,
    type=click.Path(path_type=str),
    help="Also merge every JUnit file found into one.",
)
@click.option(
    "--json",
    "json_path",
    default=None,
    type=click.Path(path_type=str),
    help="Also write the rows as JSON.",
)
@_verbosity_options
@_reported
def report(paths: tuple[str, ...], verbose: int, quiet: int, **outputs: Any) -> None:
    """Merge the drift reports in PATHS (check/build --json files, bundles, JUnit; folders
    searched) into one table; exit 1 if any verdict fails."""
    _configure(verbose, quiet)
    from edgepack import api
    from edgepack.report_text import print_summary

    summary = api.report(list(paths), **outputs)
    if not _quiet():
        print_summary(summary)
    if not summary.passed:
        failing = [row for row in summary.rows if row.verdict != "pass"]
        click.echo(
            f"edgepack: {len(failing)} of {len(summary.rows)} verdicts do not pass: "
            + ", ".join(f"{Path(r.bundle).name or r.target} ({r.verdict})" for r in failing),
            err=True,
        )
        sys.exit(EXIT_DRIFT)


# Commands that only read and run bundles: their process imports coremltools without the
# frameworks it converts from (see edgepack._native), unless --layers converts again.
_READ_ONLY_COMMANDS = ("check", "inspect")


def main() -> None:
    """Console-script entry point."""
    arguments = sys.argv[1:]
    command = next((a for a in arguments if not a.startswith("-")), None)
    if command in _READ_ONLY_COMMANDS and "--layers" not in arguments:
        from edgepack._native import use_coremltools_without_converters

        use_coremltools_without_converters()
    cli(prog_name="edgepack")
