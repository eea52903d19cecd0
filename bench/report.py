"""Benchmark results: every figure printed as it is measured, kept in ``bench/results.json`` and
rendered as the table in ``bench/RESULTS.md``.

Benchmarks run separately (``make bench-ingest``, later others), so ``record`` merges: a figure
replaces the previous value of the same name and leaves the other benchmarks' figures alone.
Each figure keeps the run it came from (date, commit, size) because the machines are shared and a
figure is only comparable with the ceiling measured in the same run.
"""

from __future__ import annotations

import fcntl
import json
import os
import platform
import re
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
RESULTS_JSON = BENCH_DIR / "results.json"
RESULTS_MD = BENCH_DIR / "RESULTS.md"
_TARGET = re.compile(r"^\s*(≥|>=|≤|<=)\s*([\d,._]+)")


@dataclass(frozen=True)
class Figure:
    """One measured number. ``value`` None means FAILED (the run lost data or errored; see ``note``).

    ``target`` is text such as "≥ 100,000" or "≤ 50 ms" (or "report" when there is none);
    ``ceiling_ratio`` is this figure divided by the raw rate of the layer below, measured in the same run.
    """

    name: str
    value: float | None
    unit: str
    target: str
    note: str = ""
    ceiling_ratio: float | None = None


def meets(figure: Figure) -> bool | None:
    """Whether the figure meets its target (a FAILED figure does not); None for a target that is no bound."""
    if figure.value is None:
        return False
    match = _TARGET.match(figure.target)
    if match is None:
        return None
    bound = float(match.group(2).replace(",", "").replace("_", ""))
    return figure.value >= bound if match.group(1) in ("≥", ">=") else figure.value <= bound


def format_value(value: float | None) -> str:
    """Thousands separators for large numbers, three significant digits for small ones."""
    if value is None:
        return "FAILED"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    return f"{value:.3g}"


def show(figure: Figure) -> None:
    """Print one figure on one line, as soon as it is measured."""
    verdict = {True: "met", False: "NOT met", None: ""}[meets(figure)]
    ratio = f"; {figure.ceiling_ratio:.2f} of ceiling" if figure.ceiling_ratio is not None else ""
    note = f"  -- {figure.note}" if figure.note else ""
    print(
        f"  {figure.name:<46} {format_value(figure.value):>14} {figure.unit:<10}"
        f" (target {figure.target}{ratio}) {verdict}{note}",
        flush=True,
    )


def machine() -> dict[str, Any]:
    """Cores, CPU model, memory and Python of the machine the figures were measured on."""
    model = ""
    memory_kib = 0
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                memory_kib = int(line.split()[1])
    except OSError:
        pass
    return {
        "cores": os.cpu_count() or 0,
        "cpu_model": model or platform.processor() or "unknown",
        "memory_gib": round(memory_kib / 1024**2, 1),
        "python": platform.python_version(),
    }


def git_commit() -> str:
    """The short commit of the working tree, with ``+dirty`` when files differ from it."""
    repo = BENCH_DIR.parent
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=repo, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"], cwd=repo, capture_output=True, text=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return f"{commit}+dirty" if dirty else commit


def record(figures: list[Figure], size: str = "") -> None:
    """Merge ``figures`` into ``bench/results.json`` (by name) and rewrite ``bench/RESULTS.md``."""
    run = {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "commit": git_commit(),
        "size": size,
    }
    with _locked(BENCH_DIR):  # benchmarks may run side by side; neither may lose the other's figures
        results = _load()
        results["machine"] = machine()
        results["last_run"] = run
        for figure in figures:
            results["figures"][figure.name] = {**asdict(figure), "run": run}
        _write_atomically(RESULTS_JSON, json.dumps(results, indent=2, ensure_ascii=False) + "\n")
        _write_atomically(RESULTS_MD, render(results))


def render(results: dict[str, Any]) -> str:
    """The markdown page of ``results``: header with machine and run, then one row per figure."""
    host = results.get("machine", {})
    last = results.get("last_run", {})
    lines = [
        "# Benchmark results",
        "",
        f"- Machine: {host.get('cores', '?')} cores, {host.get('cpu_model', '?')},"
        f" {host.get('memory_gib', '?')} GiB, Python {host.get('python', '?')}",
        f"- Last run: {last.get('date', '?')}, commit {last.get('commit', '?')},"
        f" size {last.get('size', '?')}",
        "- Written by `bench/report.py`; see `bench/README.md` for what each figure means.",
        "",
        "| Figure | Value | Unit | Target | Met | Ratio to ceiling | Note |",
        "|---|---:|---|---|---|---:|---|",
    ]
    for name in sorted(results.get("figures", {})):
        entry = results["figures"][name]
        figure = Figure(**{key: entry.get(key) for key in Figure.__dataclass_fields__})
        met = {True: "yes", False: "**no**", None: ""}[meets(figure)]
        ratio = f"{figure.ceiling_ratio:.2f}" if figure.ceiling_ratio is not None else ""
        note = figure.note
        run = entry.get("run", {})
        if run and (run.get("commit"), run.get("date")) != (last.get("commit"), last.get("date")):
            note = f"{note} (run {run.get('date')}, {run.get('commit')}, {run.get('size')})".strip()
        cells = [name, format_value(figure.value), figure.unit, figure.target, met, ratio, note]
        lines.append("| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |")
    return "\n".join(lines) + "\n"


@contextmanager
def _locked(directory: Path) -> Iterator[None]:
    handle = os.open(directory, os.O_RDONLY)
    try:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield
    finally:
        os.close(handle)  # closing releases the lock


def _load() -> dict[str, Any]:
    try:
        loaded = json.loads(RESULTS_JSON.read_text())
    except (OSError, ValueError):
        loaded = {}
    if not isinstance(loaded, dict) or not isinstance(loaded.get("figures"), dict):
        loaded = {"figures": {}}
    return loaded


def _write_atomically(path: Path, text: str) -> None:
    temp = path.with_suffix(path.suffix + ".tmp")
    temp.write_text(text, encoding="utf-8")
    os.replace(temp, path)
