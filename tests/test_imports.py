"""The import graph of lenet_exp/ and hydra_plugins/, read from the source (every ``import`` and ``from``, at the
top of a module and inside its functions alike; not those under ``if TYPE_CHECKING:``, which never run): it has
no cycle, the training side reaches the study (the Optuna sweeper's package) in one direction only, and the study's
modules load neither Lightning nor torch when imported, so that a refused study costs no Lightning import."""

from __future__ import annotations

import ast
from pathlib import Path

from conftest import ROOT

PACKAGES = ("lenet_exp", "hydra_plugins")
PLUGIN = "hydra_plugins."  # the sweeper plugin's package, where the study lives
HEAVY = ("torch", "pytorch_lightning", "lightning_fabric", "torchvision", "torchmetrics")


def module_names(root: Path) -> dict[str, Path]:
    """Every module of the packages under ``root``, by dotted name (a package by its own name)."""
    found = {}
    for package in PACKAGES:
        for path in sorted((root / package).rglob("*.py")):
            parts = path.relative_to(root).with_suffix("").parts
            found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def _type_checking_only(node: ast.AST) -> bool:
    return isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)


def imports(name: str, path: Path, known: set[str]) -> dict[str, bool]:
    """The modules of ``known`` that module ``name`` imports, each with whether it does so at import time (a
    statement outside any function or class body) rather than inside a function."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: dict[str, bool] = {}

    def add(target: str, at_top: bool) -> None:
        while target and target not in known:  # ``from a.b import c``: the module a.b.c, else a.b
            target = target.rpartition(".")[0]
        if target and target != name:
            found[target] = found.get(target, False) or at_top

    def visit(node: ast.AST, at_top: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if _type_checking_only(child):
                continue
            if isinstance(child, ast.Import):
                for alias in child.names:
                    add(alias.name, at_top)
            elif isinstance(child, ast.ImportFrom):
                base = child.module or ""
                if child.level:  # relative: from its package up
                    up = package.split(".")[: len(package.split(".")) - child.level + 1]
                    base = ".".join([*up, base] if base else up)
                for alias in child.names:
                    add(f"{base}.{alias.name}", at_top)
            visit(child, at_top and not isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda))

    visit(ast.parse(path.read_text()), True)
    return found


def graph(root: Path) -> dict[str, dict[str, bool]]:
    names = module_names(root)
    return {name: imports(name, path, set(names)) for name, path in names.items()}


def study_modules(root: Path) -> set[str]:
    """The study's code: the plugin's package, and any other module that talks to Optuna (imports it anywhere)."""
    paths = module_names(root)
    return {name for name in paths if name.startswith(PLUGIN) or "optuna" in imports(name, paths[name], {"optuna"})}


def cycle(edges: dict[str, dict[str, bool]]) -> list[str] | None:
    """One cycle of the graph as the modules along it (the first again at the end), else None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def walk(module: str) -> list[str] | None:
        state[module] = 1
        path.append(module)
        for target in sorted(edges.get(module, {})):
            if state.get(target) == 1:
                return [*path[path.index(target) :], target]
            if target not in state and (found := walk(target)):
                return found
        state[module] = 2
        path.pop()
        return None

    for module in sorted(edges):
        if module not in state and (found := walk(module)):
            return found
    return None


def loaded_on_import(edges: dict[str, dict[str, bool]], module: str) -> set[str]:
    """The modules of the graph that importing ``module`` imports (through statements at import time)."""
    seen, todo = set(), [module]
    while todo:
        for target, at_top in edges[todo.pop()].items():
            if at_top and target not in seen:
                seen.add(target)
                todo.append(target)
    return seen


def heavy_imports_at_top(path: Path) -> list[str]:
    """The heavy libraries (``HEAVY``) a module imports at import time."""
    found = []
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.Import):
            found += [a.name for a in node.names if a.name.split(".")[0] in HEAVY]
        elif isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] in HEAVY:
            found.append(node.module)
    return found


def test_the_import_graph_has_no_cycle():
    edges = graph(ROOT)
    assert "lenet_exp.train" in edges and "hydra_plugins.lenet_exp_optuna.sweeper" in edges
    assert cycle(edges) is None, " -> ".join(cycle(edges))


def test_training_reaches_the_study_in_one_direction_and_runtime_not_at_all():
    edges, study = graph(ROOT), study_modules(ROOT)
    assert "hydra_plugins.lenet_exp_optuna.sweeper" in study
    # train.py imports only the training side of a trial (lenet_exp/trial.py), and importing it loads no study code
    assert not study & set(edges["lenet_exp.train"]), edges["lenet_exp.train"]
    assert not study & loaded_on_import(edges, "lenet_exp.train")
    training = {name for name in edges if name not in study and study & set(edges[name])}
    assert training <= {"lenet_exp.trial"}, training  # the one module of lenet_exp that opens a trial's study
    # every run asks the hand-off whether it trains a trial: importing it loads nothing else of the study
    assert not study & loaded_on_import(edges, "hydra_plugins.lenet_exp_optuna._job")
    for name in study:  # and the study never imports it back
        assert "lenet_exp.trial" not in loaded_on_import(edges, name) | set(edges[name]), name
    runtime = {name: sorted(study & set(edges[name])) for name in edges if name.startswith("lenet_exp.runtime.")}
    assert not any(runtime.values()), runtime  # checks of the study's settings are the study's own


def test_the_study_loads_no_lightning_nor_torch_on_import():
    """A study refused before any trial (or Hydra's plugin scan) imports the study's modules: none of them, nor
    anything they import at import time, may import Lightning or torch (seconds of start-up)."""
    edges, paths = graph(ROOT), module_names(ROOT)
    for name in study_modules(ROOT):
        for module in {name} | loaded_on_import(edges, name):
            assert not heavy_imports_at_top(paths[module]), (name, module, heavy_imports_at_top(paths[module]))


def test_the_report_loads_no_lightning_nor_torch():
    """``lenet-exp-report`` reads a sweep's files and draws one PNG: neither it nor anything it imports, at import
    time or inside its functions, may import Lightning or torch (three seconds of a command that takes under one)."""
    edges, paths = graph(ROOT), module_names(ROOT)
    report = {"lenet_exp.report"} | set(edges["lenet_exp.report"])
    for name in list(report):
        report |= loaded_on_import(edges, name)
    assert {"lenet_exp.drawing", "lenet_exp.runtime.writes"} <= report
    for module in report:
        assert not heavy_imports_at_top(paths[module]), (module, heavy_imports_at_top(paths[module]))
