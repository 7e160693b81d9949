"""Files as data, never code: how fst reads checkpoints, exported models and weights files.

Such files come from anywhere, and torch's own loaders run what they carry: ``torch.export``'s
loader unpickles weights with ``weights_only=False``; a TorchScript archive holds code that runs on
load (``__setstate__``) and on every call, and that code can reach any registered op (torchvision's
``image.write_file`` writes files); onnxruntime follows an ONNX file's external-data paths to other
files. So fst hands no file to any of them. It reads:

- zip archives (``torch.save`` checkpoints and state dicts, TorchScript ``.pt``, ``torch.export``
  ``.pt2``): every member's CRC-32 is checked first, so flipped bytes are refused, never exported;
  pickles go through `DataUnpickler`, which resolves only tensor rebuilders, storage types, dtypes
  and plain containers (any other global, ``os.system`` say, is refused before it is imported), and
  tensors are built by fst from the raw storage bytes;
- the legacy (pre-zip) ``torch.save`` format the same way, without the CRCs it does not have;
- ``.pt2`` weights from their raw bytes and JSON layout (a pickled weight goes through
  `DataUnpickler`);
- ONNX: the initializers inside the protobuf; a tensor kept in another file is refused.

Files: `pickles` (the unpickler), `torch_files` (zip archives and `torch.save`'s formats),
`torchscript`, `torch_export` (``.pt2``) and `onnx_files`.

The callers check the tensors against the transformer config (`fst.artefacts.checkpoint.transformer_from_state`)
and run fst's own `TransformerNet`: an artefact's code and graph are never executed. An artefact
whose code or graph calls anything fst's exporter never writes (a custom op, a file op, a TorchScript
``__setstate__``) is refused as tampered, although fst would not run it.
"""
