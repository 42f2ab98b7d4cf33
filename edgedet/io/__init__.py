"""File I/O at the edges: atomic writes (`atomic`) and checkpoints (`checkpoint`): one
format, one RNG-state format, loaded with `weights_only=True` and one clear error line."""
