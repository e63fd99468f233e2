"""The package reads as the pipeline: no import cycles, and each stage imports only from the stages
before it (image -> faces -> embeddings -> gallery -> results, video beside it, app on top).

Imports inside functions count too: a lazy import hides a cycle from Python, not from a reader.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from rvs.config import PROJECT_ROOT

PACKAGE = PROJECT_ROOT / "rvs"

# Stages, lowest first. A module may import its own stage (sub)package and any lower layer,
# never a layer above or a sibling of its own layer.
LAYERS: list[set[str]] = [
    {"config", "errors", "fileio", "progress", "threads"},  # shared: settings, errors, atomic files, progress, CPU threads
    {"imageio"},  # image in
    {"lfw", "models"},  # the dataset; the model weights
    {"faces"},  # image -> faces -> embeddings
    {"gallery", "video", "eval"},  # embeddings -> gallery -> results; video search; evaluation
    {"library"},  # a library of videos: video search indexed once, searched with the gallery's backends
    {"hub", "train"},  # publishing galleries; training
    {"app"},  # the demo's back end
    {"commands", "cli"},  # python -m rvs COMMAND: one module per command
    {"__main__"},
]


def module_name(path: Path, top: Path) -> str:
    parts = path.relative_to(top).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph(root: Path = PACKAGE) -> dict[str, set[str]]:
    """rvs module -> the rvs modules it imports anywhere in its body."""
    files = {module_name(p, root.parent): p for p in root.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in files.items():
        is_pkg = path.name == "__init__.py"
        deps: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                deps |= {a.name for a in node.names if a.name.split(".")[0] == "rvs"}
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = name.split(".")[: len(name.split(".")) - node.level + (1 if is_pkg else 0)]
                    mod = ".".join(base + ([node.module] if node.module else []))
                else:
                    mod = node.module or ""
                if mod.split(".")[0] != "rvs":
                    continue
                for a in node.names:
                    sub = f"{mod}.{a.name}"
                    # `from rvs.video import cache` imports the module rvs.video.cache.
                    deps.add(sub if sub in files else mod)
        deps.discard(name)
        graph[name] = {d for d in deps if d in files or d == "rvs"}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.remove(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def stage(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "rvs"


def layer(module: str) -> int:
    s = stage(module)
    for i, names in enumerate(LAYERS):
        if s in names:
            return i
    raise AssertionError(f"{module}: stage {s!r} is in no layer of tests/test_layout.py (add it where it belongs)")


def layering_violations(graph: dict[str, set[str]]) -> list[str]:
    bad = []
    for mod, deps in graph.items():
        if mod == "rvs":
            continue
        for dep in deps:
            if dep == "rvs" or stage(dep) == stage(mod):
                continue
            if layer(dep) >= layer(mod):
                bad.append(f"{mod} imports {dep} ({stage(dep)} is not below {stage(mod)})")
    return sorted(bad)


def test_no_import_cycle_in_rvs():
    graph = import_graph()
    assert len(graph) > 50 and "rvs.video.api" in graph and "rvs.gallery.build" in graph  # it read the package
    assert cycles(graph) == []


def test_each_stage_imports_only_the_stages_before_it():
    assert layering_violations(import_graph()) == []


def test_the_checks_catch_a_cycle_and_an_upward_import(tmp_path):
    """The two checks above on a small package with a lazy-import cycle and a stage importing the app."""
    pkg = tmp_path / "rvs"
    (pkg / "video").mkdir(parents=True)
    (pkg / "app").mkdir()
    for f in ("__init__.py", "video/__init__.py", "app/__init__.py"):
        (pkg / f).write_text('"""x"""\n')
    (pkg / "video" / "api.py").write_text("from rvs.video.frames import search\n")
    (pkg / "video" / "frames.py").write_text("def search():\n    from rvs.video import api\n")
    (pkg / "app" / "service.py").write_text("from rvs.video.api import search\n")
    (pkg / "video" / "results.py").write_text("from rvs.app import service\n")
    graph = import_graph(pkg)
    assert cycles(graph) == [["rvs.video.api", "rvs.video.frames"]]
    assert layering_violations(graph) == ["rvs.video.results imports rvs.app.service (app is not below video)"]


@pytest.mark.parametrize("path", sorted(PACKAGE.rglob("*.py")), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_every_module_says_what_it_does(path):
    assert ast.get_docstring(ast.parse(path.read_text())), f"{path.relative_to(PROJECT_ROOT)} has no module docstring"


def test_the_app_starts_listening_without_the_face_models():
    """Importing app.py loads no torch, MTCNN, OpenCV or Annoy: the page answers while the models load
    in the background (bench/space.py page_answers_seconds; a starter-gallery import once pulled torch
    in through the gallery builder and doubled the import time)."""
    import subprocess
    import sys

    code = "import sys, app; print([m for m in ('torch', 'facenet_pytorch', 'cv2', 'annoy') if m in sys.modules])"
    p = subprocess.run([sys.executable, "-c", code], cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr[-800:]
    assert p.stdout.strip().splitlines()[-1] == "[]"
