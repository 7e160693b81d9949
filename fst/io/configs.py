"""Config files (YAML) read as what they are: a page of UTF-8 text. jsonargparse and yaml would read
any file whole and fail on other bytes with a traceback that names no file."""

from __future__ import annotations

from pathlib import Path

from fst.core.errors import FstError

MAX_CONFIG_BYTES = 1 << 20  # the largest config fst ships is 3 KB


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
