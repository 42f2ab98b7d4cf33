"""Entry point of the `edgedet` command. Verbs live in their own modules and register
themselves; imports of heavy stacks stay inside the commands so `--help` is quick."""

from __future__ import annotations

import importlib
import sys

import typer

from edgedet.errors import EdgedetError

app = typer.Typer(
    name="edgedet",
    help="Search, export and benchmark vision models for edge devices. Every latency printed "
    "says whether it was measured (device, runtime, threads, batch) or predicted (profile, error).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

# Each module defines register(app). Add a verb by adding its module here.
COMMAND_MODULES = [
    "edgedet.cli.models_cmd",
    "edgedet.cli.train_cmd",
    "edgedet.cli.reproduce_cmd",
    "edgedet.cli.quickstart_cmd",
    "edgedet.cli.bench_cmd",
    "edgedet.cli.hostinfo_cmd",
    "edgedet.cli.export_cmd",
    "edgedet.cli.search_cmd",
    "edgedet.cli.predict_cmd",
    "edgedet.cli.profile_cmd",
    "edgedet.cli.eval_cmd",
    "edgedet.cli.detect_cmd",
    "edgedet.cli.convert_cmd",
    "edgedet.cli.adapt_cmd",
    "edgedet.cli.report_cmd",
]

for _mod in COMMAND_MODULES:
    importlib.import_module(_mod).register(app)


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; an EdgedetError becomes one line on stderr and exit code 2.

    Usage errors, --help and Ctrl-C are handled by typer's standalone mode (its SystemExit
    carries the exit code); anything else is a bug and keeps its traceback."""
    try:
        app(args=argv, standalone_mode=True)
    except EdgedetError as e:
        print(f"edgedet: error: {e}", file=sys.stderr)
        return 2
    except SystemExit as e:
        return e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
