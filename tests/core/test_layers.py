"""Layers only point down (docs/development.md "Layers"): an AST scan of every module's
imports, function-local ones included, fails on an import that runs back up.

foundation -> formats, readers -> layout -> boot -> guest -> inspection (the pipeline)
-> diagnose, validate, boottest -> services (scan, convert, backends, rbd scan, doctor)
-> api (diskkit/__init__) -> cli. ``if TYPE_CHECKING:`` imports are for types only and are
allowed to point anywhere but into cli.
"""

from __future__ import annotations

import ast
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2] / "diskkit"

#: Layer of each module, by the longest dotted prefix that names it.
LAYERS: dict[str, int] = {
    "diskkit.errors": 0, "diskkit.exitcodes": 0, "diskkit.findings": 0, "diskkit.runner": 0,
    "diskkit.target": 0, "diskkit.readers.base": 0, "diskkit.formats.registry": 0,
    "diskkit.guestpath": 0, "diskkit.units": 0, "diskkit.jsonable": 0,
    "diskkit.formats": 1, "diskkit.readers": 1, "diskkit.disk": 1, "diskkit.rbd": 1,
    "diskkit.rbd.chain": 1,
    "diskkit.layout": 2,
    "diskkit.boot": 3,
    "diskkit.guest": 4,
    "diskkit.pipeline": 5,
    "diskkit.diagnose": 6, "diskkit.validate": 6, "diskkit.boottest": 6,
    "diskkit.scan": 7, "diskkit.convert": 7, "diskkit.backends": 7, "diskkit.rbd.scan": 7,
    "diskkit.doctor": 7, "diskkit.services": 7, "diskkit.verify": 7,
    "diskkit.guest.fs.service": 7,  # cat/ls: reads through a mount session when it must
    "diskkit": 8, "diskkit.api": 8,
    "diskkit.cli": 9, "diskkit.__main__": 9,
}
NAMES = {0: "foundation", 1: "formats/readers", 2: "layout", 3: "boot", 4: "guest",
         5: "inspection", 6: "diagnose/validate/boottest", 7: "services", 8: "api", 9: "cli"}


def layer(module: str) -> int:
    """The layer of a dotted module name (its longest known prefix)."""
    parts = module.split(".")
    for n in range(len(parts), 0, -1):
        got = LAYERS.get(".".join(parts[:n]))
        if got is not None:
            return got
    raise AssertionError(f"{module}: in no layer; add it to LAYERS in {__file__}")


def module_name(path: pathlib.Path) -> str:
    rel = path.relative_to(ROOT.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _type_checking(node: ast.If) -> bool:
    t = node.test
    return (isinstance(t, ast.Name) and t.id == "TYPE_CHECKING") or (
        isinstance(t, ast.Attribute) and t.attr == "TYPE_CHECKING")


def imports(path: pathlib.Path, name: str | None = None) -> list[tuple[int, str, bool]]:
    """(line, imported module, for types only) of every import in the file, at any depth;
    ``name`` is the file's module name (default: from its place under diskkit/)."""
    name = name or module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    tree = ast.parse(path.read_text(), str(path))
    typing_only: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and _type_checking(node):
            for sub in node.body:
                typing_only.update(id(n) for n in ast.walk(sub))
    out: list[tuple[int, str, bool]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                up = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*up, base] if base else up)
            # "from diskkit.formats import registry" imports the submodule.
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in _MODULES else base
                       for a in node.names]
        else:
            continue
        for t in targets:
            if t == "diskkit" or t.startswith("diskkit."):
                out.append((node.lineno, t, id(node) in typing_only))
    return out


_FILES = sorted(ROOT.rglob("*.py"))
_MODULES = {module_name(p) for p in _FILES}


def violations() -> list[str]:
    """Every import that points up, as ``file:line: a (layer) -> b (layer)``."""
    bad = []
    for path in _FILES:
        me = module_name(path)
        mine = layer(me)
        for line, target, types_only in imports(path):
            theirs = layer(target)
            if types_only and theirs < 9:
                continue
            if theirs > mine:
                bad.append(f"{path.relative_to(ROOT.parent)}:{line}: {me} ({NAMES[mine]}) "
                           f"imports {target} ({NAMES[theirs]})")
    return bad


def test_every_module_has_a_layer() -> None:
    for path in _FILES:
        layer(module_name(path))


def test_imports_point_down() -> None:
    bad = violations()
    assert not bad, "imports that point up:\n" + "\n".join(bad)


#: Packages of one layer that must not import each other (each stays unaware of the other;
#: what needs both is a service above them, e.g. diskkit.verify for diagnose --verify).
PEERS = ("diskkit.diagnose", "diskkit.validate", "diskkit.boottest")


def _package(module: str) -> str:
    """The unit a module belongs to: its longest prefix in LAYERS (diskkit.readers.base and
    diskkit.readers are two units: the foundation's Reader is not the readers package)."""
    parts = module.split(".")
    for n in range(len(parts), 0, -1):
        if ".".join(parts[:n]) in LAYERS:
            return ".".join(parts[:n])
    return module


def test_peers_do_not_import_each_other() -> None:
    bad = []
    for path in _FILES:
        me = _package(module_name(path))
        for line, target, types_only in imports(path):
            other = _package(target)
            if me in PEERS and other in PEERS and other != me and not types_only:
                bad.append(f"{path.relative_to(ROOT.parent)}:{line}: {me} imports {target}")
    assert not bad, "peers import each other:\n" + "\n".join(bad)


def test_no_import_cycles_between_packages() -> None:
    """diskkit.X never imports diskkit.Y while diskkit.Y imports diskkit.X (X, Y top-level
    packages or modules; imports for types only aside)."""
    edges: dict[str, set[str]] = {}
    for path in _FILES:
        me = _package(module_name(path))
        for _, target, types_only in imports(path):
            other = _package(target)
            if other != me and other != "diskkit" and not types_only:
                edges.setdefault(me, set()).add(other)
    cycles = sorted({tuple(sorted((a, b))) for a, bs in edges.items() for b in bs
                     if a in edges.get(b, set())})
    assert not cycles, f"packages importing each other: {cycles}"


#: Writes to stdout/stderr below cli/ that are allowed, with the reason.
STREAM_WRITERS = {
    # the DISKKIT_TEST_PAUSE_AT test hook announces where it paused (tests wait for it)
    "diskkit.backends.base",
    # TODO(perf): "stopped: removed the partial output" on Ctrl-C/SIGTERM; to move to cli/
    "diskkit.convert.engine",
}


def test_nothing_below_cli_prints() -> None:
    """print(), sys.stdout/sys.stderr, rich and typer are the cli's."""
    bad = []
    for path in _FILES:
        me = module_name(path)
        if layer(me) >= 8:
            continue
        tree = ast.parse(path.read_text(), str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and \
                    node.func.id == "print":
                bad.append(f"{path}:{node.lineno}: print()")
            if isinstance(node, ast.Attribute) and node.attr in ("stdout", "stderr") and \
                    isinstance(node.value, ast.Name) and node.value.id == "sys" and \
                    me not in STREAM_WRITERS:
                bad.append(f"{path}:{node.lineno}: sys.{node.attr}")
        for node in ast.walk(tree):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                    [node.module or ""]
                if any(n.split(".")[0] in ("rich", "typer") for n in names):
                    bad.append(f"{path}:{node.lineno}: imports {names[0]}")
    assert not bad, "output below the cli:\n" + "\n".join(bad)


@pytest.mark.parametrize("source, expect", [
    ("from diskkit.cli import output\n", "diskkit.cli.output"),
    ("def f():\n    from diskkit.boot import inspect_boot\n", "diskkit.boot"),
])
def test_the_scan_sees_imports(tmp_path: pathlib.Path, source: str, expect: str) -> None:
    """The scanner finds module-level and function-local imports (so it can fail)."""
    f = tmp_path / "probe.py"
    f.write_text(source)
    found = [t for _, t, _ in imports(f, "diskkit.layout.probe")]
    assert expect in found
    assert layer(expect) > layer("diskkit.layout")
