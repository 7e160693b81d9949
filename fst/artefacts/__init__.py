"""What training leaves and inference reads: checkpoints (written whole, read as data), exported
models in every format, AOTInductor packages."""
