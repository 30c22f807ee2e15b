"""TFLite placement from the vendors' own compilers, through LiteRT's AOT compiler plugins.

``ai-edge-litert`` ships ``tools/apply_plugin_main`` and one compiler plugin per NPU vendor
(``vendors/<vendor>/compiler``). ``--cmd=partition`` asks the plugin which ops its NPU takes and
writes a model whose taken ops are replaced by ``DISPATCH_OP`` calls; ``--cmd=apply`` also
compiles them for the named SoC. The ops left in the partitioned model's own subgraphs are the
ones the app's interpreter runs on the CPU.

The plugins need the vendor's host libraries:

- Qualcomm: the QNN libraries, from ``onnxruntime-qnn`` (``pip install "edgepack[npu]"``) or a
  QNN / QAIRT SDK named by ``QNN_SDK_ROOT``. The plugin also links ``libQnnLpai.so``, which
  ``onnxruntime-qnn`` does not ship: it must be found on ``LD_LIBRARY_PATH`` (README, NPU
  placement, says how the tests provide it).
- MediaTek and Google Tensor: their SDK packages (``ai-edge-litert-sdk-mediatek``,
  ``-google-tensor``) download the compilers from the vendors' servers when installed.

Where a library is missing the placement says which, and nothing else fails.
"""

from __future__ import annotations

import functools
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from edgepack.errors import ConfigError
from edgepack.placement import (
    FAILED,
    OK,
    CpuOp,
    Device,
    Placement,
    distribution_version,
    package_dir,
    placed_once,
    placement_on,
    unavailable,
)

TIMEOUT_SECONDS = 900
DISPATCH = "CUSTOM:DISPATCH_OP"


@dataclass(frozen=True)
class Vendor:
    """A LiteRT compiler plugin: its folder under ``ai_edge_litert/vendors``, how its SoC
    names look, and how to get the libraries it needs."""

    key: str
    name: str
    folder: str
    accelerator: str
    soc_pattern: str
    get_it: str


VENDORS: dict[str, Vendor] = {
    "qualcomm": Vendor(
        "qualcomm",
        "Qualcomm",
        "qualcomm",
        "Hexagon NPU (HTP)",
        r"(SM|SA|QCS|QCM|SC|SXR|SSG|AIC|IPQ|QRB|SAR|SDM)\d{3,4}[A-Z]*P?",
        "pip install 'edgepack[npu]' (onnxruntime-qnn carries the QNN libraries) or set "
        "QNN_SDK_ROOT to a QNN/QAIRT SDK",
    ),
    "mediatek": Vendor(
        "mediatek",
        "MediaTek",
        "mediatek",
        "NeuroPilot APU",
        r"mt\d{4}[a-z]*",
        "pip install ai-edge-litert-sdk-mediatek on a machine with internet access (it "
        "downloads MediaTek's NeuroPilot compiler) and put its libraries on LD_LIBRARY_PATH",
    ),
    "google": Vendor(
        "google",
        "Google",
        "google_tensor",
        "Tensor TPU",
        r"Tensor_G\d+",
        "pip install ai-edge-litert-sdk-google-tensor on a machine with internet access (it "
        "downloads Google's Tensor compiler) and put its libraries on LD_LIBRARY_PATH",
    ),
}


def vendor_of(name: str) -> Vendor | None:
    """The LiteRT vendor whose SoC names look like ``name`` (``qualcomm:SM8650`` also)."""
    if ":" in name:
        return VENDORS.get(name.split(":", 1)[0].lower())
    for vendor in VENDORS.values():
        if re.fullmatch(vendor.soc_pattern, name, flags=re.IGNORECASE):
            return vendor
    return None


def soc_name(name: str) -> str:
    """A SoC name without its ``vendor:`` prefix."""
    return name.split(":", 1)[1] if ":" in name else name


def device(name: str) -> Device:
    """The device for a SoC name; ``missing`` set when its plugin cannot run here. A SoC the
    loaded plugin does not know is a :class:`ConfigError`."""
    vendor = vendor_of(name)
    if vendor is None:
        raise ConfigError(f"{name!r} is not a SoC name LiteRT's compiler plugins take")
    soc = soc_name(name)
    probe = _probe(vendor.key)
    if probe.socs:
        by_lower = {s.lower(): s for s in probe.socs}
        if soc.lower() not in by_lower:
            raise ConfigError(
                f"{vendor.name}'s compiler plugin does not know SoC {soc!r} "
                f"(it knows: {', '.join(probe.socs)})"
            )
        soc = by_lower[soc.lower()]
    tool = f"LiteRT {vendor.name} compiler plugin (apply_plugin_main)"
    return Device(soc, vendor.name, vendor.accelerator, tool, missing=probe.missing)


def place(
    model_file: Path, device: Device, compile: bool = True, artefact: Path | None = None
) -> Placement:
    """Partition ``model_file`` for ``device`` with its vendor's plugin and, with
    ``compile``, compile it; the compiled model is kept at ``artefact`` when given."""
    if device.missing is not None:
        return unavailable(device)
    if artefact is None:
        return placed_once(
            model_file, ("litert", device, compile), lambda: _place(model_file, device, compile)
        )
    return _place(model_file, device, compile, artefact)


def _place(
    model_file: Path, device: Device, compile: bool, artefact: Path | None = None
) -> Placement:
    vendor = vendor_of(f"{device.vendor}:{device.name}")
    assert vendor is not None
    with tempfile.TemporaryDirectory(prefix="edgepack-npu-") as scratch:
        partitioned = Path(scratch) / "partitioned.tflite"
        run = _run(vendor, "partition", device.name, model_file, partitioned)
        versions = _versions(vendor, run.stderr)
        missing = _missing_library(vendor, run.stdout + run.stderr)
        if missing is not None:
            return unavailable(Device(**{**device.__dict__, "missing": missing}))
        stats = [tuple(map(int, s)) for s in _STATS.findall(run.stderr)]
        if run.returncode != 0 or not stats or not _written(partitioned):
            return _failed(device, versions, f"partition exit {run.returncode}: {_errors(run)}")
        cpu_ops = _cpu_ops(model_file, partitioned, _rejections(run.stderr), vendor)
        placement = placement_on(
            device,
            OK,
            ops_total=sum(s[2] for s in stats),
            ops_offloaded=sum(s[1] for s in stats),
            partitions=sum(s[3] for s in stats),
            cpu_ops=tuple(cpu_ops),
            versions=versions,
        )
        if not compile or placement.ops_offloaded == 0:
            return placement
        compiled = Path(scratch) / "compiled.tflite"
        applied = _run(vendor, "apply", device.name, model_file, compiled)
        if applied.returncode == 0 and _written(compiled):
            if artefact is not None:
                artefact.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(compiled, artefact)
            return Placement(
                **{
                    **placement.__dict__,
                    "compiled": True,
                    "versions": _versions(vendor, applied.stderr) or versions,
                }
            )
        error = _compile_error(applied, model_file)
        return Placement(**{**placement.__dict__, "compiled": False, "compile_error": error})


# ---------------------------------------------------------------------------- the tool


@dataclass(frozen=True)
class _Probe:
    socs: tuple[str, ...]
    missing: str | None


@functools.cache
def _probe(vendor_key: str) -> _Probe:
    """Load the vendor's plugin once (``--cmd=info``): the SoCs it knows, or what it lacks."""
    vendor = VENDORS[vendor_key]
    tool = _tool()
    if tool is None:
        return _Probe((), "ai-edge-litert's apply_plugin_main is not installed")
    setup = _setup(vendor)
    if isinstance(setup, str):
        return _Probe((), setup)
    with tempfile.TemporaryDirectory(prefix="edgepack-npu-") as scratch:
        out = Path(scratch) / "info.txt"
        result = subprocess.run(
            [str(tool), "--cmd=info", *setup.flags, f"--o={out}", "--err=--"],
            env=setup.env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        text = out.read_text(errors="replace") if out.exists() else ""
    missing = _missing_library(vendor, result.stdout + result.stderr)
    if missing is not None or "|" not in text:
        return _Probe((), missing or f"{vendor.name}'s plugin did not load: {_errors(result)}")
    return _Probe(tuple(re.findall(r'"([^"]+)"', text.split("|", 1)[1])), None)


@dataclass(frozen=True)
class _Setup:
    flags: tuple[str, ...]
    env: dict[str, str]
    qnn_source: str | None = None


def _tool() -> Path | None:
    litert = package_dir("ai_edge_litert")
    tool = None if litert is None else litert / "tools" / "apply_plugin_main"
    return tool if tool is not None and tool.is_file() else None


def _setup(vendor: Vendor) -> _Setup | str:
    """The plugin flags and environment, or what is missing."""
    litert = package_dir("ai_edge_litert")
    assert litert is not None
    plugin = litert / "vendors" / vendor.folder / "compiler"
    if not plugin.is_dir():
        return f"this ai-edge-litert has no {vendor.name} compiler plugin"
    env = dict(os.environ)
    flags = [f"--libs={plugin}", f"--soc_manufacturer={vendor.name}"]
    if vendor.key != "qualcomm":
        return _Setup(tuple(flags), env)
    qnn = qnn_library_dir()
    if qnn is None:
        return f"Qualcomm's QNN libraries are not installed: {vendor.get_it}"
    env["LD_LIBRARY_PATH"] = os.pathsep.join(
        [str(qnn[0]), *filter(None, [env.get("LD_LIBRARY_PATH")])]
    )
    flags.append(f"--qualcomm_qnn_lib_dir={qnn[0]}")
    return _Setup(tuple(flags), env, qnn[1])


def qnn_library_dir() -> tuple[Path, str] | None:
    """The folder of Qualcomm's QNN host libraries and where it comes from: ``QNN_SDK_ROOT``'s
    ``lib/x86_64-linux-clang``, else the ``onnxruntime-qnn`` package's folder."""
    root = os.environ.get("QNN_SDK_ROOT")
    if root:
        folder = Path(root) / "lib" / "x86_64-linux-clang"
        if (folder / "libQnnHtp.so").is_file():
            return folder, "QNN_SDK_ROOT"
    package = package_dir("onnxruntime_qnn")
    if package is not None and (package / "libQnnHtp.so").is_file():
        return package, f"onnxruntime-qnn {distribution_version('onnxruntime-qnn')}"
    return None


def _run(
    vendor: Vendor, command: str, soc: str, model_file: Path, out: Path
) -> subprocess.CompletedProcess[str]:
    setup = _setup(vendor)
    assert not isinstance(setup, str)
    tool = _tool()
    assert tool is not None
    return subprocess.run(
        [
            str(tool),
            f"--cmd={command}",
            *setup.flags,
            f"--soc_model={soc}",
            f"--model={model_file}",
            f"--o={out}",
            "--err=--",
        ],
        env=setup.env,
        capture_output=True,
        text=True,
        timeout=TIMEOUT_SECONDS,
        check=False,
    )


def _written(path: Path) -> bool:
    return path.is_file() and path.stat().st_size > 0


# ---------------------------------------------------------------------------- reading its logs

_STATS = re.compile(
    r"Partitioned subgraph<(\d+)>, selected (\d+) ops, from a total of (\d+) ops\. "
    r"resulted in (\d+) partitions\."
)
_REJECTED = re.compile(
    r"LiteRT Op #(\d+) '([^']+)' \(code=(\d+)\) is not supported in Qualcomm Compiler\."
)
_QNN_INVALID = re.compile(r"QNN op validation failed: '([^']+)' \(([^)]*)\)")
_TENSOR = re.compile(r'name="[^"]*" dtype=QNN_DATATYPE_(\S+)(.*)')
_CANNOT_LOAD = re.compile(r"Could not load shared library [^:]+: ([^:\s]+): cannot open shared")
_GOOGLE_LIB = re.compile(r"Failed to load Tensor TPU compiler library: (\S+?):")
_SDK_VERSION = re.compile(r"Applying plugin with SDK version: v?(\S+)")
_QNN_E = re.compile(r"<E>\s*(.*)")
# lines QNN prints while the compiler probes options and op configs it then does without
_BENIGN = ("unexpected GraphHtpSettings option", "validateOpConfig failed", "Failed to validate op")


def _missing_library(vendor: Vendor, log: str) -> str | None:
    """What the plugin could not load, with how to get it (None: it loaded)."""
    found = _CANNOT_LOAD.search(log)
    if found:
        library = found.group(1)
        if vendor.key == "qualcomm" and library == "libQnnLpai.so":
            return (
                "LiteRT's Qualcomm plugin links libQnnLpai.so, which onnxruntime-qnn does not "
                "ship: set QNN_SDK_ROOT to a QNN/QAIRT SDK, or put a folder holding "
                "libQnnLpai.so on LD_LIBRARY_PATH (README: NPU placement)"
            )
        return f"{vendor.name}'s plugin cannot load {library}: {vendor.get_it}"
    if "Failed to load NeuronAdapter shared library" in log:
        return f"MediaTek's NeuronAdapter library is not installed: {vendor.get_it}"
    google = _GOOGLE_LIB.search(log)
    if google:
        return f"Google's Tensor compiler ({google.group(1)}) is not installed: {vendor.get_it}"
    if re.search(rf"Trying plugin: {vendor.name}\s*\n\S*\s*Failed", log):
        return f"{vendor.name}'s compiler library is not installed: {vendor.get_it}"
    return None


def _versions(vendor: Vendor, log: str) -> dict[str, str]:
    versions = {"ai-edge-litert": distribution_version("ai-edge-litert") or "not installed"}
    sdk = _SDK_VERSION.search(log)
    if sdk:
        versions[f"{vendor.key}_sdk"] = sdk.group(1)
    if vendor.key == "qualcomm":
        setup = _setup(vendor)
        if not isinstance(setup, str) and setup.qnn_source:
            versions["qnn_libraries"] = setup.qnn_source
    return versions


def _errors(run: subprocess.CompletedProcess[str]) -> str:
    lines = [
        line.strip()
        for line in (run.stderr + run.stdout).splitlines()
        if line.startswith(("ERROR", "└")) or "Failed" in line
    ]
    return " | ".join(lines[-3:]) or "no message"


def _rejections(log: str) -> dict[int, str]:
    """Op index -> the plugin's reason, from blocks like::

        QNN op validation failed: 'ElementWiseBinary_7' (type=ElementWiseBinary, operation=Mod)
            [0] name="0_litert_10" dtype=QNN_DATATYPE_FLOAT_32 ... (no quantization)
        LiteRT Op #6 'FloorMod' (code=95) is not supported in Qualcomm Compiler.

    An op without a validation block before it has no QNN equivalent at all.
    """
    reasons: dict[int, str] = {}
    pending: str | None = None
    lines = log.splitlines()
    for number, line in enumerate(lines):
        invalid = _QNN_INVALID.search(line)
        if invalid:
            dtypes = []
            for following in lines[number + 1 : number + 12]:
                if not following.startswith((" ", "\t")):
                    break
                tensor = _TENSOR.search(following)
                if tensor:
                    plain = "no quantization" in tensor.group(2)
                    dtypes.append(tensor.group(1).lower() + (" unquantized" if plain else ""))
            kind, _, detail = invalid.group(2).partition(", ")
            kind = kind.removeprefix("type=")
            pending = f"QNN's HTP validator refused {kind}" + (f" ({detail})" if detail else "")
            if dtypes:
                pending += f" on {' and '.join(sorted(set(dtypes)))} tensors"
            continue
        rejected = _REJECTED.search(line)
        if rejected:
            reasons[int(rejected.group(1))] = pending or (
                f"no QNN equivalent of {rejected.group(2)} in LiteRT's Qualcomm plugin"
            )
            pending = None
    return reasons


def _compile_error(run: subprocess.CompletedProcess[str], model_file: Path) -> str:
    """The QNN errors of a failed compile, naming the ops they are about."""
    messages: list[str] = []
    for line in run.stdout.splitlines() + run.stderr.splitlines():
        error = _QNN_E.search(line)
        if error and not any(benign in line for benign in _BENIGN):
            message = error.group(1).strip()
            if message not in messages:
                messages.append(message)
    ops = _operators(model_file.read_bytes())[0] if model_file.is_file() else []
    failing = sorted({int(x) for x in re.findall(r"_LiteRt_OpId_(\d+)", "\n".join(messages))})
    named = [f"#{i} {ops[i][1]}" for i in failing if i < len(ops)]
    head = f"exit {run.returncode}" + (f", ops {', '.join(named)}" if named else "")
    return f"{head}: {'; '.join(messages[:3]) or _errors(run)}"


def _failed(device: Device, versions: Mapping[str, str], error: str) -> Placement:
    return placement_on(
        device,
        FAILED,
        compile_error=error,
        versions=versions,
    )


# ---------------------------------------------------------------------------- the model's ops


def _operators(flatbuffer: bytes) -> list[list[tuple[int, str, str]]]:
    """Per subgraph: (op index, op name, name of its first output tensor)."""
    from ai_edge_litert import schema_py_generated as schema

    names = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}
    model = schema.Model.GetRootAs(flatbuffer, 0)
    subgraphs = []
    for s in range(model.SubgraphsLength()):
        subgraph = model.Subgraphs(s)
        ops = []
        for o in range(subgraph.OperatorsLength()):
            operator = subgraph.Operators(o)
            code = model.OperatorCodes(operator.OpcodeIndex())
            number = max(code.BuiltinCode(), code.DeprecatedBuiltinCode())
            name = names.get(number, f"UNKNOWN_{number}")
            if name == "CUSTOM":
                name = f"CUSTOM:{(code.CustomCode() or b'').decode()}"
            output = ""
            if operator.OutputsLength():
                output = (subgraph.Tensors(operator.Outputs(0)).Name() or b"").decode()
            ops.append((o, name, output))
        subgraphs.append(ops)
    return subgraphs


def _cpu_ops(
    model_file: Path, partitioned: Path, reasons: Mapping[int, str], vendor: Vendor
) -> list[CpuOp]:
    """The ops left in the partitioned model's own subgraphs, as the original model numbers
    them (matched by their output tensor), each with the plugin's reason."""
    original = _operators(model_file.read_bytes())
    after = _operators(partitioned.read_bytes())
    by_output = {out: (index, name) for ops in original for index, name, out in ops}
    left: list[CpuOp] = []
    for subgraph in after[: len(original)]:
        for index, name, out in subgraph:
            if name == DISPATCH:
                continue
            original_index, original_name = by_output.get(out, (index, name))
            reason = reasons.get(original_index, f"not selected by {vendor.name}'s partitioner")
            left.append(CpuOp(original_index, original_name, reason, out))
    return left
