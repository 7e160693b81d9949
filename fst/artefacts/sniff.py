"""What kind of fst file a path is, from names only (a zip's member list, the suffix): nothing is
loaded. Reading a checkpoint (`fst.artefacts.checkpoint`) and an artefact (`fst.artefacts.exported`)
both ask it first."""

from __future__ import annotations

import zipfile
from pathlib import Path

from fst.artefacts import compiled
from fst.untrusted.torch_files import bounded_directory

KINDS = {"torchscript": "a TorchScript model", "export": "a torch.export model", "onnx": "an ONNX model",
         "aoti": "an AOTInductor package"}


def sniff_format(path: str | Path) -> str | None:
    """'torchscript', 'export', 'onnx', 'checkpoint' (a torch.save file), or None if none of them.
    Only names are looked at (a zip's member list, the suffix): nothing is loaded."""
    path = Path(path)
    if zipfile.is_zipfile(path):
        bounded_directory(path, str(path), "model file")  # before zipfile reads a record per member
        try:
            with zipfile.ZipFile(path) as z:
                names = z.namelist()
        except (zipfile.BadZipFile, OSError, EOFError, ValueError):
            return None
        if compiled.is_package(names):
            return "aoti"
        if any(n.endswith("/constants.pkl") or "/code/" in n for n in names):
            return "torchscript"
        if any(n.split("/")[-1] in ("serialized_exported_program.json", "archive_format") for n in names):
            return "export"
        if any(n.endswith("/data.pkl") for n in names):
            return "checkpoint"
        return None
    if path.suffix.lower() == ".onnx":
        return "onnx"
    return None
