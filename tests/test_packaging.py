"""What the packages import, ``pip install .`` brings: ``make demo`` and the container image install
without the dev extra, so a module the code imports only through it breaks them, not the tests."""

from __future__ import annotations

import ast
import sys
import tomllib
from collections.abc import Iterable, Iterator
from importlib.metadata import packages_distributions, requires

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from tests.support import REPO

PACKAGES = ("milepost", "storage", "collector", "correlator", "alerts", "dashboard", "simulator")


def runtime_distributions(declared: Iterable[str]) -> set[str]:
    """Every distribution the declared requirements install, transitively, with their extras."""
    seen: set[tuple[str, frozenset[str]]] = set()
    queue = [r for r in map(Requirement, declared) if r.marker is None or r.marker.evaluate({"extra": ""})]
    while queue:
        requirement = queue.pop()
        key = (canonicalize_name(requirement.name), frozenset(requirement.extras))
        if key in seen:
            continue
        seen.add(key)
        extras = requirement.extras or {""}
        for text in requires(requirement.name) or []:
            dependency = Requirement(text)
            marker = dependency.marker
            if marker is None or any(marker.evaluate({"extra": extra}) for extra in extras):
                queue.append(dependency)
    return {name for name, _ in seen}


def imported_modules() -> Iterator[tuple[str, str]]:
    """(top-level module, file) for every absolute import in the packages."""
    for package in PACKAGES:
        for path in sorted((REPO / package).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                if isinstance(node, ast.Import):
                    names = [alias.name for alias in node.names]
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    names = [node.module]
                else:
                    continue
                for name in names:
                    yield name.partition(".")[0], str(path.relative_to(REPO))


def test_every_imported_module_comes_with_the_runtime_dependencies() -> None:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    installed = runtime_distributions(project["dependencies"])
    providers = packages_distributions()
    ours = {*PACKAGES, *(p.name for p in REPO.iterdir() if p.is_dir())}
    missing = {
        (module, where)
        for module, where in imported_modules()
        if module not in sys.stdlib_module_names and module not in ours
        if not {canonicalize_name(d) for d in providers.get(module, [])} & installed
    }
    assert not missing, f"imported but not installed by pyproject's dependencies: {sorted(missing)}"


def test_the_closure_follows_extras_and_skips_what_markers_exclude() -> None:
    installed = runtime_distributions(["clickhouse-connect[chdb]>=1.12"])
    assert {"clickhouse-connect", "chdb"} <= installed
    assert "pytest" not in runtime_distributions(["hypothesis"])  # hypothesis[pytest] is an extra
    assert not runtime_distributions(["pywin32>=300; sys_platform == 'win32'"])  # not installed here
