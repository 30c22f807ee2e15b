"""Where each op of a bundle will run: per accelerator, the ops it takes and those it leaves
to the CPU, with the vendor tool's reason.

Backend-independent types and the gate. The tools themselves are target-specific and are called
by the backends: :mod:`edgepack.placement.litert` (LiteRT's AOT compiler plugins, on ``.tflite``),
:mod:`edgepack.placement.qnn` (onnxruntime's QNN execution provider, on ``.onnx``),
:mod:`edgepack.placement.ort_mobile` (onnxruntime's NNAPI / Core ML EP usability rules) and
:mod:`edgepack.placement.ane` (a static estimate for the Apple Neural Engine).

A device is named as in the profile's ``[compat] devices`` and ``--require-npu``: a SoC model
(``SM8650``, ``mt6989``, ``Tensor_G4``) or an accelerator (``nnapi``, ``coreml-ep``, ``ane``).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# how a placement was obtained
MEASURED = "compiler"  # the vendor's own compiler or execution provider ran on the model
RULES = "rules"  # a rule-based checker the runtime's maintainers ship (op types, shapes)
ESTIMATE = "estimate"  # documented constraints applied per op by edgepack: a static estimate

# what came of it
OK = "ok"
UNAVAILABLE = "unavailable"  # the tool or a library it needs is not installed here
FAILED = "failed"  # the tool ran and could not place the model at all


@dataclass(frozen=True)
class Device:
    """An accelerator a backend can place its bundles on, with the tool that says how.

    ``missing`` says, when the tool cannot run on this host, what is missing and how to get it.
    """

    name: str
    vendor: str
    accelerator: str
    tool: str
    kind: str = MEASURED
    missing: str | None = None


@dataclass(frozen=True)
class CpuOp:
    """An op the accelerator leaves to the CPU: its position in the model file, its type, its
    name where the format names ops, and the tool's reason."""

    index: int
    op: str
    reason: str
    name: str = ""
    # the float model's own boundary (a quantize of a graph input, a dequantize of a graph
    # output) that the runtime keeps on the CPU by design: reported, not a fall-off
    boundary: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "op": self.op,
            "name": self.name,
            "reason": self.reason,
            "boundary": self.boundary,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> CpuOp:
        return cls(
            int(data["index"]),
            str(data["op"]),
            str(data["reason"]),
            str(data["name"]),
            bool(data["boundary"]),
        )


@dataclass(frozen=True)
class Placement:
    """What one accelerator takes of one model.

    ``compiled`` is None where no compile was attempted (rules, estimates, a tool without a
    compile step), True when the vendor compiler produced a model, False when the partition
    looked fine but the compile failed (``compile_error`` says why): partitioning alone can be
    optimistic. ``artefact`` names the compiled model kept in the bundle, if any.
    """

    device: str
    vendor: str
    accelerator: str
    tool: str
    kind: str
    status: str
    ops_total: int = 0
    ops_offloaded: int = 0
    partitions: int = 0
    cpu_ops: tuple[CpuOp, ...] = ()
    compiled: bool | None = None
    compile_error: str | None = None
    missing: str | None = None
    versions: Mapping[str, str] = field(default_factory=dict)
    artefact: str | None = None
    notes: tuple[str, ...] = ()

    @property
    def fallen(self) -> tuple[CpuOp, ...]:
        """The ops that fall off the accelerator (the CPU ops but the model's boundary)."""
        return tuple(c for c in self.cpu_ops if not c.boundary)

    @property
    def whole(self) -> bool:
        """No op falls to the CPU, and the compile (where attempted) succeeded."""
        return self.problem() is None

    def problem(self) -> str | None:
        """Why the model is not wholly on this accelerator, in one line (None: it is)."""
        if self.status == UNAVAILABLE:
            return f"{self.device}: not measured here: {self.missing}"
        if self.status == FAILED:
            return f"{self.device}: {self.tool} failed: {self.compile_error or 'no placement'}"
        fallen = self.fallen
        if fallen:
            shown = "; ".join(f"#{c.index} {c.op} ({c.reason})" for c in fallen[:3])
            more = f"; and {len(fallen) - 3} more" if len(fallen) > 3 else ""
            return (
                f"{self.device}: {len(fallen)} of {self.ops_total} ops fall to the CPU: "
                f"{shown}{more}"
            )
        if self.compiled is False:
            return f"{self.device}: partitioned whole, but the compile failed: {self.compile_error}"
        return None

    def line(self) -> str:
        """``SM8650 (Qualcomm Hexagon NPU (HTP)): 7/7 ops, 1 partition, compiled``."""
        head = f"{self.device} ({self.vendor} {self.accelerator})"
        if self.status != OK:
            return f"{head}: {self.status}: {self.missing or self.compile_error}"
        compiled = {True: ", compiled", False: ", compile FAILED", None: ""}[self.compiled]
        cpu = f", {len(self.fallen)} on the CPU" if self.fallen else ""
        kind = "" if self.kind == MEASURED else f" [{self.kind}]"
        plural = "s" if self.partitions != 1 else ""
        return (
            f"{head}: {self.ops_offloaded}/{self.ops_total} ops, "
            f"{self.partitions} partition{plural}{cpu}{compiled}{kind}"
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "device": self.device,
            "vendor": self.vendor,
            "accelerator": self.accelerator,
            "tool": self.tool,
            "kind": self.kind,
            "status": self.status,
            "ops_total": self.ops_total,
            "ops_offloaded": self.ops_offloaded,
            "partitions": self.partitions,
            "cpu_ops": [c.to_dict() for c in self.cpu_ops],
            "compiled": self.compiled,
            "compile_error": self.compile_error,
            "missing": self.missing,
            "versions": dict(self.versions),
            "artefact": self.artefact,
            "notes": list(self.notes),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Placement:
        return cls(
            device=str(data["device"]),
            vendor=str(data["vendor"]),
            accelerator=str(data["accelerator"]),
            tool=str(data["tool"]),
            kind=str(data["kind"]),
            status=str(data["status"]),
            ops_total=int(data["ops_total"]),
            ops_offloaded=int(data["ops_offloaded"]),
            partitions=int(data["partitions"]),
            cpu_ops=tuple(CpuOp.from_dict(c) for c in data["cpu_ops"]),
            compiled=data["compiled"],
            compile_error=data["compile_error"],
            missing=data["missing"],
            versions=dict(data["versions"]),
            artefact=data["artefact"],
            notes=tuple(data.get("notes", ())),
        )


def placement_on(device: Device, status: str, **figures: Any) -> Placement:
    """A placement on ``device`` (its name, vendor, accelerator, tool and kind), with
    ``status`` and the tool's ``figures`` (:class:`Placement`'s other fields)."""
    return Placement(
        device.name, device.vendor, device.accelerator, device.tool, device.kind, status,
        **figures,
    )  # fmt: skip


def unavailable(device: Device) -> Placement:
    """The placement of a device whose tool cannot run here: nothing measured, and why."""
    return placement_on(device, UNAVAILABLE, missing=device.missing)


@dataclass(frozen=True)
class Compat:
    """A bundle's placement report: one :class:`Placement` per device, the devices the build
    required, and the gate's verdict."""

    placements: tuple[Placement, ...] = ()
    require: tuple[str, ...] = ()

    @property
    def failures(self) -> list[str]:
        """One line per required device the model is not wholly on."""
        found = {p.device.lower(): p for p in self.placements}
        lines = []
        for name in self.require:
            placement = found.get(name.lower())
            problem = "not placed" if placement is None else placement.problem()
            if problem is not None:
                lines.append(problem if placement is not None else f"{name}: {problem}")
        return lines

    @property
    def passed(self) -> bool:
        return not self.failures

    def to_dict(self) -> dict[str, Any]:
        return {
            "require": list(self.require),
            "passed": self.passed,
            "failures": self.failures,
            "devices": [p.to_dict() for p in self.placements],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Compat:
        return cls(
            tuple(Placement.from_dict(p) for p in data["devices"]),
            tuple(str(r) for r in data["require"]),
        )


def unique_names(names: Iterable[str]) -> tuple[str, ...]:
    """Device names in their first order, without repeats (case-insensitive)."""
    seen: dict[str, str] = {}
    for name in names:
        seen.setdefault(name.lower(), name)
    return tuple(seen.values())


def package_dir(name: str) -> Path | None:
    """The folder of an installed Python package (a vendor tool's libraries), or None."""
    import importlib.util

    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def distribution_version(distribution: str) -> str | None:
    """An installed distribution's version, None when it is not installed."""
    from importlib import metadata

    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return None


_PLACED: dict[tuple[Any, ...], Placement] = {}


def placed_once(
    model_file: Path, key: tuple[Any, ...], place: Callable[[], Placement]
) -> Placement:
    """``place()``, run once per process for the same model bytes and ``key`` (the device,
    the tool's options): the vendor tools are deterministic, and a service or a session that
    builds the same model again need not pay for them again. Placements that keep a compiled
    model are not remembered (the caller asks for a file)."""
    digest = hashlib.sha256(model_file.read_bytes()).hexdigest()
    remembered = _PLACED.get((digest, *key))
    if remembered is None:
        remembered = _PLACED[(digest, *key)] = place()
    return remembered
