"""The package's shape, as docs/architecture.md draws it: one folder per layer or concern, each folder
importing only folders of lower layers, no import cycle between modules (lazy imports included: a
cycle hidden in a function body still couples two files both ways), no file over 400 lines, and the
import paths of earlier releases still reaching the same objects."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
FST = ROOT / "fst"
ARCHITECTURE = ROOT / "docs" / "architecture.md"
MAX_LINES = 400
TOP = "(top)"  # fst/*.py: the entry point and the old import paths


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(FST.rglob("*.py"))}


def imports(path: Path, known: set[str]) -> set[str]:
    """The fst modules a file imports anywhere in it (``from fst.x import y`` is module fst.x.y
    where that is a module, else fst.x)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "fst":
            for alias in node.names:
                sub = f"{node.module}.{alias.name}"
                found.add(sub if sub in known else node.module)
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.split(".")[0] == "fst"}
    return found - {module_name(path)} - {"fst"}


def folder(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and (FST / parts[1]).is_dir() else TOP


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    done: set[str] = set()

    def visit(node: str, path: list[str]) -> list[str] | None:
        if node in path:
            return path[path.index(node):] + [node]
        if node in done:
            return None
        for dep in sorted(graph.get(node, ())):
            cycle = visit(dep, [*path, node])
            if cycle:
                return cycle
        done.add(node)
        return None

    return next((c for c in (visit(n, []) for n in sorted(graph)) if c), None)


def layers() -> dict[str, int]:
    """Each folder's layer, from the table in docs/architecture.md (the definition): rows of
    ``| layer | `folder/` | what it holds |``."""
    found: dict[str, int] = {}
    for line in ARCHITECTURE.read_text().splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 3 and cells[0].isdigit():
            for name in cells[1].split(","):
                name = name.strip().strip("`")
                found[TOP if name == "fst/*.py" else name.rstrip("/")] = int(cells[0])
    return found


def module_graph() -> dict[str, set[str]]:
    found = modules()
    return {name: imports(path, set(found)) for name, path in found.items()}


def test_find_cycle_finds_one() -> None:
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_no_import_cycle_between_modules_or_folders() -> None:
    graph = module_graph()
    assert "fst.models.vgg_arch" in graph["fst.models.weights"], "the import parser lost an import"
    assert find_cycle(graph) is None
    folders: dict[str, set[str]] = {}
    for module, deps in graph.items():
        folders.setdefault(folder(module), set()).update(folder(d) for d in deps if folder(d) != folder(module))
    assert find_cycle(folders) is None


def test_every_folder_has_one_layer_and_imports_only_lower_layers() -> None:
    table = layers()
    present = {folder(m) for m in modules()}
    assert set(table) == present, (f"docs/architecture.md lists {sorted(set(table) - present)} "
                                   f"and misses {sorted(present - set(table))}")
    wrong = [f"{m} ({folder(m)}, layer {table[folder(m)]}) imports {d} ({folder(d)}, layer {table[folder(d)]})"
             for m, deps in module_graph().items() for d in deps
             if folder(d) != folder(m) and table[folder(d)] >= table[folder(m)]]
    assert not wrong, wrong


def test_layers_are_checked_for_real() -> None:
    """The rule catches an upward import: models (layer 3) importing training would be refused."""
    table = layers()
    assert table["models"] < table["training"] and table["core"] < table["io"] and table[TOP] == max(table.values())


def test_no_file_over_400_lines() -> None:
    files = [*FST.rglob("*.py"), *(ROOT / "tests").rglob("*.py"), *(ROOT / "scripts").glob("*.py")]
    long = {str(p.relative_to(ROOT)): n for p in files if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert len(files) > 60 and not long, long


@pytest.mark.parametrize(("old", "new"), [("fst.transformer", "fst.models.transformer"),
                                          ("fst.module", "fst.training.module")])
def test_old_module_paths_are_the_moved_modules(old: str, new: str) -> None:
    assert importlib.import_module(old) is importlib.import_module(new)


def test_old_public_names_reach_the_same_objects() -> None:
    from fst.data import ShardDataModule
    from fst.data.datamodule import ShardDataModule as moved
    from fst.losses import REGISTRY, get, list_losses, style
    from fst.models.transformer import TransformerNet as moved_net
    from fst.module import StyleTransferModule
    from fst.training.module import StyleTransferModule as moved_module
    from fst.transformer import TransformerNet

    assert ShardDataModule is moved and StyleTransferModule is moved_module and TransformerNet is moved_net
    assert (REGISTRY, get, list_losses) == (style.REGISTRY, style.get, style.list_losses)
    assert set(style.__all__) >= {"list_losses", "get", "register", "gram", "mean_std", "tv_loss"}
