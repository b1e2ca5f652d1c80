"""The backup package's layout: one module per concern, no import cycles,
each module importable on its own, and no external command run except
through the command runner."""

from __future__ import annotations

import ast
import importlib
import pathlib
import subprocess
import sys

import pytest

from ansible_collections.warden.fleet.plugins.module_utils import backup

PACKAGE = pathlib.Path(backup.__file__).parent
MODULES = sorted(p.stem for p in PACKAGE.glob("*.py") if p.stem != "__init__")
# the order of "Code layout" in docs/backup.md: each module imports only from those before it
LAYERS = [
    "common",
    "runner",
    "commands",
    "plan",
    "scan",
    "dumps",
    "envfile",
    "zfs",
    "archive",
    "lock",
    "tarstream",
    "manifest",
    "extract",
    "retention",
    "restore",
    "job",
    "listing",
    "cli",
]


def imports_of(name):
    tree = ast.parse((PACKAGE / f"{name}.py").read_text())
    return {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.level == 1}


def test_no_import_cycles():
    graph = {name: imports_of(name) for name in MODULES}
    done, path = set(), []

    def visit(name):
        if name in path:
            pytest.fail("import cycle: " + " -> ".join([*path[path.index(name) :], name]))
        if name in done:
            return
        path.append(name)
        for dep in sorted(graph[name]):
            assert dep in graph, f"{name} imports .{dep}, which is not in the package"
            visit(dep)
        path.pop()
        done.add(name)

    for name in MODULES:
        visit(name)


def test_modules_import_only_earlier_layers():
    assert sorted(LAYERS) == MODULES, "a new module gets its place in LAYERS and in docs/backup.md"
    for name in MODULES:
        later = [dep for dep in imports_of(name) if LAYERS.index(dep) >= LAYERS.index(name)]
        assert later == [], f"{name} imports {later}, which come after it"


@pytest.mark.parametrize("name", MODULES)
def test_module_imports_alone(name):
    """In a fresh interpreter, importing one module first works (no hidden order)."""
    code = f"import importlib; importlib.import_module({backup.__name__ + '.' + name!r})"
    env = {"PYTHONPATH": ":".join(sys.path)}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False, env=env)
    assert proc.returncode == 0, proc.stderr


@pytest.mark.parametrize("name", [n for n in MODULES if n != "runner"])
def test_commands_only_through_the_runner(name):
    tree = ast.parse((PACKAGE / f"{name}.py").read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "subprocess":
            assert node.attr not in ("run", "Popen", "call", "check_call", "check_output"), (
                f"{name}.py calls subprocess.{node.attr}: go through a CommandRunner in commands.py"
            )


def test_package_reexports_every_module():
    for name in MODULES:
        assert importlib.import_module(f"{backup.__name__}.{name}")
