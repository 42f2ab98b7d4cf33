"""File digests: the one sha256 of a file's bytes that manifests, bench targets, checkpoint
records and the quickstart's step records all write and compare."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Protocol

_BLOCK = 1 << 20  # read 1 MiB at a time: model files can be larger than memory wants


class Hash(Protocol):
    """A hashlib object (what `update_from_file` feeds)."""

    def update(self, data: bytes, /) -> None: ...


def update_from_file(h: Hash, path: str | Path) -> None:
    """Feed the bytes of `path` into the hash object `h`, block by block."""
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(_BLOCK), b""):
            h.update(block)


def sha256_file(path: str | Path) -> str:
    """The hex sha256 of the bytes of `path`."""
    h = hashlib.sha256()
    update_from_file(h, path)
    return h.hexdigest()
