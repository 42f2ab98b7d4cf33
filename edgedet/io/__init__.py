"""File I/O at the edges: atomic writes (`atomic`), file digests (`digest`: the one sha256
of a file) and checkpoints (`checkpoint`): one format, one RNG-state format, loaded with
`weights_only=True` and one clear error line."""
