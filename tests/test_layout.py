"""The package's layers point one way: no import cycles between its modules, optional backends
imported on first use only."""
from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

PKG = Path(__file__).resolve().parent.parent / "alignvar_edge"


def _module(path: Path) -> str:
    parts = path.relative_to(PKG.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path, known: set[str]) -> set[str]:
    """alignvar_edge modules `path` imports anywhere (functions too), TYPE_CHECKING blocks aside."""
    out: set[str] = set()
    tree = ast.parse(path.read_text())
    skip = {id(n) for stmt in ast.walk(tree) if isinstance(stmt, ast.If) and ast.unparse(stmt.test) == "TYPE_CHECKING"
            for n in ast.walk(stmt)}
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("alignvar_edge"):
            names = [f"{node.module}.{a.name}" for a in node.names]
            out.update(n if n in known else node.module for n in names)
        elif isinstance(node, ast.Import):
            out.update(a.name for a in node.names if a.name.startswith("alignvar_edge"))
    return {m for m in out if m in known}


def test_no_import_cycles() -> None:
    files = {_module(p): p for p in PKG.rglob("*.py")}
    graph = {m: _imports(p, set(files)) - {m} for m, p in files.items()}
    # a package's __init__ imported by its own submodules is not a cycle of logic
    graph = {m: {t for t in ts if not m.startswith(t + ".")} for m, ts in graph.items()}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    cycles: list[list[str]] = []

    def visit(v: str) -> None:        # Tarjan's strongly connected components
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                cycles.append(sorted(comp))

    sys.setrecursionlimit(10000)
    for m in graph:
        if m not in index:
            visit(m)
    assert not cycles, f"import cycles: {cycles}"


def test_no_module_imports_another_modules_private_names() -> None:
    """A helper two modules share is public where it is owned (the device bench once imported the
    host runner's `_call_for` and `_unique`, merge the renderer's `_md_table` and `_save`)."""
    found = []
    for path in sorted(PKG.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("alignvar_edge"):
                found += [f"{_module(path)}: {node.module}.{a.name}" for a in node.names
                          if a.name.startswith("_") and not a.name.startswith("__")]
    assert found == []


def test_lazy_import_defers_the_import() -> None:
    code = ("import sys; from alignvar_edge.lazy import lazy_import; m = lazy_import('json.tool'); "
            "before = 'json.tool' in sys.modules; m.main; print(before, 'json.tool' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=PKG.parent).stdout.split()
    assert out == ["False", "True"]


def test_inspect_imports_no_backend_module_before_an_engine_of_it() -> None:
    """export's inspect knew each backend's engine from the export layer: its module-top imports pulled in
    the OpenVINO backend (975 lines) and the TensorRT kit. Each backend describes its own engine now
    (`Backend.describe`), its module imported for an engine of it only."""
    code = ("import sys, alignvar_edge.export.inspect_artifact; print(sorted(m for m in sys.modules if "
            "m.startswith(('alignvar_edge.runtimes.openvino', 'alignvar_edge.runtimes.tensorrt', "
            "'alignvar_edge.runtimes.coreml'))))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=PKG.parent)
    assert out.stdout.strip() == "['alignvar_edge.runtimes.tensorrt', 'alignvar_edge.runtimes.tensorrt.plan']"


def test_every_module_compiles_without_a_warning() -> None:
    """An invalid escape in a string ("\\$" in the TensorRT kit's script template) is a
    DeprecationWarning on 3.11 and a SyntaxWarning users see on 3.12+; `python -W error` refuses the
    module. A cached .pyc hides it, so the source is compiled here."""
    import warnings
    for path in sorted(PKG.rglob("*.py")):
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            compile(path.read_text(), str(path), "exec")


def test_only_the_documented_modules_below_runtimes_import_it() -> None:
    """docs/architecture.md names the one module under the engines layer that reaches up into
    `runtimes/` (export's inspect); the graph's input and output names are the core layer's
    (`graph_names.py`), so quantize's token path no longer imports `runtimes.base` for `sr`."""
    files = {_module(p): p for p in PKG.rglob("*.py")}
    below = [m for m in files if not m.startswith(("alignvar_edge.runtimes", "alignvar_edge.bench",
                                                    "alignvar_edge.cli", "alignvar_edge.deploy",
                                                    "alignvar_edge.demo"))
             and not m.endswith(".commands")]
    reaching_up = sorted(m for m in below
                         if any(t.startswith("alignvar_edge.runtimes") for t in _imports(files[m], set(files))))
    assert set(reaching_up) <= {"alignvar_edge.export.inspect_artifact"}, reaching_up
