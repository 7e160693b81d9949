"""`fst stylize`: one forward pass per image (or tiles), with checkpoints or exported models."""
