"""The import structure of critmin (issue 13): data flows one way, atlas -> assess -> simulate -> optimise
(portfolio, stockpile, deliver) -> report -> study -> faces (the package root, cli, web), with no import cycle
and no private name imported across packages.

Read from the source with ``ast`` (nothing is imported), so a new back-edge, cycle or private import fails here
with the module and the line named.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "critmin"

#: Layer of each top-level package or module of critmin: a module may import only its own layer or lower ones.
LAYERS: dict[str, int] = {
    # shared helpers with no domain knowledge
    "errors": 0, "_dates": 0, "_text": 0, "version": 0, "lp": 0, "output": 0, "inputs": 0, "workbooks": 0,
    "atlas": 1,
    "assess": 2,
    "simulate": 3,
    "portfolio": 4, "stockpile": 4, "deliver": 4,
    "report": 5,
    "study": 6,
    # faces
    "critmin": 7, "__main__": 7, "cli": 7, "cli_projects": 7, "cli_web": 7, "web": 7,
}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _package(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "critmin"


def _imports() -> list[tuple[str, str, list[str], int]]:
    """(importing module, imported module, names imported, line) for every import of a critmin module."""
    out = []
    for path in sorted(SRC.rglob("*.py")):
        mod = _module_name(path)
        base = mod if path.name == "__init__.py" else mod.rsplit(".", 1)[0]
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom):
                if node.level:
                    parts = base.split(".")
                    target = ".".join(parts[: len(parts) - node.level + 1] + ([node.module] if node.module else []))
                else:
                    target = node.module or ""
                if target == "critmin" or target.startswith("critmin."):
                    out.append((mod, target, [a.name for a in node.names], node.lineno))
            elif isinstance(node, ast.Import):
                out.extend((mod, a.name, [], node.lineno) for a in node.names if a.name == "critmin" or a.name.startswith("critmin."))
    return out


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one member (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                found.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


IMPORTS = _imports()


def test_every_package_has_a_layer() -> None:
    packages = {_package(m) for m, _, _, _ in IMPORTS} | {_package(t) for _, t, _, _ in IMPORTS}
    assert packages <= set(LAYERS), f"give these a layer in LAYERS: {sorted(packages - set(LAYERS))}"


def test_data_flows_one_way_between_layers() -> None:
    back = [f"{m} (line {ln}) imports {t}" for m, t, _, ln in IMPORTS if LAYERS[_package(t)] > LAYERS[_package(m)]]
    assert not back, "back-edges against atlas -> assess -> simulate -> optimise -> report -> study -> faces:\n" + "\n".join(back)


def test_no_import_cycle_between_packages() -> None:
    graph: dict[str, set[str]] = defaultdict(set)
    for m, t, _, _ in IMPORTS:
        if _package(m) != _package(t):
            graph[_package(m)].add(_package(t))
    assert _cycles(graph) == []


def test_no_import_cycle_between_modules_of_a_package() -> None:
    """Within a package, modules form no cycle (imports of a package's ``__init__``, which re-exports, aside)."""
    modules = {_module_name(p) for p in SRC.rglob("*.py")}
    inits = {_module_name(p) for p in SRC.rglob("__init__.py")}
    graph: dict[str, set[str]] = defaultdict(set)
    for m, t, names, _ in IMPORTS:
        for cand in [f"{t}.{n}" for n in names] + [t]:  # `from pkg import module` or `from module import name`
            if cand in modules:
                if cand not in inits and cand != m and _package(cand) == _package(m):
                    graph[m].add(cand)
                break
    assert _cycles(graph) == []


def test_no_private_name_crosses_a_package() -> None:
    private = [f"{m} (line {ln}) imports {n} from {t}" for m, t, names, ln in IMPORTS for n in names
               if n.startswith("_") and not (n.startswith("__") and n.endswith("__")) and _package(t) != _package(m)]
    assert not private, "\n".join(private)


@pytest.mark.parametrize(("module", "target"), [("critmin.atlas.audit", "critmin.assess"), ("critmin.cli_web", "critmin.cli")])
def test_known_back_edges_are_gone(module: str, target: str) -> None:
    assert not [t for m, t, _, _ in IMPORTS if m == module and (t == target or t.startswith(target + "."))]


def test_the_core_needs_no_optional_extra() -> None:
    """Issue 13: a notebook user's install has no web server, database or Dask. The core (assess, simulate, the
    plan and critmin.Study) imports none of the ``web`` and ``dask`` extras."""
    import subprocess
    import sys

    code = ("import sys, critmin; import critmin.report.cycle, critmin.study.core, critmin.simulate.run, critmin.portfolio.plan, "
            "critmin.stockpile.plan, critmin.deliver.plan, critmin.cli; "
            "print(sorted(m for m in ('fastapi', 'uvicorn', 'sqlalchemy', 'alembic', 'argon2', 'psycopg', 'dask', 'distributed') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True).stdout.strip()
    assert out == "[]"


def test_a_missing_extra_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.util

    from critmin.cli_web import require_web_extra
    from critmin.errors import CritminError

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "fastapi" else real(name, *a))
    with pytest.raises(CritminError, match=r"needs the web extra \(fastapi missing\): pip install 'critmin\[web\]'"):
        require_web_extra()


#: The functions that run a step of the cycle. Only critmin.Study (and the layers below it) may call them: the
#: faces (CLI, web jobs) go through the Study, so the orchestration is written once (issue 13).
CYCLE_STEP_FUNCTIONS = {
    "critmin.assess": {"assess", "chain"},
    "critmin.simulate.run": {"run"},
    "critmin.simulate.risk": {"risk_run", "risk_ranking"},
    "critmin.portfolio.plan": {"run_portfolio"},
    "critmin.stockpile.plan": {"plan_stockpiles", "disruption_sample"},
    "critmin.deliver.plan": {"delivery_plan"},
    "critmin.deliver.match": {"match"},
    "critmin.report.cycle": {"assemble_plan", "validation_record", "vulnerabilities"},
    "critmin.report.respond": {"respond"},
}


def test_the_faces_run_the_cycle_only_through_the_study() -> None:
    faces = {"cli", "cli_projects", "cli_web", "web"}
    direct = [f"{m} (line {ln}) imports {n} from {t}" for m, t, names, ln in IMPORTS if _package(m) in faces
              for n in names if n in CYCLE_STEP_FUNCTIONS.get(t, set())]
    assert not direct, "call critmin.Study's methods instead:\n" + "\n".join(direct)
