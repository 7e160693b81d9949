"""`fst` entry point: one command, many subcommands, each living in the module it is about.

Subcommands are imported lazily so `fst --help` stays fast and a missing optional dependency
of one subcommand cannot break the others.
"""

from __future__ import annotations

import importlib
import sys

from fst.core.errors import FstError, first_line
from fst.core.signals import Interrupted, handled

# name -> (module:function, one-line help). Each function takes argv (without the subcommand).
COMMANDS: dict[str, tuple[str, str]] = {
    "weights": ("fst.models.weights:main", "fetch or inspect the frozen VGG loss-network weights"),
    "losses": ("fst.losses.style:main", "list the registered style losses (family, cost, formula)"),
    "shards": ("fst.data.shards:main", "pack photos (COCO or any folder) into webdataset shards"),
    "fit": ("fst.training.fit:fit", "train a style network (LightningCLI; --config configs/X.yaml)"),
    "validate": ("fst.training.fit:validate", "run validation on a trained checkpoint (LightningCLI)"),
    "export": ("fst.artefacts.export:main", "export a trained transformer for single-pass inference"),
    "stylize": ("fst.stylize.command:main", "stylize images with a checkpoint or an exported model"),
    "sheet": ("fst.stylize.sheet:main", "a contact sheet: photos down, paintings across (a universal network)"),
    "compare": ("fst.study.command:main", "train and evaluate one model per style loss (the loss study)"),
    "flicker": ("fst.study.flicker_command:main", "measure how much stylized clips flicker against their input"),
}


def _usage() -> str:
    lines = ["usage: fst COMMAND [ARGS...]", "", "commands:"]
    lines += [f"  {name:<10} {help_}" for name, (_, help_) in COMMANDS.items()]
    lines += ["", "Run `fst COMMAND --help` for the options of one command."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    for stream in (sys.stdout, sys.stderr):  # a file name that is not UTF-8 holds lone surrogates,
        if getattr(stream, "errors", None) == "strict" and hasattr(stream, "reconfigure"):  # print them escaped
            stream.reconfigure(errors="backslashreplace")  # as Python escapes them on stderr
    if not argv or argv[0] in ("-h", "--help"):
        print(_usage())
        return 0 if argv else 2
    if argv[0] in ("-V", "--version"):
        from fst import __version__

        print(f"fst {__version__}")
        return 0
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        print(f"fst: error: unknown command {name!r} (choose from {', '.join(COMMANDS)})", file=sys.stderr)
        return 2
    module_name, func_name = COMMANDS[name][0].split(":")
    try:
        with handled():  # SIGTERM and SIGINT: one line and exit 128 + signal, no half-written file
            func = getattr(importlib.import_module(module_name), func_name)
            code = func(rest)
    except FstError as e:
        print(f"fst {name}: error: {e}", file=sys.stderr)
        return 2
    except OSError as e:  # the machine's answer (a full disk, a read-only folder): the user's to fix
        where = f"{e.filename}: " if e.filename else ""
        print(f"fst {name}: error: {where}{e.strerror or first_line(e)}", file=sys.stderr)
        return 2
    except Interrupted as e:
        print(f"fst {name}: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print(f"fst {name}: interrupted", file=sys.stderr)
        return 130
    return int(code or 0)


if __name__ == "__main__":
    sys.exit(main())
