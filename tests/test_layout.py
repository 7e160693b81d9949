"""The package's shape: fst's modules import each other without a cycle, lazy imports included
(a cycle hidden in a function body still couples the two files both ways)."""

from __future__ import annotations

import ast
from pathlib import Path

FST = Path(__file__).resolve().parent.parent / "fst"


def imports(path: Path) -> set[str]:
    """The fst modules a file imports anywhere in it."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "fst":
            found |= {a.name for a in node.names} if node.module == "fst" else {node.module.split(".")[1]}
        elif isinstance(node, ast.Import):
            found |= {a.name.split(".")[1] for a in node.names if a.name.startswith("fst.")}
    return found - {path.stem}


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


def test_find_cycle_finds_one() -> None:
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_no_import_cycle_in_fst() -> None:
    graph = {p.stem: imports(p) for p in FST.glob("*.py")}
    assert "vgg_arch" in graph["weights"] and "weights" not in graph["vgg_arch"]
    assert find_cycle(graph) is None


ARCHITECTURE = FST.parent / "docs" / "architecture.md"


def layers() -> dict[str, int]:
    """Each module's layer, from the table in docs/architecture.md (the definition)."""
    found = {}
    for line in ARCHITECTURE.read_text().splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 3 and cells[0][:1].isdigit():
            found |= {name.strip(): int(cells[0].split()[0]) for name in cells[1].split(",")}
    return found


def test_every_module_is_in_one_layer_and_imports_only_its_own_or_lower_ones() -> None:
    table = layers()
    modules = {p.stem for p in FST.glob("*.py")} - {"__init__"}
    assert set(table) == modules, f"docs/architecture.md lists {sorted(set(table) - modules)} and misses {sorted(modules - set(table))}"
    upward = [f"{m} (layer {table[m]}) imports {d} (layer {table[d]})"
              for m in modules for d in imports(FST / f"{m}.py") if d in table and table[d] > table[m]]
    assert not upward, upward
