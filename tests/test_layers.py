"""The architecture as a test: every module imports only from its own layer or those below it, and no two
modules import each other in a circle, the benchmarks included (docs/design.md, "Layers")."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# lowest first; a module may import from its own layer (without a circle) and the layers before it
LAYERS = ["rl_minrnn.progress", "rl_minrnn.core", "rl_minrnn.configs", "rl_minrnn.agents", "rl_minrnn.envs.tasks",
          "rl_minrnn.envs.scores", "rl_minrnn.envs.offline", "rl_minrnn.envs.evaluation", "rl_minrnn.training",
          "rl_minrnn.deploy", "rl_minrnn.api", "rl_minrnn.cli"]
FOLDERS = {"rl_minrnn": "rl_minrnn", "agents": "rl_minrnn.agents", "envs": "rl_minrnn.envs",
           "configs": "rl_minrnn.configs", "training": "rl_minrnn.training", "deploy": "rl_minrnn.deploy"}


def modules() -> dict[str, Path]:
    out = {}
    for folder, package in FOLDERS.items():
        for path in sorted((ROOT / folder).rglob("*.py")):
            parts = list(path.relative_to(ROOT / folder).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            out[".".join([package, *parts])] = path
    return out


def benchmark_modules() -> dict[str, Path]:
    """``benchmarks.*`` (not an installed layer, but no circle there either); hidden folders (a peer's venv) left out."""
    out = {}
    for path in sorted((ROOT / "benchmarks").rglob("*.py")):
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        if any(part.startswith(".") for part in parts):
            continue
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


def layer_of(module: str) -> int:
    name = "rl_minrnn.core" if module.split(".")[1:2] in ([], ["scan"], ["fused"], ["cells"], ["blocks"], ["dropout"], ["ranges"], ["files"], ["threads"]) else module
    return max(i for i, layer in enumerate(LAYERS) if name == layer or name.startswith(layer + "."))


def imports(module: str, path: Path, known: set[str]) -> set[str]:
    """The project modules ``module`` imports (anywhere in the file, lazy imports included)."""
    package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else []))
            names = [f"{base}.{a.name}" for a in node.names] + [base]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        else:
            continue
        for name in names:
            while name and name not in known:
                name = name.rpartition(".")[0]
            if name and name != module:
                found.add(name)
    return found


def test_no_module_imports_from_a_higher_layer():
    mods = modules()
    upward = []
    for module, path in mods.items():
        for target in imports(module, path, set(mods)):
            if layer_of(target) > layer_of(module) and not module.startswith(target + "."):
                upward.append(f"{module} -> {target}")
    assert not upward, "imports from a higher layer: " + ", ".join(upward)


def import_circles(mods: dict[str, Path]) -> list[str]:
    # a package's __init__ re-exporting its own modules is not a circle of concepts: skip parent packages
    graph = {m: {t for t in imports(m, p, set(mods)) if not t.startswith(m + ".") and not m.startswith(t + ".")}
             for m, p in mods.items()}
    state: dict[str, int] = {}
    cycles = []

    def visit(node, stack):
        state[node] = 1
        for nxt in graph[node]:
            if state.get(nxt) == 1:
                cycles.append(" -> ".join(stack[stack.index(nxt):] + [nxt]))
            elif nxt not in state:
                visit(nxt, stack + [nxt])
        state[node] = 2

    for m in graph:
        if m not in state:
            visit(m, [m])
    return cycles


def test_no_import_circles():
    cycles = import_circles(modules())
    assert not cycles, "import circles: " + "; ".join(cycles)


def test_no_import_circles_in_the_benchmarks():
    """The benchmarks import the product and each other one way too (lazy imports count: a circle of
    modules is a circle of concepts whenever it is imported)."""
    cycles = import_circles({**modules(), **benchmark_modules()})
    assert not cycles, "import circles: " + "; ".join(cycles)


def test_the_check_sees_the_tree():
    mods = modules()
    assert {"rl_minrnn.scan", "rl_minrnn.agents.factory", "rl_minrnn.envs.offline.store",
            "rl_minrnn.training.trainer", "rl_minrnn.deploy.runtime"} <= set(mods)
    assert "rl_minrnn.configs.schema" in imports("rl_minrnn.agents.base", mods["rl_minrnn.agents.base"], set(mods))
    assert layer_of("rl_minrnn.cells") < layer_of("rl_minrnn.agents.base") < layer_of("rl_minrnn.training.trainer")
    bench = {**mods, **benchmark_modules()}
    assert {"benchmarks.suite", "benchmarks.ray_suite", "benchmarks.peers.d3rlpy_dt"} <= set(bench)
    assert "benchmarks.ray_suite" in imports("benchmarks.suite", bench["benchmarks.suite"], set(bench))


def test_the_design_doc_names_every_module():
    """docs/design.md's module table is the map of the tree: a module it does not name is a room nobody
    was told about."""
    text = (ROOT / "docs" / "design.md").read_text()
    unnamed = [str(path.relative_to(ROOT)) for module, path in modules().items()
               if path.name != "__init__.py" and path.name not in text]
    assert not unnamed, f"docs/design.md does not name {unnamed}"
