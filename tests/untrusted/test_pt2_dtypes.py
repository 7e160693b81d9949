"""A .pt2 whose weights are of a dtype fst's models never hold (float64, an integer) is refused in
one line that says which weight, which dtype, and what fst takes."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import pytest
import torch

from crafted import rewrite_zip, stylize_refused


def with_dtype(pt2: Path, out: Path, code: int, dtype: torch.dtype) -> Path:
    """`pt2` with every weight stored as `dtype` (torch.export's code `code`): its values converted,
    its layout config saying so, as torch.export writes a model of that dtype."""
    with zipfile.ZipFile(pt2) as z:
        config_name = next(n for n in z.namelist() if n.endswith("/data/weights/model_weights_config.json"))
        folder = config_name.rsplit("/", 1)[0] + "/"
        config = json.loads(z.read(config_name))
        change = {}
        for entry in config["config"].values():
            values = torch.frombuffer(bytearray(z.read(folder + entry["path_name"])), dtype=torch.float32)
            change[folder + entry["path_name"]] = values.to(dtype).numpy().tobytes()
            entry["tensor_meta"]["dtype"] = code
    change[config_name] = json.dumps(config).encode()
    return rewrite_zip(pt2, out, change)


@pytest.mark.parametrize(("code", "dtype", "name"), [(8, torch.float64, "float64"), (5, torch.int64, "int64")])
def test_a_pt2_of_another_dtype_says_what_is_wrong(code: int, dtype: torch.dtype, name: str, artefacts: dict[str, Path],
                                                   image: Path, tmp_path: Path, capsys) -> None:
    """Seen: `…: not a readable torch.export model (model_weights_config.json): 8`."""
    model = with_dtype(artefacts["export"], tmp_path / f"{name}.pt2", code, dtype)
    err = stylize_refused(model, image, capsys)
    assert f"{model}: refused: weight '" in err
    assert f"' is {name} (torch.export dtype code {code}); fst's models hold float32, float16 or bfloat16 weights" in err
