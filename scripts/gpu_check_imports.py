"""Which third-party modules the stages' code paths import (read from the source, lazy
imports too), which distributions those are, and which of them the GPU image lacks: the
requirement gaps the dry run reports and the import blocker a smoke run uses to meet the
image's gaps here."""
from __future__ import annotations

import ast
import importlib.metadata as metadata
import re
import sys
from pathlib import Path
from typing import Optional

from gpu_check_plan import IMAGE_PACKAGES, MODULE_DISTRIBUTIONS, ROOT, WHEELS
from gpu_check_wheels import normalise


def _package_inits(module: str) -> list[Path]:
    """The __init__.py of every package above ``module``: importing engine.models runs
    engine/__init__.py first (which registers the operators, and so imports kornia)."""
    parts = module.split(".")
    inits = (ROOT.joinpath(*parts[:i], "__init__.py") for i in range(1, len(parts)))
    return [p for p in inits if p.is_file()]


def _module_file(module: str) -> Optional[Path]:
    parts = module.split(".")
    for candidate in (ROOT.joinpath(*parts).with_suffix(".py"), ROOT.joinpath(*parts, "__init__.py")):
        if candidate.is_file():
            return candidate
    return None


def _imports(tree: ast.Module):
    """(module names, at module level?) for every import statement in a parsed file."""
    def visit(node, top: bool):
        for child in ast.iter_child_nodes(node):
            inner = top and not isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
            if isinstance(child, (ast.Import, ast.ImportFrom)):
                yield child, top
            yield from visit(child, inner)
    yield from visit(tree, True)


def stage_imports(entries: list[str], test_files: list[Path]) -> dict[str, set[str]]:
    """Third-party top-level modules imported (anywhere in the file, lazily too) by the
    netbend modules that ``entries`` and ``test_files`` load: module -> files. netbend's own
    modules are followed where they are imported at module level (what importing loads),
    and from the test files at any level (the tests run those functions)."""
    own = {"engine", "live", "shaders", "presets", "tests", "conftest"}
    stdlib = set(sys.stdlib_module_names)
    seen: set[Path] = set()
    tests = {ROOT / "tests" / "conftest.py", *test_files}
    todo = [f for e in entries for f in (_module_file(e), *_package_inits(e)) if f] + list(tests)
    found: dict[str, set[str]] = {}
    while todo:
        path = todo.pop()
        if path in seen:
            continue
        seen.add(path)
        for node, top in _imports(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif node.level == 0:
                names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
            else:
                pkg = list(path.relative_to(ROOT).parent.parts)  # the package this file is in
                pkg = pkg[:len(pkg) - (node.level - 1)]
                names = [".".join([*pkg, node.module])] if node.module else [".".join([*pkg, a.name])
                                                                             for a in node.names]
            for name in names:
                top_name = name.split(".")[0]
                if top_name in own:
                    target = _module_file(name)
                    if target is not None and (top or path in tests):
                        todo += [target, *_package_inits(name)]
                elif top_name not in stdlib and top_name != "__future__":
                    found.setdefault(top_name, set()).add(str(path.relative_to(ROOT)))
    return found


def distribution_of(module: str, installed: dict[str, list[str]]) -> str:
    if module in MODULE_DISTRIBUTIONS:
        return MODULE_DISTRIBUTIONS[module]
    dists = installed.get(module)
    return normalise(dists[0]) if dists else normalise(module)


def requirement_gaps() -> list[str]:
    """Requirements (non-extra) of the carried wheels, as installed here, that are neither
    in the image nor carried."""
    carried = {normalise(n) for n in WHEELS}
    gaps = []
    for name in WHEELS:
        try:
            requires = metadata.requires(name) or []
        except metadata.PackageNotFoundError:
            continue  # not installed here: its wheel's own metadata is read by pip there
        for req in requires:
            if "extra ==" in req or 'python_version >= "3.15"' in req:
                continue
            dep = normalise(re.split(r"[ ;<>=!~\[(]", req, maxsplit=1)[0])
            if dep not in IMAGE_PACKAGES and dep not in carried:
                gaps.append(f"{name} requires {dep}, which the image lacks and gpu-check does not carry")
    return gaps


BLOCKER = """# written by scripts/gpu-check --smoke: modules the GPU image lacks and gpu-check does not
# carry are not found, as they would not be there (find_spec answers None, so libraries that
# probe for optional packages see them missing too)
import sys
from importlib.abc import MetaPathFinder
from importlib.machinery import PathFinder

BLOCKED = frozenset({blocked!r})


class ImageFilter(MetaPathFinder):
    def __init__(self, inner):
        self.inner = inner

    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            return None
        return self.inner.find_spec(name, path, target)

    def invalidate_caches(self):
        self.inner.invalidate_caches()

    def find_distributions(self, *args, **kwargs):  # importlib.metadata asks the path finder too
        return self.inner.find_distributions(*args, **kwargs)


sys.meta_path[:] = [ImageFilter(f) if f is PathFinder else f for f in sys.meta_path]
"""


def requirement_closure(names: set[str]) -> set[str]:
    """``names`` and what they require (no extras), as installed here: the image's
    packages bring their own requirements there, whatever versions they are here."""
    done, todo = set(), list(names)
    while todo:
        name = todo.pop()
        if name in done:
            continue
        done.add(name)
        try:
            requires = metadata.requires(name) or []
        except metadata.PackageNotFoundError:
            continue
        for req in requires:
            if "extra ==" not in req:
                todo.append(normalise(re.split(r"[ ;<>=!~\[(]", req, maxsplit=1)[0]))
    return done


def image_blocker(folder: Path) -> Path:
    """A folder with a sitecustomize.py that makes the top-level modules of every
    distribution installed here that is neither in the GPU image nor carried fail to
    import, so a smoke run here meets the missing packages the device would meet."""
    allowed = requirement_closure(IMAGE_PACKAGES | {normalise(n) for n in WHEELS}) | {"netbend"}
    blocked = sorted(module for module, dists in metadata.packages_distributions().items()
                     if not any(normalise(d) in allowed for d in dists) and module.isidentifier())
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "sitecustomize.py").write_text(BLOCKER.format(blocked=blocked))
    return folder
