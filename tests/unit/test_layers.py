"""The package's modules import downward only: no cycle, no import from a lower layer to a higher one.

The layers are those stated in ``lfd13/__init__.py`` (and in the API reference): a module may
import modules of lower layers, and the modules of its own subpackage; the whole import graph,
imports inside functions included, has no cycle.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import lfd13

ROOT = Path(lfd13.__file__).parent

#: Layer of each top-level module or subpackage of lfd13, lowest first.
LAYERS: dict[str, int] = {
    "style": 0, "sampling": 0, "shipped": 0,
    "runtime": 1, "optim": 1,
    "data": 2, "train": 2, "pretrained": 2, "hub": 2, "plotting": 2, "report": 2,
    "evaluation": 3, "cnn": 3,
    "pretext": 4, "clip": 4, "mlm": 4, "finetune": 4, "sft": 4, "mae": 4,
    "peft_tools": 5, "memory": 5,
    "experiments": 6,
    "pretrain": 7, "recreate": 7,
}  # fmt: skip


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _is_type_checking(node: ast.AST) -> bool:
    return isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)


def _imports(tree: ast.AST, module: str) -> set[str]:
    """Every lfd13 module that ``module`` imports, at any depth, except under ``if TYPE_CHECKING``."""
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        if _is_type_checking(node):
            return
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("lfd13"))
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative import
                pkg = module.split(".")[: -node.level] if not module.endswith("__init__") else module.split(".")
                base = ".".join(pkg + ([base] if base else []))
            if base.startswith("lfd13"):
                for alias in node.names:
                    candidate = f"{base}.{alias.name}"
                    found.add(candidate if candidate in MODULES else base)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    found.discard(module)
    return found


MODULES = {_module_name(p): p for p in ROOT.rglob("*.py")}
GRAPH = {m: _imports(ast.parse(p.read_text(encoding="utf-8")), m) for m, p in MODULES.items()}


def _top(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def test_every_module_has_a_layer():
    missing = sorted({_top(m) for m in MODULES} - set(LAYERS) - {""})
    assert not missing, f"give these modules a layer in LAYERS (and in lfd13/__init__.py): {missing}"


@pytest.mark.parametrize("module", sorted(m for m in MODULES if m != "lfd13"))
def test_imports_go_downward(module):
    upward = []
    for target in sorted(GRAPH[module]):
        if target == "lfd13":
            if _top(module) not in ("pretrain",):  # the package root re-exports runtime helpers only
                upward.append(f"{target} (the package root)")
            continue
        same_package = _top(target) == _top(module)
        if not same_package and LAYERS[_top(target)] >= LAYERS[_top(module)]:
            upward.append(f"{target} (layer {LAYERS[_top(target)]})")
    assert not upward, f"{module} (layer {LAYERS[_top(module)]}) imports from its own layer or above: {upward}"


def test_no_import_cycle():
    state: dict[str, int] = {}  # 1 = on the current path, 2 = done

    def walk(node: str, path: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(GRAPH.get(node, ())):
            if nxt not in GRAPH:
                continue
            if state.get(nxt) == 1:
                cycle = path[path.index(nxt) :] + [nxt] if nxt in path else [node, nxt]
                pytest.fail("import cycle: " + " -> ".join(cycle))
            if state.get(nxt) is None:
                walk(nxt, path + [nxt])
        state[node] = 2

    for module in sorted(GRAPH):
        if module not in state:
            walk(module, [module])


def test_the_checker_sees_lazy_imports_and_skips_type_checking_blocks():
    src = "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from lfd13.train import History\n\ndef f():\n    from lfd13.plotting import use_style\n"
    assert _imports(ast.parse(src), "lfd13.runtime") == {"lfd13.plotting"}
