"""The schema of fst's metadata: the ``"fst"`` entry of a checkpoint and an artefact's ``fst.json``.

Both come from files anyone may have crafted. Before any field is used (printed, compared, dumped
to JSON, counted), the whole value is bounded plain data (`fst.untrusted.plain_data`) and each
field fst reads has the type and range fst writes: a step of 10^5000 or a bool for an integer is
one line naming the file and the field, not a traceback. Fields fst does not know pass (a later fst
may add some), within the same bounds. The network config is checked by its own rules
(`fst.artefacts.checkpoint.net_config`).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from typing import Any

from fst.core.errors import FstError
from fst.untrusted.plain_data import check_plain, describe

MAX_STEP = 2**63 - 1  # a torch int64 step counter
MAX_NAME = 4096  # style names, versions, file names, descriptions: a line, not a document
SHA256 = re.compile(r"[0-9a-f]{64}")


def _text(value: Any) -> bool:
    return type(value) is str and len(value) <= MAX_NAME


def _step(value: Any) -> bool:
    return type(value) is int and 0 <= value <= MAX_STEP


def _names(value: Any) -> bool:
    return type(value) is list and all(_text(x) and x for x in value)


def _range(value: Any) -> bool:
    return (type(value) is list and len(value) == 2
            and all(type(x) in (int, float) and math.isfinite(x) for x in value))


# field -> (the test, what it says a value must be)
FIELDS: dict[str, tuple[Callable[[Any], bool], str]] = {
    "format": (lambda v: type(v) is int or _text(v), "an integer or a format name"),
    "fst_export": (lambda v: type(v) is int and 0 <= v <= MAX_STEP, "a non-negative integer"),
    "global_step": (_step, "an integer from 0 to 2^63-1"),
    "styles": (_names, "a list of non-empty names"),
    "style_name": (lambda v: v is None or type(v) is str, "a name"),  # all styles' names joined: any length
    "style_loss": (lambda v: v is None or _text(v), "a name"),
    "weights_sha256": (lambda v: type(v) is str and SHA256.fullmatch(v) is not None, "64 hex digits"),
    "channels_last": (lambda v: type(v) is bool, "true or false"),
    "quantize": (lambda v: v is None or _text(v), "a short text"),
    "quant_sha256": (lambda v: type(v) is str and SHA256.fullmatch(v) is not None, "64 hex digits"),
    "input_range": (_range, "two finite numbers"),
    "output_range": (_range, "two finite numbers"),
    **{k: (lambda v: v is None or _text(v), "a short text") for k in (
        "version", "precision", "dtype", "trained_with_fst", "fst_version", "torch_version", "source",
        "input", "output", "device")},
}


def check_metadata(meta: Any, origin: str, what: str = "fst metadata") -> dict[str, Any]:
    """`meta` if it is a dict of bounded plain data whose known fields have fst's types and ranges."""
    check_plain(meta, origin, what)
    if not isinstance(meta, dict) or not all(isinstance(k, str) for k in meta):
        raise FstError(f"{origin}: its {what} is a {type(meta).__name__}, not a dict of named fields")
    for field, (ok, wanted) in FIELDS.items():
        if field in meta and not ok(meta[field]):
            raise FstError(f"{origin}: its {what} has a {field} that is not {wanted}: {describe(meta[field])}")
    return meta
