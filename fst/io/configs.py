"""Config files (YAML) read as what they are: a page of UTF-8 text holding a few plain values.
jsonargparse and yaml would read any file whole and fail on other bytes with a traceback that names
no file; and YAML's aliases let 1 kB of text stand for 10^9 values (a "billion laughs"), which
yaml builds cheaply as shared lists but everything after it (checks, messages, dumps) expands.
`check_yaml` refuses that from the parsed node graph, before anything is built from it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from fst.core.errors import FstError

MAX_CONFIG_BYTES = 1 << 20  # the largest config fst ships is 3 KB
MAX_YAML_VALUES = 100_000  # values once every alias is expanded; fst's largest config holds ~80
MAX_YAML_DEPTH = 64  # levels of nesting; fst's configs nest 5 (trainer.logger.init_args.x)
_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def read_config_text(path: Path) -> str:
    """The text of config `path`; one FstError naming it when it is unreadable, over
    `MAX_CONFIG_BYTES` or not UTF-8."""
    try:
        with open(path, "rb") as f:
            raw = f.read(MAX_CONFIG_BYTES + 1)
    except FileNotFoundError:
        raise FstError(f"{path}: config not found") from None
    except OSError as e:
        raise FstError(f"{path}: cannot read the config: {e.strerror or e}") from None
    if len(raw) > MAX_CONFIG_BYTES:
        raise FstError(f"{path}: over {MAX_CONFIG_BYTES >> 20} MiB, not a config (YAML)")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise FstError(f"{path}: not UTF-8 text at byte {e.start} (a config is YAML in UTF-8; "
                       "save it as UTF-8, e.g. iconv -f UTF-16 -t UTF-8)") from None


def check_yaml(text: str, name: object) -> None:
    """Refuse YAML `text` whose aliases expand past `MAX_YAML_VALUES` values, that nests deeper than
    `MAX_YAML_DEPTH` or whose alias holds itself: one FstError naming `name`. Reads the node graph
    yaml composes (its size is the text's: an alias is one more reference to a node), never the
    values it stands for. Syntax errors are left to the loader that follows (yaml.YAMLError)."""
    loader = _LOADER(text)
    try:
        root = loader.get_single_node()
    finally:
        loader.dispose()
    if root is not None:
        _check_nodes(root, name)


def load_yaml(text: str, name: object) -> Any:
    """YAML `text` (from `name`) as plain values, checked by `check_yaml` first; FstError if not YAML."""
    try:
        check_yaml(text, name)
        return yaml.load(text, Loader=_LOADER)
    except (yaml.YAMLError, RecursionError) as e:
        raise FstError(f"{name}: not YAML ({' '.join(str(e).split())})") from None


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.SequenceNode):
        return node.value
    if isinstance(node, yaml.MappingNode):
        return [n for pair in node.value for n in pair]
    return []


def _check_nodes(root: yaml.Node, name: object) -> None:
    # Post-order without recursion; each node's expanded size and height are counted once, so a
    # shared node costs one visit however often aliases repeat it.
    size: dict[int, int] = {}
    height: dict[int, int] = {}
    open_nodes: set[int] = set()  # the ancestors of the node at hand
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, children_done = stack.pop()
        key = id(node)
        if children_done:
            open_nodes.discard(key)
            kids = _children(node)
            size[key] = 1 + sum(size[id(k)] for k in kids)
            height[key] = 1 + max((height[id(k)] for k in kids), default=0)
            if size[key] > MAX_YAML_VALUES:
                raise FstError(f"{name}: its YAML aliases expand to more than {MAX_YAML_VALUES} values "
                               "(a billion laughs?); refused before expanding them")
            if height[key] > MAX_YAML_DEPTH:
                raise FstError(f"{name}: its YAML nests more than {MAX_YAML_DEPTH} levels deep")
        elif key in open_nodes:
            raise FstError(f"{name}: a YAML alias inside its own anchor (a value that holds itself)")
        elif key not in size:
            open_nodes.add(key)
            stack.append((node, True))
            stack.extend((k, False) for k in _children(node))
