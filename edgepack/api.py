"""edgepack's Python API: what the CLI calls, one function per command.

>>> import edgepack
>>> results = edgepack.build("examples/digits/digits.keras", targets=["tflite"],
...                          calib="calibration/digits/calib")
>>> results[0].report.top1_agreement
0.995
>>> checked = edgepack.check("bundles/digits-tflite", data="calibration/digits/eval")
>>> checked.passed
True
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import math
import os
import platform
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edgepack import __version__
from edgepack.errors import (
    BundleError,
    CalibrationError,
    ConfigError,
    EdgepackError,
    ModelLoadError,
    TargetsFailedError,
    UnsupportedError,
)
from edgepack.options import (
    BuildOptions,
    check_options_layer,
    check_overrides,
    parse_overrides,
    parse_paths,
    resolve_build_options,
    resolve_check_options,
)
from edgepack.profiles import TargetProfile, builtin_profile_names, load_profile

if TYPE_CHECKING:  # numpy-backed types: imported where they are used, not on import
    from edgepack.drift.layers import LayerReport
    from edgepack.drift.report import DriftReport
    from edgepack.placement import Compat

log = logging.getLogger("edgepack")


@dataclass(frozen=True)
class BuildResult:
    """One target's bundle: where it is, what the drift check found, and its manifest."""

    target: str
    bundle: Path
    manifest: dict[str, Any]
    report: DriftReport
    seconds: float
    layers: LayerReport | None = None  # when the options ask for it
    compat: Compat | None = None  # when the target places on devices

    @property
    def passed(self) -> bool:
        """The drift budget holds and the model is wholly on every required device."""
        return bool(self.report.passed) and self.placement_passed

    @property
    def placement_passed(self) -> bool:
        return self.compat is None or bool(self.compat.passed)


@dataclass(frozen=True)
class CheckResult:
    """The outcome of re-checking a bundle's drift on a data set."""

    bundle: Path
    manifest: dict[str, Any]
    report: DriftReport
    layers: LayerReport | None = None  # with layers=True

    @property
    def passed(self) -> bool:
        return bool(self.report.passed)


@dataclass(frozen=True)
class TargetInfo:
    """A built-in target profile: what it builds, and the options a build of it starts from
    (``settings``: every backend setting, the profile's over the backend's defaults; the
    profile's ``calibration``, ``drift``, ``tune`` and ``compat`` tables)."""

    name: str
    description: str
    backend: str
    available: bool
    firmware_note: str | None
    paths: tuple[str, ...] = ()  # execution paths its drift check runs on this host
    settings: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    tables: Mapping[str, Mapping[str, Any]] = dataclasses.field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "description": self.description,
            "backend": self.backend,
            "available": self.available,
            "firmware_note": self.firmware_note,
            "paths": list(self.paths),
            "settings": dict(self.settings),
            **{name: dict(table) for name, table in self.tables.items()},
        }


# ---------------------------------------------------------------------------- targets


def targets() -> list[TargetInfo]:
    """The built-in target profiles, and whether their backend exists in this version."""
    from edgepack.backends import BACKENDS

    infos = []
    for name in builtin_profile_names():
        profile = load_profile(name)
        backend = BACKENDS.get(profile.backend)
        paths: tuple[str, ...] = ()
        settings: dict[str, Any] = dict(profile.settings)
        if backend is not None:
            requested = parse_paths(profile.drift.get("paths", ()))
            chosen = _host_paths(backend, requested, native=False)
            paths = tuple(p.name for p in chosen)
            settings = dataclasses.asdict(backend.settings_type(**profile.settings))
        tables = {
            "calibration": profile.calibration,
            "drift": profile.drift,
            "tune": profile.tune,
            "compat": profile.compat,
        }
        infos.append(
            TargetInfo(
                profile.name,
                profile.description,
                profile.backend,
                backend is not None,
                profile.firmware_note,
                paths,
                settings,
                tables,
            )
        )
    return infos


def resolve_targets(names: Sequence[str] | str) -> list[TargetProfile]:
    """Profile names or paths -> profiles; ``all`` is one bundle per backend: the built-in
    profile named after it (``tflite``, ``onnx``, ``coreml``). Variants are asked by name.
    One name may be given as a string."""
    from edgepack.backends import BACKENDS

    if isinstance(names, str):
        names = [names]
    if not names:
        raise ConfigError("no target given (use --target NAME; see 'edgepack targets')")
    profiles: list[TargetProfile] = []
    for name in names:
        if name == "all":
            builtin = builtin_profile_names()
            profiles += [load_profile(backend) for backend in BACKENDS if backend in builtin]
        else:
            profiles.append(load_profile(name))
    unique = {p.name: p for p in profiles}
    return list(unique.values())


# ---------------------------------------------------------------------------- build


def build(
    model: str | os.PathLike[str],
    targets: Sequence[str] | str,
    calib: str | os.PathLike[str],
    *,
    eval: str | os.PathLike[str] | None = None,
    out: str | os.PathLike[str] | None = None,
    num_calib: int | None = None,
    seed: int | None = None,
    calib_method: str | None = None,
    force: bool | None = None,
    drift_samples: int | None = None,
    min_agreement: float | str | None = None,
    max_drop: float | str | None = None,
    min_sqnr: float | str | None = None,
    allow_collapse: bool | None = None,
    min_recall: float | str | None = None,
    paths: Sequence[str] | None = None,
    tune: bool | None = None,
    tune_seconds: float | None = None,
    tune_precisions: Sequence[str] | str | None = None,
    require_npu: Sequence[str] | str | None = None,
    layers: bool | None = None,
    json_path: str | os.PathLike[str] | None = None,
    junit_path: str | os.PathLike[str] | None = None,
    html_path: str | os.PathLike[str] | None = None,
    progress: Callable[[str, int, int], None] | None = None,
    overrides: Sequence[str] = (),
    cwd: str | os.PathLike[str] | None = None,
    environ: Mapping[str, str] | None = None,
) -> list[BuildResult]:
    """Build one bundle per target from ``model``, calibrated on ``calib``, drift-checked on
    the evaluation set ``eval`` (then every calibration sample calibrates) or, without one, on
    a held-out part of ``calib``.

    Options not given here come from ``EDGEPACK_*`` variables, the project config and the
    target profile, in that order. The drift check runs the bundle on every execution path of
    its target the host has (``paths`` narrows them) and judges the worst. ``tune`` searches
    the target's calibration choices on a validation part of ``calib`` first (at most
    ``tune_seconds``) and builds the best one, raising the layers that harm the output most
    to the ``tune_precisions`` the target has when that is not enough (:mod:`edgepack.tune`).
    Each bundle is placed on the devices of its profile's ``[compat]`` table the target
    knows (:mod:`edgepack.placement`); ``require_npu`` names devices every op must run on.
    Returns one :class:`BuildResult` per target; a target whose drift exceeds its budget, or
    whose model falls off a required device, still gets its bundle (``result.passed`` is
    False). Each target is built on its own: when one of several fails (its conversion, its
    support check), the others are still built and :class:`TargetsFailedError` is raised at
    the end with their results and each failure; a single target's failure is raised as it is.
    ``overrides`` are ``KEY=VALUE`` strings (``--set``): any option or backend setting, for
    every target or one (``targets.onnx.per_channel=false``), checked like the config.
    ``json_path``, ``junit_path`` and ``html_path`` also write the verdicts as ``check`` does
    (one HTML page per target when there are several); ``progress(phase, done, total)`` is
    called as the drift check's samples go through each model.
    """
    from edgepack.calib.dataset import open_sample_set
    from edgepack.frontends import detect_format, load_source

    work_dir = Path(cwd) if cwd is not None else Path.cwd()
    env = dict(os.environ if environ is None else environ)
    cli = {
        "out": None if out is None else str(out),
        "force": force,
        "calibration.num_samples": num_calib,
        "calibration.seed": seed,
        "drift.samples": drift_samples,
        "drift.min_agreement": min_agreement,
        "drift.max_drop": max_drop,
        "drift.min_sqnr": min_sqnr,
        "drift.allow_collapse": allow_collapse,
        "drift.min_recall": min_recall,
        "drift.paths": paths,
        "drift.eval": None if eval is None else str(eval),
        "settings.calibration_method": calib_method,
        "tune.enabled": tune,
        "tune.max_seconds": tune_seconds,
        "tune.precisions": tune_precisions,
        "compat.require": require_npu,
        "drift.layers": layers,
    }
    model_path = _absolute(Path(model), work_dir)
    plans = _build_plans(targets, cli, overrides, work_dir, env)
    placing = _placement_plans(plans)
    detect_format(model_path)
    for _, _, options in plans:
        _ensure_bundle_slot(model_path, options)

    samples = open_sample_set(_absolute(Path(calib), work_dir))
    log.info("loading %s", model_path)
    source = load_source(model_path)
    if source.refusals:
        raise UnsupportedError(f"{model_path.name}: {source.refusals[0]}")
    bound = samples.bind(source.inputs)
    failures: list[tuple[str, EdgepackError]] = []
    supported = []
    for index, (profile, backend, options) in enumerate(plans):
        try:
            backend.check_support(source, options.settings)
            supported.append(index)
        except UnsupportedError as exc:
            if len(plans) == 1:
                raise
            failures.append((profile.name, exc))
    # one sample through the float model before any conversion: a size or layout its graph
    # cannot take is the set's problem, said as such, not a converter's failure later
    source.run(bound.load(samples.samples[:1]))
    evaluations: dict[Path | None, Any] = {
        options.eval_dir: _evaluation_set(options.eval_dir, samples, source)
        for _, _, options in plans
        if options.eval_dir is not None
    }
    built: list[_Built] = []
    for index in supported:
        profile, backend, options = plans[index]
        job = _Job(
            source, samples, bound, backend, options, evaluations.get(options.eval_dir),
            *placing[index], progress,
        )  # fmt: skip
        try:
            built.append(_build_one(job))
        except EdgepackError as exc:
            if len(plans) == 1:
                raise
            log.warning("%s: %s: %s (the other targets go on)", profile.name, exc.kind, exc)
            failures.append((profile.name, exc))
    results = [b.result for b in built]
    reports = BuildReports(json_path, junit_path, html_path)
    _write_build_reports(built, failures, work_dir, reports)
    if failures:
        raise TargetsFailedError(failures, results)
    return results


@dataclass(frozen=True)
class BuildReports:
    """The report files a build writes beside its bundles (None: not asked for)."""

    json_path: str | os.PathLike[str] | None = None
    junit_path: str | os.PathLike[str] | None = None
    html_path: str | os.PathLike[str] | None = None


def _write_build_reports(
    built: Sequence[_Built],
    failures: Sequence[tuple[str, EdgepackError]],
    work_dir: Path,
    reports: BuildReports,
) -> None:
    """``build --json/--junit/--html``: every target's verdict, the failed ones' errors.
    With several targets, each gets its own HTML page (``report-<target>.html``)."""
    from edgepack.bundle import json_text, write_report

    results = [b.result for b in built]
    if reports.json_path is not None:
        document = {
            "targets": [build_result_dict(r) for r in results],
            "failures": [
                {"target": t, "kind": e.kind, "exit_code": e.exit_code, "message": str(e)}
                for t, e in failures
            ],
        }
        write_report(_absolute(Path(reports.json_path), work_dir), json_text(document))
    if reports.junit_path is not None:
        from edgepack.drift.junit import build_junit_xml

        page = build_junit_xml(results, failures)
        write_report(_absolute(Path(reports.junit_path), work_dir), page)
    if reports.html_path is not None:
        from edgepack.drift.html import render_html

        path = _absolute(Path(reports.html_path), work_dir)
        several = len(built) + len(failures) > 1
        for one in built:
            result, outputs = one.result, one.outputs
            page = render_html(
                result.report,
                result.manifest,
                outputs["reference"],
                outputs["quantized"],
                outputs["labels"],
                result.layers,
                str(result.bundle),
            )
            target = (
                path.with_name(f"{path.stem}-{result.target}{path.suffix}") if several else path
            )
            write_report(target, page)


def build_result_dict(result: BuildResult) -> dict[str, Any]:
    """One target's outcome as JSON: its bundle, verdicts, drift report and placement."""
    document: dict[str, Any] = {
        "target": result.target,
        "bundle": str(result.bundle),
        "passed": result.passed,
        "drift_passed": bool(result.report.passed),
        "placement_passed": result.placement_passed,
        "seconds": round(result.seconds, 3),
        "drift": result.report.to_dict(),
        "compat": None if result.compat is None else result.compat.to_dict(),
    }
    if result.layers is not None:
        document["layers"] = result.layers.to_dict()
    return document


def _build_plans(
    targets: Sequence[str] | str,
    cli: Mapping[str, Any],
    overrides: Sequence[str],
    work_dir: Path,
    env: Mapping[str, str],
) -> list[tuple[TargetProfile, Any, BuildOptions]]:
    """Each target's profile, backend and resolved options; every option problem (an
    unknown key, a bad value, a missing note, an unknown execution path) before any work."""
    from edgepack.backends import get_backend
    from edgepack.profiles import firmware_note_file

    profiles = [(p, get_backend(p.backend)) for p in resolve_targets(targets)]
    sets = parse_overrides(overrides)
    check_overrides(sets, {p.name: b.settings_type for p, b in profiles})
    plans = []
    for profile, backend in profiles:
        firmware_note_file(profile)  # a missing note fails every target before any work
        options = resolve_build_options(profile, backend.settings_type, cli, work_dir, env, sets)
        _host_paths(backend, options.paths, native=False)  # an unknown path fails before work
        plans.append((profile, backend, options))
    return plans


def _placement_plans(plans: Sequence[Any]) -> list[tuple[tuple[Any, ...], tuple[str, ...]]]:
    """Per target: the devices it places its bundle on and the names of those it requires.
    A device no target of the build knows is an error, and so is a required device whose
    tool cannot run here: both before any work."""
    placing = []
    served: set[str] = set()
    for profile, backend, options in plans:
        devices, require = [], []
        for name in options.compat.all_devices:
            found = backend.devices([name], options.settings)
            if not found:
                continue
            served.add(name.lower())
            devices += found
            if name.lower() in {r.lower() for r in options.compat.require}:
                require.append(found[0].name)
                if found[0].missing is not None:
                    raise UnsupportedError(
                        f"{profile.name}: the build requires {name}, which cannot be measured "
                        f"here: {found[0].missing}"
                    )
        placing.append((tuple(devices), tuple(require)))
    names = {n.lower(): n for _, _, options in plans for n in options.compat.all_devices}
    unknown = [name for lower, name in names.items() if lower not in served]
    if unknown:
        places = "; ".join(
            f"{profile.name}: {backend.places(options.settings) or 'none'}"
            for profile, backend, options in plans
        )
        raise ConfigError(f"no target of this build places {', '.join(unknown)} ({places})")
    return placing


def _evaluation_set(folder: Path, calibration: Any, source: Any) -> Any:
    """The build's evaluation set, bound to the source model: read with the calibration
    set's contract unless it has its own, which must declare the same preprocessing."""
    from edgepack.calib.dataset import open_sample_set

    evaluation = open_sample_set(folder, fallback=calibration.contract)
    if evaluation.preprocessing.to_dict() != calibration.preprocessing.to_dict():
        raise CalibrationError(
            f"{folder}: its preprocessing differs from the calibration set's "
            f"({calibration.root}); the drift check must feed the model as the app will"
        )
    if calibration.label_names and evaluation.label_names:
        unknown = sorted(set(evaluation.label_names) - set(calibration.label_names))
        if unknown:
            raise CalibrationError(
                f"{folder}: labels {unknown} are not among the calibration set's labels"
            )
    return evaluation.bind(source.inputs)


def _ensure_bundle_slot(model_path: Path, options: BuildOptions) -> None:
    from edgepack.bundle import bundle_path, ensure_writable

    ensure_writable(bundle_path(options.out_dir, model_path, options.profile.name), options.force)


@dataclass(frozen=True)
class _Job:
    """One target's build: the loaded source, the calibration set and the resolved options."""

    source: Any  # SourceModel
    samples: Any  # SampleSet
    bound: Any  # BoundSet
    backend: Any  # Backend
    options: BuildOptions
    evaluation: Any = None  # BoundSet of the evaluation set (None: hold out calibration samples)
    devices: tuple[Any, ...] = ()  # edgepack.placement.Device: where to place the bundle
    require: tuple[str, ...] = ()  # of those, the ones it must be wholly on
    progress: Callable[[str, int, int], None] | None = None  # the drift check's, per phase


class _Steps:
    """A build's steps as one progress bar (the drift check draws its own per model): the
    bar's elapsed time moves during a long conversion, its count says which step is done."""

    TOTAL = 5  # calibration data, conversion, placement, drift check, bundle written

    def __init__(self, progress: Callable[[str, int, int], None] | None, phase: str) -> None:
        self.progress = progress
        self.phase = phase
        self.count = 0
        if progress is not None:
            progress(phase, 0, self.TOTAL)

    def done(self, what: str) -> None:
        self.count += 1
        if self.progress is not None:
            self.progress(self.phase, self.count, self.TOTAL)
        log.debug("%s: %s", self.phase, what)


@dataclass(frozen=True)
class _Built:
    """A target's result, and its drift check's outputs for the HTML report."""

    result: BuildResult
    outputs: dict[str, Any]


def _build_one(job: _Job) -> _Built:
    from edgepack.bundle import bundle_path, staged_bundle
    from edgepack.profiles import firmware_note_file

    started = time.perf_counter()
    options = job.options
    steps = _Steps(job.progress, f"{options.profile.name}: build steps")
    note = firmware_note_file(options.profile)  # before any slow work: a missing note is an error
    held_out = 0 if job.evaluation is not None else options.drift_samples
    split = job.samples.split(options.num_calib, held_out, options.seed)
    checked = _drift_data(job, split)
    tuning = _tune(job, split.calibration) if options.tune.enabled else None
    settings = options.settings
    if tuning is not None:
        settings = dataclasses.replace(settings, **tuning.chosen.overrides)
    calibration = _calibration_data(job, split.calibration)
    steps.done("calibration data")

    final = bundle_path(options.out_dir, job.source.path, options.profile.name)
    log.info(
        "%s: building (%d calibration samples; drift check on %d %s)",
        options.profile.name,
        len(split.calibration),
        len(checked.refs),
        checked.kind,
    )
    with staged_bundle(final, options.force) as staging:
        plan = None if tuning is None else tuning.plan
        built = _build_model(job, calibration, settings, staging, plan)
        steps.done("converted and quantized")
        app = _app_description(job, built, checked)
        built = job.backend.describe(built, app)
        compat, built = _place(job, built, calibration, staging)
        steps.done("placed")
        verdict = _drift(job, checked, built)
        steps.done("drift checked")
        report = verdict.report
        # after the build, so that a build that fails says one line
        for warning in split_warnings(
            len(split.calibration),
            len(checked.refs),
            options,
            checked.kind,
            classifies=report.top1_agreement is not None,
        ):
            log.warning("%s: %s", options.profile.name, warning)
        layers = None
        if options.layers:
            feeds = checked.bound.load(checked.refs[:LAYER_SAMPLES])
            layers = _measure_layers(
                job.backend,
                job.source,
                settings,
                (built.model_file, built.inputs, built.outputs),
                calibration,
                feeds,
                job.source.run(feeds),
            )
        if tuning is not None:
            effect = _tuning_effect(job, checked, calibration, (built, app), verdict, tuning)
            tuning = dataclasses.replace(tuning, effect=effect)
        manifest = _manifest(job, split, built, report, settings, app, tuning, compat)
        _write_bundle_files(staging, built, manifest, report, job.samples, layers, note)
    steps.done("bundle written")
    seconds = time.perf_counter() - started
    log.info("%s: bundle %s (%.1f s)", options.profile.name, final, seconds)
    result = BuildResult(options.profile.name, final, manifest, report, seconds, layers, compat)
    outputs = {
        "reference": verdict.reference,
        "quantized": verdict.quantized,
        "labels": checked.labels,
    }
    return _Built(result, outputs)


NPU_FOLDER = "npu"  # the bundle's folder of vendor-compiled models ([compat] artefacts)


def _place(job: _Job, built: Any, calibration: Any, staging: Path) -> tuple[Any, Any]:
    """The bundle's placement report (None when the target places on no device), and the
    built model with the compiled models it keeps counted among its files."""
    from edgepack.placement import Compat

    if not job.devices:
        return None, built
    options = job.options
    shapes = {name: tuple(array.shape) for name, array in calibration.first().items()}
    artefacts = staging / NPU_FOLDER if options.compat.artefacts else None
    placements = job.backend.place(built, job.devices, shapes, options.compat.compile, artefacts)
    for placement in placements:
        log.info("%s: %s", options.profile.name, placement.line())
    kept = tuple(p.artefact for p in placements if p.artefact)
    return Compat(tuple(placements), job.require), dataclasses.replace(
        built, files=(*built.files, *kept)
    )


FEW_CALIBRATION_SAMPLES = 50  # below this, int8 ranges move with the sample drawn (see README)


def split_warnings(
    calibrating: int,
    checking: int,
    options: BuildOptions,
    kind: str = "held-out samples",
    classifies: bool = True,
) -> list[str]:
    """Warnings about a build's samples too few for their job: too few to calibrate on, or
    too few ``kind`` checked to resolve the agreement or accuracy budget (with the number that
    would: :func:`edgepack.drift.metrics.samples_needed`), which applies only to a model with
    a classifier output (``classifies``)."""
    from edgepack.drift.metrics import samples_needed

    warnings = []
    if calibrating < FEW_CALIBRATION_SAMPLES:
        warnings.append(
            f"only {calibrating} calibration samples: int8 ranges from fewer than "
            f"{FEW_CALIBRATION_SAMPLES} rarely hold on new data"
        )
    limits = options.thresholds
    allowances = [
        (name, allowance)
        for name, allowance in (
            ("agreement", None if limits.min_agreement is None else 1 - limits.min_agreement),
            ("accuracy-drop", limits.max_drop),
        )
        if allowance is not None and allowance > 0
    ]
    if allowances and checking and classifies:
        name, finest = min(allowances, key=lambda item: item[1])
        needed = samples_needed(finest)
        if checking < needed:
            remedy = (
                "give the evaluation set more samples"
                if kind == EVALUATION_KIND
                else "build with --eval on an evaluation set, or give the calibration set more "
                "samples"
            )
            warnings.append(
                f"{checking} {kind} cannot resolve the {finest:.2%} {name} budget "
                f"(one sample is {1 / checking:.2%}); about {needed} would: {remedy}"
            )
    return warnings


def _calibration_data(job: _Job, refs: Sequence[Any]) -> Any:
    labels = tuple(job.samples.label_names) if job.samples.label_names else None
    return _calibration_from(job.samples, job.bound, job.source, refs, labels)


def _calibration_from(
    sample_set: Any, bound: Any, source: Any, refs: Sequence[Any], labels: Any
) -> Any:
    """What a backend gets from a sample set: ``refs`` one at a time, shapes, layouts."""
    from edgepack.backends.base import CalibrationData

    first = bound.load(refs[:1])
    shapes = {name: tuple(batch.shape[1:]) for name, batch in first.items()}
    layout = sample_set.preprocessing.layout
    layouts = {name: layout if len(shape) == 3 else None for name, shape in shapes.items()}

    image_input = None
    if sample_set.kind == "images":
        image_input = sample_set.contract.input_name or source.inputs[0].name
    stream = _SampleStream(bound, tuple(refs))
    return CalibrationData(stream, shapes, layouts, sample_set.preprocessing, image_input, labels)


class _SampleStream:
    """Calibration samples, loaded one at a time when a backend asks; remembers the data error
    a bad sample raised, because a converter that calls back into edgepack (the TFLite
    representative dataset) reports it as its own failure."""

    def __init__(self, bound: Any, refs: tuple[Any, ...]) -> None:
        self.bound, self.refs = bound, refs
        self.error: EdgepackError | None = None

    def __call__(self) -> Any:
        for ref in self.refs:
            try:
                sample = self.bound.load([ref])
            except EdgepackError as exc:
                self.error = exc
                raise
            yield sample


def _build_model(
    job: _Job, calibration: Any, settings: Any, workdir: Path, plan: Any = None
) -> Any:
    """``backend.build``, except that a bad calibration sample is reported as the data error
    it is (exit 3), not as the conversion failure the converter made of it."""
    try:
        return job.backend.build(job.source, calibration, settings, workdir, plan)
    except Exception:
        error = getattr(calibration.samples, "error", None)
        if error is not None:
            raise error from None
        raise


EVALUATION_KIND = "evaluation samples"


@dataclass(frozen=True)
class _DriftData:
    """The samples a build's drift check runs on: ``refs`` of ``bound``, their labels in the
    bundle's class order, what they are (``kind``) and where they come from (``data``)."""

    bound: Any  # BoundSet
    refs: tuple[Any, ...]
    labels: Any
    kind: str
    data: dict[str, Any]


def _drift_data(job: _Job, split: Any) -> _DriftData:
    """The evaluation set's samples when the build has one, else the held-out ones."""
    import numpy as np

    if job.evaluation is None:
        if not split.held_out:
            raise ConfigError("no held-out samples left for the drift check; lower --num-calib")
        return _DriftData(
            job.bound,
            split.held_out,
            job.bound.labels(split.held_out),
            "held-out samples",
            {
                "path": portable_path(job.samples.root, job.options.project_root),
                "fingerprint": job.samples.fingerprint(),
                "split": "held-out part of the calibration set",
            },
        )
    evaluation = job.evaluation
    refs = evaluation.set.take(job.options.drift_samples, job.options.seed)
    labels = None
    if job.samples.label_names and evaluation.set.label_names:
        order = {name: i for i, name in enumerate(job.samples.label_names)}
        mapping = np.array([order[name] for name in evaluation.set.label_names])
        labels = mapping[evaluation.labels(refs)]
    return _DriftData(
        evaluation,
        refs,
        labels,
        EVALUATION_KIND,
        {
            "path": portable_path(evaluation.set.root, job.options.project_root),
            "fingerprint": evaluation.set.fingerprint(),
            "split": "evaluation set",
        },
    )


@dataclass(frozen=True)
class _Verdict:
    """A build's drift check: the report, and the feeds and float outputs it ran on (so that
    another bundle can be checked on the same samples without loading or running them
    again)."""

    report: Any
    feeds: Mapping[str, Any]
    reference: dict[str, Any]
    quantized: dict[str, Any] = dataclasses.field(default_factory=dict)  # the worst path's


def _drift(job: _Job, checked: _DriftData, built: Any, same_as: _Verdict | None = None) -> _Verdict:
    """The drift check of ``built`` on ``checked``'s samples (``same_as``: reuse that
    check's feeds and float outputs)."""
    feeds = checked.bound.load(checked.refs) if same_as is None else same_as.feeds
    reference_run = job.source.run if same_as is None else _returning(same_as.reference)
    log.info("%s: drift check on %d %s", job.options.profile.name, len(checked.refs), checked.kind)
    measured = _measure_on_paths(
        job.backend,
        built.model_file,
        built.inputs,
        built.outputs,
        job.options.paths,
        reference_run,
        feeds,
        progress=job.progress if same_as is None else None,
    )
    report = _judge_paths(
        measured,
        checked.labels,
        job.options.thresholds,
        job.options.slices,
        job.options.detections,
        data=checked.data,
    )
    worst = next(p for p in measured.paths if p.name == report.path)
    return _Verdict(report, feeds, measured.reference, dict(worst.outputs))


@dataclass(frozen=True)
class _Measured:
    """The float model's outputs and each execution path's, on the same feeds."""

    reference: dict[str, Any]
    paths: list[Any]  # edgepack.drift.paths.PathOutputs
    steps: dict[str, float]


def _host_paths(backend: Any, requested: Sequence[str], native: bool) -> list[Any]:
    """The backend's host execution paths that ``drift.paths`` asks for (all when empty)."""
    available = list(backend.paths(native))
    if not requested:
        return [p for p in available if not p.on_request]
    names = [p.name for p in available]
    unknown = [name for name in requested if name not in names]
    if unknown:
        raise ConfigError(
            f"drift.paths: {backend.name} has no execution path {', '.join(unknown)} on this "
            f"host (available: {', '.join(names)})"
        )
    return [p for p in available if p.name in requested]


def _measure_on_paths(
    backend: Any,
    model_file: Path,
    inputs: Sequence[Any],
    outputs: Sequence[Any],
    requested: Sequence[str],
    reference_run: Callable[[Any], dict[str, Any]],
    feeds: Mapping[str, Any],
    native: bool = False,
    progress: Callable[[str, int, int], None] | None = None,
) -> _Measured:
    """Run the float model and the bundle on every requested execution path, side by side
    in threads (the runtimes release the GIL while they compute)."""
    from concurrent.futures import ThreadPoolExecutor

    from edgepack.drift.paths import PathOutputs

    chosen = _host_paths(backend, requested, native)
    emulators = [backend.emulate(model_file, inputs, outputs, native, p.name) for p in chosen]
    with ThreadPoolExecutor(max_workers=1 + len(emulators)) as pool:
        reference = pool.submit(_in_chunks, reference_run, feeds, "float model", progress)
        runs = [
            pool.submit(_in_chunks, e.run, feeds, f"bundle ({e.kind}, {e.path})", progress)
            for e in emulators
        ]
        results = [run.result() for run in runs]
        reference_outputs = reference.result()
    paths = [
        PathOutputs(e.path, e.runtime, values, e.kind, p.description, e.details)
        for p, e, values in zip(chosen, emulators, results, strict=True)
    ]
    return _Measured(reference_outputs, paths, dict(emulators[0].output_steps))


def _judge_paths(
    measured: _Measured,
    labels: Any,
    thresholds: Any,
    slices: Mapping[str, Mapping[str, str]],
    detections: Mapping[str, str],
    data: Mapping[str, Any],
) -> Any:
    from edgepack.drift.paths import compare_paths

    return compare_paths(
        measured.reference,
        measured.paths,
        labels,
        thresholds,
        data,
        slices,
        measured.steps,
        detections,
    )


VALIDATION_SPLIT = "validation part of the calibration set"


@dataclass(frozen=True)
class _Tuning:
    """The search's outcome: the calibration candidate kept, the precision plan (None when
    the calibration search alone held the budget, or the target has no wider precision), and
    how every step scored on ``validation`` samples after calibrating on ``calibrating``."""

    search: Any  # edgepack.tune.SearchResult
    calibrating: int
    validation: int
    seconds: float
    precision: Any = None  # edgepack.tune.PrecisionSearch
    ranking: tuple[dict[str, Any], ...] = ()  # the layers by own share, as ranked
    ladder: tuple[dict[str, Any], ...] = ()  # the precisions tried, each with its limit
    effect: dict[str, Any] | None = None  # the default bundle beside the tuned one
    groups: int | None = None  # the validation samples' groups, where the set declares them

    @property
    def chosen(self) -> Any:
        return self.search.chosen

    @property
    def plan(self) -> Any:
        """The precision plan the bundle is built with (None: none widened)."""
        if self.precision is None or not self.precision.chosen:
            return None
        return self.precision.chosen

    def to_dict(self, options: Any) -> dict[str, Any]:
        precision = None
        if self.precision is not None:
            precision = {
                "ranked": list(self.ranking),
                "trials": [trial.to_dict() for trial in self.precision.trials],
                "layers": dict(self.precision.chosen.layers),
                "holds": self.precision.holds,
                "stopped": self.precision.stopped,
                "max_wide_fraction": options.max_wide_fraction,
                "max_float_layers": options.max_float_layers,
                "precisions": list(options.precisions),
                "ladder": list(self.ladder),
            }
        return {
            "method": "calibration search",
            "calibration_samples": self.calibrating,
            "validation_samples": self.validation,
            "validation_groups": self.groups,
            "folds": options.folds,
            "max_candidates": options.max_candidates,
            "max_seconds": options.max_seconds,
            "stopped": self.search.stopped,
            "chosen": self.chosen.name,
            "settings": dict(self.chosen.overrides),
            "candidates": [trial.to_dict() for trial in self.search.trials],
            "precision": precision,
            "effect": self.effect,
            "seconds": round(self.seconds, 1),
        }


@dataclass(frozen=True)
class _Validation:
    """The tuning split: calibration data of the fitting part, and the validation part's
    feeds, labels and float outputs."""

    calibration: Any
    feeds: Any
    labels: Any
    reference: Any
    data: dict[str, Any]
    groups: tuple[int, ...] = ()  # each validation sample's group (calibration.toml's group)

    @property
    def samples(self) -> int:
        return len(next(iter(self.feeds.values())))


def _validate(job: _Job, folds: Sequence[_Validation], settings: Any, plan: Any = None) -> Any:
    """Build with ``settings`` (and ``plan``) on each fold's fitting part, run it on every
    execution path of the verdict on that fold's validation part, and judge all validation
    samples together: the score (edgepack.tune.Score: failures of the thresholds that do not
    count samples, SQNR) and whether the whole budget held."""
    import tempfile

    import numpy as np

    from edgepack.tune import Score, grouped_energies

    options = job.options
    parts = []
    for fold in folds:
        with tempfile.TemporaryDirectory(prefix="edgepack-tune-") as scratch:
            built = _build_model(job, fold.calibration, settings, Path(scratch), plan)
            parts.append(
                _measure_on_paths(
                    job.backend,
                    built.model_file,
                    built.inputs,
                    built.outputs,
                    options.paths,
                    _returning(fold.reference),
                    fold.feeds,
                )
            )

    def joined(outputs: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
        return {name: np.concatenate([o[name] for o in outputs]) for name in outputs[0]}

    paths = [
        dataclasses.replace(path, outputs=joined([p.paths[i].outputs for p in parts]))
        for i, path in enumerate(parts[0].paths)
    ]
    measured = _Measured(joined([p.reference for p in parts]), paths, parts[0].steps)
    labels = None
    if all(fold.labels is not None for fold in folds):
        labels = np.concatenate([fold.labels for fold in folds])
    # Pooled SQNR is ruled by the loudest samples: one unusual validation sample would decide
    # between candidates. With folds, the SQNR that ranks and is held to min_sqnr is the
    # median of the folds'; the other thresholds are judged on all samples together.
    no_sqnr = dataclasses.replace(options.thresholds, min_sqnr=None)
    ranked, whole = (
        _judge_paths(measured, labels, limits, options.slices, options.detections, folds[0].data)
        for limits in (_uncounted(no_sqnr), no_sqnr)
    )
    sqnr = ranked.min_sqnr_db
    by_fold = tuple(_min_sqnr(part) for part in parts) if len(parts) > 1 else ()
    if by_fold:
        sqnr = float(np.median(by_fold))
    limit = options.thresholds.min_sqnr
    sqnr_fails = limit is not None and round(sqnr, 2) < limit
    score = Score(
        len(ranked.failures) + sqnr_fails,
        sqnr,
        ranked.top1_agreement,
        ranked.min_sqnr_db,
        by_fold,
        tuple(
            grouped_energies(_energies(part), fold.groups)
            for part, fold in zip(parts, folds, strict=True)
        ),
    )
    return score, whole.passed and not sqnr_fails


def _energies(measured: _Measured) -> tuple[tuple[Any, Any], ...]:
    """Each sample's signal and noise energies, per execution path and output."""
    from edgepack.drift.metrics import sample_energies

    return tuple(
        sample_energies(measured.reference[name], path.outputs[name])
        for path in measured.paths
        for name in measured.reference
    )


def _min_sqnr(measured: _Measured) -> float:
    """The lowest output SQNR of the worst execution path."""
    from edgepack.drift.metrics import sqnr_db

    return min(
        sqnr_db(measured.reference[name], path.outputs[name])
        for path in measured.paths
        for name in measured.reference
    )


def _returning(outputs: dict[str, Any]) -> Callable[[Any], dict[str, Any]]:
    """A float-model runner that gives outputs measured already (the validation feeds')."""
    return lambda _feeds: outputs


def _folds(job: _Job, refs: Sequence[Any]) -> list[_Validation]:
    """The tuning splits: with ``tune.folds`` = 1 the last ``tune.validation`` of the
    calibration samples validate and the rest fit; with k folds each of k contiguous parts
    validates once while the others fit (every calibration sample is validated on). Samples
    the set's ``group`` puts together (a page and its rotations) stay in one part: the
    samples are ordered group by group and every cut falls between groups."""
    from edgepack.tune import group_boundary, validation_split

    tune = job.options.tune
    refs, groups = _by_group(job.samples, refs)
    calibrating, _ = validation_split(refs, tune.validation)  # also refuses too few samples
    size = len(refs)
    if tune.folds > 1:
        cuts = [group_boundary(groups, round(i * size / tune.folds)) for i in range(tune.folds)]
        parts = list(zip(cuts, [*cuts[1:], size], strict=True))
    else:
        parts = [(group_boundary(groups, len(calibrating)), size)]
    pairs = [(tuple(refs[:a]) + tuple(refs[b:]), tuple(refs[a:b])) for a, b in parts]
    if min(len(v) for _, v in pairs) < 2 or min(len(f) for f, _ in pairs) < 2:
        grouped = f" in {len(set(groups))} groups" if job.samples.contract.group else ""
        raise ConfigError(
            f"tune.folds = {tune.folds} needs more than {size} calibration samples{grouped}"
        )
    data = {
        "path": portable_path(job.samples.root, job.options.project_root),
        "fingerprint": job.samples.fingerprint(),
        "split": VALIDATION_SPLIT,
    }
    folds = []
    for (fitting, validating), (a, b) in zip(pairs, parts, strict=True):
        feeds = job.bound.load(validating)
        numbered = {g: i for i, g in enumerate(dict.fromkeys(groups[a:b]))}
        folds.append(
            _Validation(
                _calibration_data(job, fitting),
                feeds,
                job.bound.labels(validating),
                _in_chunks(job.source.run, feeds, "float model", None),
                data,
                tuple(numbered[g] for g in groups[a:b]) if job.samples.contract.group else (),
            )
        )
    return folds


def _by_group(samples: Any, refs: Sequence[Any]) -> tuple[list[Any], list[int]]:
    """``refs`` with each group's samples together (groups in the order of their first
    sample, samples in their own order within) and each one's group number; without a
    ``group`` in the set's contract, every sample is a group of its own."""
    names = [samples.contract.group_of(ref.describe(samples.root)) for ref in refs]
    numbers = {name: i for i, name in enumerate(dict.fromkeys(names))}
    order = sorted(range(len(refs)), key=lambda i: numbers[names[i]])
    return [refs[i] for i in order], [numbers[names[i]] for i in order]


def _uncounted(thresholds: Any) -> Any:
    """A few dozen validation samples cannot resolve a 1% agreement or accuracy budget (one
    sample is several percent): candidates are ranked by the thresholds that do not count
    samples."""
    return dataclasses.replace(thresholds, min_agreement=None, max_drop=None)


def _tune(job: _Job, refs: Sequence[Any]) -> _Tuning:
    """Search the target's calibration choices, then, when the budget still does not hold
    on the validation part, raise the layers that harm the output most to a wider precision
    (:mod:`edgepack.tune`). Every step is built on the first part of the calibration
    samples and scored on the rest, on every execution path the verdict uses; the bundle is
    then built on all of them."""
    from edgepack.tune import PrecisionPlan, PrecisionSearch, search_calibration

    started = time.perf_counter()
    options = job.options
    name = options.profile.name
    folds = _folds(job, refs)
    validating = sum(fold.samples for fold in folds)
    fitting = len(refs) - folds[0].samples  # the first fold's, as recorded
    held: dict[str, bool] = {}

    def evaluate(candidate: Any) -> Any:
        settings = dataclasses.replace(options.settings, **candidate.overrides)
        score, held[candidate.name] = _validate(job, folds, settings)
        log.info(
            "%s: candidate %s: %.2f dB, %d failures (SQNR, collapse, recall) on %d validation "
            "samples",
            name,
            candidate.name,
            score.min_sqnr_db,
            score.failures,
            validating,
        )
        return score

    log.info(
        "%s: calibration search (calibrating on %d samples, validating on %d)",
        name,
        fitting,
        validating,
    )
    search = search_calibration(
        job.backend.calibration_candidates(options.settings),
        evaluate,
        options.tune.max_candidates,
        options.tune.max_seconds,
    )
    if search.stopped:
        log.warning("%s: calibration search stopped early: %s", name, search.stopped)
    settings = dataclasses.replace(options.settings, **search.chosen.overrides)
    groups = sum(len(set(fold.groups)) for fold in folds) or None
    tuning = _Tuning(search, fitting, validating, 0.0, groups=groups)
    offered = job.backend.precisions(settings)
    wider = [p for p in offered if p in options.tune.precisions]
    if not held[search.chosen.name] and not wider:
        log.warning(
            "%s: the budget does not hold on the validation samples and there is no wider "
            "precision to raise layers to: %s offers %s with these settings; "
            "tune.precisions allows %s",
            name,
            job.backend.name,
            ", ".join(offered) or "none",
            ", ".join(options.tune.precisions) or "none",
        )
    if not held[search.chosen.name] and wider:
        remaining = options.tune.max_seconds - (time.perf_counter() - started)
        try:
            precision, ranking, ladder = _search_precisions(
                job, folds, settings, wider, remaining, search.best.score
            )
        except EdgepackError as exc:
            # the target's per-layer quantizer could not build this model: keep the
            # calibration search's bundle and say why nothing was widened
            log.warning("%s: mixed precision could not run: %s", name, exc)
            precision = PrecisionSearch(PrecisionPlan(), (), False, f"could not run: {exc}")
            ranking, ladder = (), ()
        tuning = dataclasses.replace(tuning, precision=precision, ranking=ranking, ladder=ladder)
    return dataclasses.replace(tuning, seconds=time.perf_counter() - started)


MIN_OWN_SHARE_DB = 0.1  # a layer whose own share is below this is not worth widening
PROBED_LAYERS = 16  # where a target cannot keep one layer in float: layers widened one by one


def _shares_by_widening(
    job: _Job,
    folds: Sequence[_Validation],
    settings: Any,
    precision: str,
    report: Any,
    grouped: Mapping[str, Sequence[str]],
    deadline: float,
) -> Any:
    """Each layer's own share measured the other way, where the target cannot keep one
    layer in float: the output SQNR recovered when only that layer is built at
    ``precision``, for the :data:`PROBED_LAYERS` layers worst by SQNR (one build per fold
    each), as many as the search's time allows (``deadline``, a perf_counter time; at
    least one)."""
    from edgepack.drift.layers import LayerDrift
    from edgepack.tune import PrecisionPlan

    base, _ = _validate(job, folds, settings, PrecisionPlan())  # the same quantizer
    shares: dict[str, float] = {}
    cut = ""
    for drift in report.layers[:PROBED_LAYERS]:
        tensors = tuple(grouped.get(drift.layer, ()))
        if not tensors:
            continue
        if shares and time.perf_counter() > deadline:
            cut = "; stopped there: tune.max_seconds reached"
            break
        plan = PrecisionPlan({drift.layer: precision}, {drift.layer: tensors})
        score, _ = _validate(job, folds, settings, plan)
        shares[drift.layer] = round(score.min_sqnr_db - base.min_sqnr_db, 3)
    layers: list[LayerDrift] = [
        dataclasses.replace(d, contribution_db=shares.get(d.layer)) for d in report.layers
    ]
    how = (
        f"output min-SQNR recovered when only that layer is built at {precision}; "
        f"{len(shares)} of {len(report.layers)} layers (the worst by SQNR){cut}"
    )
    if cut:
        log.warning(
            "%s: own shares measured for %d layers only%s",
            job.options.profile.name,
            len(shares),
            cut,
        )
    return dataclasses.replace(report, layers=layers, contributions=how)


def _search_precisions(
    job: _Job,
    folds: Sequence[_Validation],
    settings: Any,
    wider: Sequence[str],
    seconds: float,
    baseline: Any,
) -> tuple[Any, tuple[dict[str, Any], ...], tuple[dict[str, Any], ...]]:
    """Rank the layers of the bundle built with ``settings`` by their own share of the
    output drift on the validation part, then widen the most harmful ones up the ladder of
    the target's ``wider`` precisions (edgepack.tune.climb_ladder), within
    ``tune.max_wide_fraction`` of the layers and, for float, ``tune.max_float_layers``.
    When no plan holds, one is kept only if it scores above ``baseline`` (the calibration
    search's bundle, edgepack.tune.Score)."""
    import tempfile

    from edgepack.tune import Rung, climb_ladder

    started = time.perf_counter()
    options = job.options
    name = options.profile.name
    validation = folds[0]  # layers are ranked on the first fold
    with tempfile.TemporaryDirectory(prefix="edgepack-tune-") as scratch:
        built = _build_model(job, validation.calibration, settings, Path(scratch))
        report, grouped = _layer_ranking(
            job.backend,
            job.source,
            settings,
            (built.model_file, built.inputs, built.outputs),
            validation.calibration,
            validation.feeds,
            validation.reference,
        )
    if not report.by_contribution():
        report = _shares_by_widening(
            job, folds, settings, wider[0], report, grouped, started + seconds
        )
    culprits = [
        d for d in report.by_contribution() if (d.contribution_db or 0.0) >= MIN_OWN_SHARE_DB
    ]
    ranking = tuple(
        {"layer": d.layer, "own_share_db": d.contribution_db, "sqnr_db": round(d.sqnr_db, 2)}
        for d in culprits
    )
    limit = math.floor(options.tune.max_wide_fraction * len(report.layers))
    rungs = [
        Rung(p, min(limit, options.tune.max_float_layers) if p == "float" else limit) for p in wider
    ]
    log.info(
        "%s: mixed precision: %d layers harm the output on their own; widening up to %s",
        name,
        len(culprits),
        ", then ".join(f"{r.max_layers} to {r.precision}" for r in rungs),
    )

    def evaluate(plan: Any) -> Any:
        score, holds = _validate(job, folds, settings, plan)
        log.info(
            "%s: %s for %s: %.2f dB, budget %s on %d validation samples",
            name,
            "/".join(sorted(set(plan.layers.values()))),
            ", ".join(plan.layers),
            score.min_sqnr_db,
            "holds" if holds else "missed",
            sum(fold.samples for fold in folds),
        )
        return score, holds

    ranked = [(d.layer, grouped[d.layer]) for d in culprits]
    remaining = seconds - (time.perf_counter() - started)
    search = climb_ladder(ranked, rungs, evaluate, max(remaining, 1.0), baseline=baseline)
    if not search.holds:
        log.warning(
            "%s: mixed precision: no plan within %d widened layers holds the budget on the "
            "validation samples; keeping the best (%s)",
            name,
            limit,
            ", ".join(search.chosen.layers) or "none",
        )
    ladder = tuple({"precision": r.precision, "max_layers": r.max_layers} for r in rungs)
    return search, ranking, ladder


LATENCY_ROUNDS = 15  # single-sample runs per bundle, interleaved, median kept


def _tuning_effect(
    job: _Job,
    checked: _DriftData,
    calibration: Any,
    described: tuple[Any, Any],
    verdict: _Verdict,
    tuning: _Tuning,
) -> dict[str, Any]:
    """What tuning changed, measured beside the tuned bundle: the default one (the profile's
    settings, every layer int8) built on the same calibration samples, with the same
    metadata (``described``: the tuned model and its app description), and checked on the
    same verdict samples, and both bundles' size and host latency on the default execution
    path (one sample, interleaved runs; ratios, not absolute times, are comparable)."""
    import tempfile

    built, app = described
    changed = bool(tuning.chosen.overrides) or tuning.plan is not None
    one_sample = {name: array[:1] for name, array in verdict.feeds.items()}
    with tempfile.TemporaryDirectory(prefix="edgepack-default-") as scratch:
        if changed:
            default = _build_model(job, calibration, job.options.settings, Path(scratch))
            default = job.backend.describe(default, app)
            default_report = _drift(job, checked, default, same_as=verdict).report
            path, (default_ms, tuned_ms) = _latencies_ms(job, [default, built], one_sample)
        else:
            default, default_report = built, verdict.report
            path, (tuned_ms,) = _latencies_ms(job, [built], one_sample)
            default_ms = tuned_ms
        return {
            "measured_on": f"{len(checked.refs)} {checked.kind}",
            "latency_path": path,
            "default": _bundle_figures(default, default_report, default_ms),
            "tuned": _bundle_figures(built, verdict.report, tuned_ms),
        }


def _bundle_figures(built: Any, report: Any, latency_ms: float) -> dict[str, Any]:
    from edgepack.bundle import size_bytes

    sqnr = report.min_sqnr_db
    return {
        "verdict": "pass" if report.passed else "fail",
        "min_sqnr_db": round(sqnr, 2) if math.isfinite(sqnr) else None,
        "top1_agreement": report.top1_agreement,
        "size_bytes": size_bytes(built.model_file),
        "latency_ms": round(latency_ms, 3),
        "precision_counts": built.details.get("precision_counts"),
    }


def _latencies_ms(
    job: _Job, builts: Sequence[Any], feeds: Mapping[str, Any]
) -> tuple[str, list[float]]:
    """The first execution path the verdict uses, and each bundle's median latency on
    ``feeds`` there, the bundles' runs interleaved so that the host's load falls on all
    alike."""
    import statistics

    path = _host_paths(job.backend, job.options.paths, False)[0]
    runs = [
        job.backend.emulate(b.model_file, b.inputs, b.outputs, False, path.name).run for b in builts
    ]
    for run in runs:  # warm-up: first-call allocations and delegate preparation
        run(feeds)
    times: list[list[float]] = [[] for _ in runs]
    for _ in range(LATENCY_ROUNDS):
        for run, spent in zip(runs, times, strict=True):
            began = time.perf_counter()
            run(feeds)
            spent.append((time.perf_counter() - began) * 1000.0)
    return path.name, [statistics.median(t) for t in times]


QUANTIZATION = (
    "real = (q - zero_point) * scale; to feed a quantized input, q = clamp(round(real / scale) "
    "+ zero_point, the dtype's min, max) with round half away from zero (TFLite's rounding); "
    "scale and zero_point are per tensor (inputs and outputs)"
)


def _bundle_inputs(job: _Job, built: Any) -> list[dict[str, Any]]:
    """The manifest's inputs: float inputs without a layout of their own take the declared."""
    floats = [spec.name for spec in job.source.inputs if spec.is_float]
    declared = job.samples.preprocessing.layout
    return [
        dict(
            info.to_dict(), layout=info.layout or (declared if info.source_name in floats else None)
        )
        for info in built.inputs
    ]


def _preprocessing_contract(job: _Job, built: Any) -> dict[str, Any] | None:
    """The contract as the bundle's app applies it (None: no float input to prepare)."""
    source, samples = job.source, job.samples
    floats = [spec.name for spec in source.inputs if spec.is_float]
    contract_input = samples.contract.input_name or (floats[0] if floats else None)
    if contract_input is None:
        return None  # integer and bool inputs only: fed as they are, nothing to scale
    declared = samples.preprocessing.layout
    preprocessing = dict(samples.preprocessing.to_dict(), input=contract_input)
    fed = next((i for i in _bundle_inputs(job, built) if i["source_name"] == contract_input), None)
    if fed is not None and fed["layout"] != declared:
        # The bundle wants another layout than the source model: the app feeds the bundle's.
        preprocessing.update(layout=fed["layout"], source_layout=declared)
    if (
        fed is not None
        and fed["dtype"].startswith("float")
        and fed["dtype"] != preprocessing["dtype"]
    ):
        # A float16 model input (Core ML): the formula is computed, then rounded to float16.
        preprocessing.update(dtype=fed["dtype"], source_dtype=preprocessing["dtype"])
    return preprocessing


# float outputs of this many check samples tell a softmax output from others
MEANING_SAMPLES = 16


def _app_description(job: _Job, built: Any, checked: _DriftData) -> Any:
    """What the bundle's app needs to know, written into the model file and the manifest."""
    from edgepack.appmeta import AppDescription, output_meanings, type_name
    from edgepack.bundle import LABELS

    info, samples = job.options.model, job.samples
    labels = tuple(samples.label_names) if samples.label_names else None
    declared = {**samples.contract.output_semantics, **(info.outputs or {})}
    reference = None
    if checked.refs and not all(o.source_name in declared for o in built.outputs):
        reference = job.source.run(checked.bound.load(checked.refs[:MEANING_SAMPLES]))
    path = job.source.path
    return AppDescription(
        name=type_name(info.name or (path.name if path.is_dir() else path.stem)),
        version=info.version,
        author=info.author,
        license=info.license,
        description=info.description,
        preprocessing=_preprocessing_contract(job, built),
        labels=labels,
        labels_file=LABELS if labels else None,
        inputs=tuple(built.inputs),
        outputs=tuple(built.outputs),
        meanings=output_meanings(
            built.outputs, declared, labels, samples.contract.labels_output, reference
        ),
    )


def _manifest(
    job: _Job,
    split: Any,
    built: Any,
    report: Any,
    settings: Any,
    app: Any,
    tuning: _Tuning | None = None,
    compat: Any = None,
) -> dict[str, Any]:
    from edgepack.appmeta import output_fields
    from edgepack.bundle import FIRMWARE_NOTE, MANIFEST_SCHEMA_VERSION, file_sha256, size_bytes
    from edgepack.calib.contract import FIELD_MEANINGS

    source, samples, options = job.source, job.samples, job.options
    root = options.project_root
    profile = options.profile
    labelled = app.labelled_output()
    return {
        "schema_version": MANIFEST_SCHEMA_VERSION,
        "created": _created(options.source_date_epoch),
        "target": {
            "profile": profile.name,
            "backend": job.backend.name,
            "description": profile.description,
            "profile_source": _portable_profile_source(profile.source, root),
            "profile_sha256": profile.sha256,
            # the note ships in the bundle; firmware_note_source is the one the profile links
            "firmware_note": FIRMWARE_NOTE if profile.firmware_note else None,
            "firmware_note_source": profile.firmware_note,
            "settings": _settings_dict(settings),
            "drift": dict(profile.drift),
        },
        "model": {
            "file": built.model_file.name,
            "size_bytes": size_bytes(built.model_file),
            "sha256": file_sha256(built.model_file),
            **built.details,
        },
        "app": {
            "name": app.name,
            "version": app.version,
            "author": app.author,
            "license": app.license,
            "description": app.description,
            "labels_output": None if labelled is None else labelled.name,
        },
        "inputs": _bundle_inputs(job, built),
        "outputs": [
            dict(info.to_dict(), **output_fields(app.meaning(info.source_name), app.labels_file))
            for info in built.outputs
        ],
        # integer and bool inputs only: fed as they are, nothing to scale
        "preprocessing": app.preprocessing,
        "conventions": {"preprocessing": dict(FIELD_MEANINGS), "quantization": QUANTIZATION},
        "labels": list(samples.label_names) if samples.label_names else None,
        "source": {
            "format": source.format,
            "file": source.path.name,
            "path": portable_path(source.path, root),
            "sha256": source.sha256,
            "inputs": [s.to_dict() for s in source.inputs],
            "outputs": [s.to_dict() for s in source.outputs],
        },
        "calibration": {
            "path": portable_path(samples.root, root),
            "fingerprint": samples.fingerprint(),
            "set_size": len(samples),
            "samples": len(split.calibration),
            "held_out": len(split.held_out),
            "seed": options.seed,
            "method": built.calibration_method,
        },
        "versions": _versions(source, built),
        "tuning": None if tuning is None else tuning.to_dict(options.tune),
        "drift": report.summary(),
        "compat": None if compat is None else compat.to_dict(),
        "files": {},
    }


def _write_bundle_files(
    staging: Path,
    built: Any,
    manifest: dict[str, Any],
    report: Any,
    samples: Any,
    layers: Any = None,
    note: Path | None = None,
) -> None:
    from edgepack.bundle import (
        DRIFT,
        FIRMWARE_NOTE,
        LABELS,
        MANIFEST,
        file_sha256,
        seal_manifest,
        write_json,
    )

    drift = report.to_dict()
    if layers is not None:
        drift["layers"] = layers.to_dict()
    write_json(staging / DRIFT, drift)
    names = [built.model_file.name, *built.files, DRIFT]
    if samples.label_names:
        (staging / LABELS).write_text("\n".join(samples.label_names) + "\n")
        names.append(LABELS)
    if note is not None:
        (staging / FIRMWARE_NOTE).write_bytes(note.read_bytes())
        names.append(FIRMWARE_NOTE)
    manifest["files"] = {name: file_sha256(staging / name) for name in names}
    manifest.update(seal_manifest(manifest))  # its own sha256, the last key
    write_json(staging / MANIFEST, manifest)


def _created(epoch: int | None) -> str:
    """The manifest's ``created``: ``SOURCE_DATE_EPOCH`` when set (reproducible builds),
    else now; UTC, whole seconds."""
    moment = datetime.now(UTC) if epoch is None else datetime.fromtimestamp(epoch, UTC)
    return moment.isoformat(timespec="seconds")


def portable_path(path: Path, root: Path) -> str:
    """How a bundle names a file of the build: relative to the project root (POSIX
    separators) when it lies inside it, else its name alone (its sha256 identifies it)."""
    resolved = Path(path).resolve()
    try:
        return resolved.relative_to(root).as_posix()
    except ValueError:
        return resolved.name


def _portable_profile_source(source: str, root: Path) -> str:
    return source if source.startswith("builtin:") else portable_path(Path(source), root)


def _settings_dict(settings: Any) -> dict[str, Any]:
    from dataclasses import asdict

    return asdict(settings)


def _versions(source: Any, built: Any) -> dict[str, str]:
    versions = {
        "edgepack": __version__,
        "python": platform.python_version(),
        "numpy": metadata.version("numpy"),
    }
    versions.update(source.versions)
    versions.update(built.versions)
    return versions


def _absolute(path: Path, cwd: Path) -> Path:
    return path if path.is_absolute() else cwd / path


# ---------------------------------------------------------------------------- check


def check(
    bundle: str | os.PathLike[str],
    data: str | os.PathLike[str],
    *,
    model: str | os.PathLike[str] | None = None,
    min_agreement: float | str | None = None,
    max_drop: float | str | None = None,
    min_sqnr: float | str | None = None,
    allow_collapse: bool | None = None,
    min_recall: float | str | None = None,
    samples: int | None = None,
    seed: int = 0,
    runtime: str = "emulated",
    json_path: str | os.PathLike[str] | None = None,
    junit_path: str | os.PathLike[str] | None = None,
    html_path: str | os.PathLike[str] | None = None,
    layers: bool | None = None,
    paths: Sequence[str] | None = None,
    progress: Callable[[str, int, int], None] | None = None,
    cwd: str | os.PathLike[str] | None = None,
    environ: Mapping[str, str] | None = None,
) -> CheckResult:
    """Re-run a bundle's drift check against its float source model on ``data``.

    The source model is the one recorded in the manifest (or ``model``) and must have the
    sha256 recorded there. ``data`` is a calibration-style folder; without a
    ``calibration.toml`` it is read with the bundle's own preprocessing contract.
    ``runtime="native"`` runs a Core ML bundle in Apple's runtime (macOS only) instead of
    edgepack's emulator; the report says which one produced the numbers. ``layers=True`` adds
    per-layer drift (:mod:`edgepack.drift.layers`) on the first :data:`LAYER_SAMPLES` samples.
    ``paths`` names the execution paths to run (default: every one the host has, or the
    profile's ``drift.paths``); the verdict is the worst path's (:mod:`edgepack.drift.paths`).
    ``progress(phase, done, total)`` is called as samples go through each model.
    """
    if runtime not in ("emulated", "native"):
        raise ConfigError(f"runtime must be 'emulated' or 'native', got {runtime!r}")
    started = time.perf_counter()
    from edgepack._native import allow_coremltools_converters
    from edgepack.backends import get_backend
    from edgepack.bundle import read_manifest, verify_bundle_files, verify_model_io
    from edgepack.calib.dataset import open_sample_set
    from edgepack.frontends import load_source

    work_dir = Path(cwd) if cwd is not None else Path.cwd()
    env = dict(os.environ if environ is None else environ)
    bundle_dir = _absolute(Path(bundle), work_dir)
    manifest = read_manifest(bundle_dir)
    where = bundle_dir / "manifest.json"
    with _damaged_if_invalid(where, "target.drift"):
        check_options_layer(manifest["target"]["drift"])
    options = resolve_check_options(
        manifest["target"]["drift"],
        manifest["target"]["profile"],
        {
            "drift.min_agreement": min_agreement,
            "drift.max_drop": max_drop,
            "drift.min_sqnr": min_sqnr,
            "drift.allow_collapse": allow_collapse,
            "drift.min_recall": min_recall,
            "drift.layers": layers,
            "drift.samples": samples,
            "drift.paths": paths,
        },
        work_dir,
        env,
    )
    if options.layers:  # per-layer drift converts the source again: converters needed
        allow_coremltools_converters()
    with _damaged_if_invalid(where, "target.backend"):
        backend = get_backend(manifest["target"]["backend"])
    model_file = verify_bundle_files(bundle_dir, manifest)
    verify_model_io(manifest, _declared_io(backend, model_file))
    source = load_source(_source_path(manifest, bundle_dir, model, work_dir))
    listed = {str(o["source_name"]) for o in manifest["outputs"]}
    unlisted = [o.name for o in source.outputs if o.name not in listed]
    if unlisted:
        raise BundleError(f"{where}: outputs lack the source model's output(s) {unlisted}")

    fallback = _recorded_contract(manifest, where)
    data_set = open_sample_set(_absolute(Path(data), work_dir), fallback=fallback)
    bound = data_set.bind(source.inputs)
    refs = data_set.take(options.drift_samples, seed)
    labels = _labels_in_bundle_order(data_set, refs, manifest, bound)

    from edgepack.backends.base import TensorInfo

    inputs = [TensorInfo.from_dict(d) for d in manifest["inputs"]]
    outputs = [TensorInfo.from_dict(d) for d in manifest["outputs"]]
    feeds = bound.load(refs)
    measured = _measure_on_paths(
        backend,
        model_file,
        inputs,
        outputs,
        options.paths,
        source.run,
        feeds,
        native=runtime == "native",
        progress=progress,
    )
    reference = measured.reference
    report = _judge_paths(
        measured,
        labels,
        options.thresholds,
        options.slices,
        options.detections,
        data={"path": str(data_set.root), "fingerprint": data_set.fingerprint()},
    )
    layer_report = None
    if options.layers:
        if progress is not None:
            progress("per-layer capture", 0, 1)
        layer_report = _measure_layers(
            backend,
            source,
            _bundle_settings(backend, manifest),
            (model_file, inputs, outputs),
            _calibration_from(data_set, bound, source, refs[:LAYER_SAMPLES], _labels_of(manifest)),
            {name: batch[:LAYER_SAMPLES] for name, batch in feeds.items()},
            {name: batch[:LAYER_SAMPLES] for name, batch in reference.items()},
        )
        if progress is not None:
            progress("per-layer capture", 1, 1)
    result = CheckResult(bundle_dir, manifest, report, layer_report)
    worst = next(p for p in measured.paths if p.name == report.path)
    _write_reports(
        result,
        {"reference": reference, "quantized": worst.outputs, "labels": labels},
        work_dir,
        (json_path, junit_path, html_path),
        time.perf_counter() - started,
    )
    return result


def _recorded_contract(manifest: dict[str, Any], where: Path) -> Any:
    """The contract a bundle's manifest records, to read data without a calibration.toml of
    its own; the data feeds the source model, so in the source model's layout and dtype."""
    from edgepack.calib.contract import Contract, Preprocessing

    recorded = dict(manifest["preprocessing"] or {})
    recorded["layout"] = recorded.pop("source_layout", recorded.get("layout", "NHWC"))
    recorded["dtype"] = recorded.pop("source_dtype", recorded.get("dtype", "float32"))
    with _damaged_if_invalid(where, "preprocessing"):
        preprocessing = Preprocessing.from_dict(
            {k: v for k, v in recorded.items() if k != "input"}, "preprocessing"
        )
    labels = tuple(manifest["labels"]) if manifest.get("labels") else None
    return Contract(preprocessing, recorded.get("input"), labels)


@contextlib.contextmanager
def _damaged_if_invalid(manifest_path: Path, field: str) -> Iterator[None]:
    """A manifest field that fails the validation its option or contract would pass in a
    config file makes the bundle damaged (exit 6), not the user's configuration."""
    try:
        yield
    except (ConfigError, CalibrationError) as exc:
        raise BundleError(f"{manifest_path}: {field}: {exc}") from None


def _declared_io(backend: Any, model_file: Path) -> Any:
    """The model file's own inputs and outputs; a file its runtime cannot read is damaged."""
    from edgepack.errors import EdgepackError

    try:
        return backend.model_io(model_file)
    except EdgepackError:
        raise
    except Exception as exc:
        text = " ".join(str(exc).split())[:200]
        raise BundleError(f"{model_file}: the model file cannot be read: {text}") from None


def _write_reports(
    result: CheckResult,
    outputs: Mapping[str, Any],
    work_dir: Path,
    paths: tuple[str | os.PathLike[str] | None, ...],
    seconds: float,
) -> None:
    """The files ``check`` was asked for (``paths``: JSON report, JUnit XML, HTML page)."""
    from edgepack.bundle import json_text, write_report

    json_path, junit_path, html_path = paths

    bundle = str(result.bundle)
    if json_path is not None:
        document = {"bundle": bundle, **result.report.to_dict()}
        if result.layers is not None:
            document["layers"] = result.layers.to_dict()
        write_report(_absolute(Path(json_path), work_dir), json_text(document))
    if junit_path is not None:
        from edgepack.drift.junit import junit_xml

        page = junit_xml(result.report, bundle, seconds)
        write_report(_absolute(Path(junit_path), work_dir), page)
    if html_path is not None:
        from edgepack.drift.html import render_html

        page = render_html(
            result.report,
            result.manifest,
            outputs["reference"],
            outputs["quantized"],
            outputs["labels"],
            result.layers,
            bundle,
        )
        write_report(_absolute(Path(html_path), work_dir), page)


PROGRESS_CHUNK = 32  # samples per model call when progress is reported


def _in_chunks(
    run: Callable[[Any], dict[str, Any]],
    feeds: Mapping[str, Any],
    phase: str,
    progress: Callable[[str, int, int], None] | None,
) -> dict[str, Any]:
    """``run(feeds)``, in chunks that report progress when asked (results concatenated)."""
    if progress is None:
        return run(feeds)
    import numpy as np

    total = len(next(iter(feeds.values())))
    parts: dict[str, list[Any]] = {}
    progress(phase, 0, total)
    for start in range(0, total, PROGRESS_CHUNK):
        chunk = {name: batch[start : start + PROGRESS_CHUNK] for name, batch in feeds.items()}
        for name, value in run(chunk).items():
            parts.setdefault(name, []).append(value)
        progress(phase, min(start + PROGRESS_CHUNK, total), total)
    return {name: np.concatenate(values) for name, values in parts.items()}


LAYER_SAMPLES = 64  # samples of the per-layer comparison (every tensor of both models is kept)


def _bundle_settings(backend: Any, manifest: dict[str, Any]) -> Any:
    """The backend settings a bundle was built with (recorded in its manifest)."""
    try:
        return backend.settings_type(**manifest["target"]["settings"])
    except (TypeError, ValueError) as exc:
        raise BundleError(f"the manifest's target settings do not fit the backend: {exc}") from None


def _labels_of(manifest: dict[str, Any]) -> tuple[str, ...] | None:
    return tuple(manifest["labels"]) if manifest.get("labels") else None


CONTRIBUTION_LAYERS = 60  # layers whose own contribution is measured: the worst by SQNR
# ...measured a few at a time until this many seconds have passed (an emulated ResNet runs a
# few samples a second; every layer is a run over the capture's samples)
CONTRIBUTION_SECONDS = 120.0
CONTRIBUTION_CHUNK = 6


def _measure_layers(
    backend: Any,
    source: Any,
    settings: Any,
    built: tuple[Path, Sequence[Any], Sequence[Any]],
    calibration: Any,
    feeds: Mapping[str, Any],
    reference: Mapping[str, Any],
) -> Any:
    """The backend's capture of both models, named and ranked (edgepack.drift.layers), with
    each layer's own contribution where the backend can keep one layer in float.

    ``built`` is the model file with its inputs and outputs; ``reference`` the float model's
    outputs on ``feeds``."""
    report, _ = _layer_ranking(backend, source, settings, built, calibration, feeds, reference)
    return report


def _layer_ranking(
    backend: Any,
    source: Any,
    settings: Any,
    built: tuple[Path, Sequence[Any], Sequence[Any]],
    calibration: Any,
    feeds: Mapping[str, Any],
    reference: Mapping[str, Any],
) -> tuple[Any, dict[str, list[str]]]:
    """:func:`_measure_layers`' report, and the bundle tensors of each layer it names."""
    from edgepack.drift.layers import layer_report, layer_tensors

    model_file, inputs, outputs = built
    started = time.perf_counter()
    capture = backend.capture_layers(source, calibration, model_file, inputs, settings, feeds)
    names = {**{info.name: info.source_name for info in outputs}, **source.tensor_layers}
    report = layer_report(
        capture.pairs,
        source.layers,
        names,
        capture.matching,
        {"seconds": round(time.perf_counter() - started, 2)},
        capture.path,
    )
    report = _with_contributions(
        backend.name, capture, report, (source.layers, names), outputs, reference
    )
    report.extra["seconds"] = round(time.perf_counter() - started, 2)
    return report, layer_tensors(capture.pairs, source.layers, names)


def _with_contributions(
    target: str,
    capture: Any,
    report: Any,
    naming: tuple[Sequence[str], Mapping[str, str]],
    outputs: Sequence[Any],
    reference: Mapping[str, Any],
) -> Any:
    """Each of the worst :data:`CONTRIBUTION_LAYERS` layers kept in float alone, the output
    measured against the float model (edgepack.drift.layers.with_contributions), a few
    layers at a time while :data:`CONTRIBUTION_SECONDS` last; ``naming`` is the source's
    layers and the tensor-to-layer names the report was ranked with."""
    from dataclasses import replace

    from edgepack.drift.layers import layer_tensors, with_contributions

    if capture.keep_float is None:
        return replace(
            report, contributions=f"not measured: {target} cannot keep one layer in float yet"
        )
    grouped = layer_tensors(capture.pairs, *naming)
    worst = [d.layer for d in report.layers[:CONTRIBUTION_LAYERS]]
    deadline = time.perf_counter() + CONTRIBUTION_SECONDS
    kept: dict[str, Any] = {}
    for start in range(0, len(worst), CONTRIBUTION_CHUNK):
        if kept and time.perf_counter() > deadline:
            break
        chunk = {layer: grouped[layer] for layer in worst[start : start + CONTRIBUTION_CHUNK]}
        if not kept:
            chunk[""] = []  # the bundle as it is: the baseline, measured once
        kept.update(capture.keep_float(outputs, chunk))
    baseline = kept.pop("")
    cut = "" if len(kept) == len(worst) else f"; stopped after {CONTRIBUTION_SECONDS:.0f} s"
    how = (
        f"output min-SQNR recovered when only that layer is kept in float (its weights the "
        f"float twin's, its outputs unquantized), on the {capture.path} path; "
        f"{len(kept)} of {len(report.layers)} layers (the worst by SQNR){cut}"
    )
    return with_contributions(report, reference, kept, baseline, how)


def _source_path(manifest: dict[str, Any], bundle_dir: Path, model: Any, cwd: Path) -> Path:
    from edgepack.frontends import sha256_of_path
    from edgepack.options import project_root

    recorded = manifest["source"]
    if model is not None:
        candidate = _absolute(Path(model), cwd)
        if not candidate.exists():
            raise ModelLoadError(f"{candidate}: no such model file or folder")
    else:
        # recorded relative to the project root of the build (older bundles: absolute); a
        # bundle usually lies in <project root>/<out>/, so its grandparent is a candidate too
        places = [
            project_root(cwd) / recorded["path"],
            cwd / recorded["path"],
            bundle_dir.parent.parent / recorded["path"],
        ]
        found = next((place for place in places if place.exists()), None)
        if found is None:
            raise BundleError(
                f"source model {recorded['path']} (recorded in the manifest, relative to the "
                "project root) is not there; pass it with --model"
            )
        candidate = found
    if sha256_of_path(candidate) != recorded["sha256"]:
        raise BundleError(
            f"{candidate}: sha256 differs from the source model this bundle was built from"
        )
    return candidate


def _labels_in_bundle_order(
    data_set: Any, refs: Sequence[Any], manifest: dict[str, Any], bound: Any
) -> Any:
    import numpy as np

    labels = bound.labels(refs)
    if labels is None or not manifest.get("labels"):
        return None
    bundle_index = {name: i for i, name in enumerate(manifest["labels"])}
    unknown = sorted(set(data_set.label_names) - set(bundle_index))
    if unknown:
        raise CalibrationError(
            f"{data_set.root}: labels {unknown} are not among the bundle's labels"
        )
    mapping = np.array([bundle_index[name] for name in data_set.label_names])
    return mapping[labels]


# ---------------------------------------------------------------------------- inspect


def inspect(bundle: str | os.PathLike[str]) -> dict[str, Any]:
    """The bundle's manifest (checked), for display or scripting."""
    from edgepack.bundle import read_manifest

    return read_manifest(Path(bundle))


def report(
    paths: Sequence[str | os.PathLike[str]] | str | os.PathLike[str],
    *,
    html_path: str | os.PathLike[str] | None = None,
    markdown_path: str | os.PathLike[str] | None = None,
    junit_path: str | os.PathLike[str] | None = None,
    json_path: str | os.PathLike[str] | None = None,
) -> Any:
    """Merge the drift reports under ``paths`` (``check --json``, ``build --json``, bundles'
    ``drift.json``, their JUnit files) into one :class:`edgepack.drift.summary.Summary`, and
    write it as an HTML index, a Markdown table (a CI job summary), one JUnit document and
    JSON where asked. ``summary.passed`` is False when any verdict fails or any target failed
    to build."""
    from edgepack.bundle import json_text, write_report
    from edgepack.drift import summary as merge

    given = [paths] if isinstance(paths, str | os.PathLike) else list(paths)
    found = merge.collect([Path(p) for p in given])
    if html_path is not None:
        write_report(Path(html_path), merge.html_index(found))
    if markdown_path is not None:
        write_report(Path(markdown_path), merge.markdown(found))
    if junit_path is not None:
        write_report(Path(junit_path), merge.merged_junit(found.junit))
    if json_path is not None:
        document = {"passed": found.passed, "rows": [row.to_dict() for row in found.rows]}
        write_report(Path(json_path), json_text(document))
    return found


def inspect_compat(manifest: dict[str, Any], bundle: str | os.PathLike[str]) -> Any:
    """The placement report a bundle's manifest records (:class:`edgepack.placement.Compat`),
    None when it records none."""
    from edgepack.bundle import MANIFEST, recorded_compat

    return recorded_compat(manifest, Path(bundle) / MANIFEST)
