"""Run import-linter on edgedet's layer contract (pyproject.toml, [tool.importlinter]).

edgedet is one namespace spread over several top-level folders (pyproject `package-dir`:
nas/, kernels/, exporters/, profiles/, bench/ map into `edgedet.*`), which import-linter's
graph builder cannot follow: it scans one folder per package. So the .py files are first
assembled into one `edgedet/` tree in a temporary folder, and lint-imports runs there in a
Python that does not load the editable install's import hook (`-S`, site-packages on PYTHONPATH).

Usage: python .ci/lint_imports.py   (exit status: lint-imports's)
"""

from __future__ import annotations

import os
import shutil
import site
import subprocess
import sys
import tempfile
from pathlib import Path

import tomllib

ROOT = Path(__file__).resolve().parent.parent


def assemble(dest: Path) -> None:
    """Copy every mapped package folder's .py files into dest/edgedet/…"""
    cfg = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    mapping = cfg["package-dir"]
    mapped_elsewhere = {other.split(".")[1] for other in mapping if other != "edgedet"}
    for package, folder in sorted(mapping.items(), key=lambda kv: kv[0].count(".")):
        target = dest.joinpath(*package.split("."))
        src = ROOT / folder
        for path in src.rglob("*.py"):
            rel = path.relative_to(src)
            if rel.parts[0] in {".venv", "build"} or any(p.startswith(".") for p in rel.parts):
                continue
            if package == "edgedet" and rel.parts[0] in mapped_elsewhere:
                continue
            out = target / rel
            out.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, out)


def lint(view: Path, capture: bool = False) -> subprocess.CompletedProcess:
    """lint-imports over an assembled tree `view` (which holds edgedet/)."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(view), *site.getsitepackages()]))
    cmd = [sys.executable, "-S", "-c", "import sys; from importlinter.cli import lint_imports_command as c; "
           "sys.exit(c())", str(ROOT / "pyproject.toml"), "--no-cache"]
    return subprocess.run(cmd, env=env, cwd=view, capture_output=capture, text=True)


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="edgedet-imports-") as tmp:
        assemble(Path(tmp))
        return lint(Path(tmp)).returncode


if __name__ == "__main__":
    sys.exit(main())
