"""How long ``edgepack --help`` takes, beside ``python -c pass`` and importing TensorFlow.

All commands run interleaved in one process, round-robin, so that machine noise hits each of
them alike; the table gives medians and the ratio to ``python -c pass``.

    python benchmarks/cli_startup.py [--runs 15] [--json benchmarks/results/cli_startup.json]
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

COMMANDS = {
    "python -c pass": [sys.executable, "-c", "pass"],
    "edgepack --help": [sys.executable, "-m", "edgepack", "--help"],
    "edgepack targets": [sys.executable, "-m", "edgepack", "targets"],
    "python -c 'import tensorflow'": [sys.executable, "-c", "import tensorflow"],
}


def measure(runs: int) -> dict[str, list[float]]:
    times: dict[str, list[float]] = {name: [] for name in COMMANDS}
    for _ in range(runs):
        for name, command in COMMANDS.items():
            started = time.perf_counter()
            subprocess.run(
                command,
                check=True,
                capture_output=True,
                env={"TF_CPP_MIN_LOG_LEVEL": "3", "PATH": "/usr/bin:/bin"},
            )
            times[name].append(time.perf_counter() - started)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--json", type=Path, default=Path("benchmarks/results/cli_startup.json"))
    args = parser.parse_args()
    times = measure(args.runs)
    baseline = statistics.median(times["python -c pass"])
    rows = []
    print(f"{'command':32} {'median ms':>10} {'min ms':>8} {'x python':>9}")
    for name, samples in times.items():
        median = statistics.median(samples)
        rows.append(
            {
                "command": name,
                "median_s": median,
                "min_s": min(samples),
                "ratio_to_python": median / baseline,
                "runs": len(samples),
            }
        )
        print(f"{name:32} {median * 1e3:10.1f} {min(samples) * 1e3:8.1f} {median / baseline:9.2f}")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(
        json.dumps(
            {"python": platform.python_version(), "machine": platform.machine(), "results": rows},
            indent=2,
        )
    )
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
