"""The `edgedet` command: model listing, and one-line errors with exit code 2 for bad input."""

import json

import pytest
from conftest import CliResult

QUADRANETS = {f"quadranet{d}-{s}" for d in (25, 36) for s in ("xxs", "xs", "t", "s", "b")}
BASELINES = {"convnet", "skipnet", "swinnet", "hornet"}


def test_models_json_lists_family_and_baselines(edgedet_process):
    p = edgedet_process("models", "--json", timeout=300)
    assert p.returncode == 0, p.stderr
    rows = json.loads(p.stdout)
    by_name = {r["name"]: r for r in rows}
    assert QUADRANETS | BASELINES <= set(by_name)
    for r in rows:
        assert set(r) >= {"name", "params", "gflops"} and r["params"] > 0 and r["gflops"] > 0
    params = [by_name[n]["params"] for n in ("quadranet25-xxs", "quadranet25-t", "quadranet36-b")]
    assert params == sorted(params) and len(set(params)) == 3
    assert by_name["quadranet25-xxs"]["gflops"] < by_name["quadranet25-t"]["gflops"]


@pytest.mark.parametrize(
    "args,words",
    [
        (["train", "quadranet25-xxx", "--epochs", "1"], ["unknown model"]),
        (["train", "quadranet25-xxs", "--epochs", "0"], ["--epochs"]),
        (["train", "quadranet25-xxs", "--batch-size", "-4"], ["--batch-size"]),
        (["train", "quadranet25-xxs", "--img-size", "0"], ["--img-size"]),
        (["train", "quadranet25-xxs", "--lr", "0"], ["--lr"]),
        (["train", "quadranet25-xxs", "--data", "/no/such/folder"], ["no such folder"]),
        (["train", "quadranet-arch:/no/such/arch.json", "--epochs", "1"], ["arch file not found"]),
        (["reproduce", "memory", "--widths", "64,x"], ["--widths"]),
        (["reproduce", "memory", "--batch", "0"], ["--batch"]),
        (["quickstart", "--minutes", "0"], ["--minutes"]),
    ],
)
def test_bad_input_is_one_line_exit_2(args, words, tmp_path, cli):
    """In-process through the real entry point (`main` is what the console script runs)."""
    if args[0] == "train":
        args = [*args, "--out", str(tmp_path / "o")]
    cli(*args).assert_one_line_error(*words)


@pytest.mark.parametrize("args,words", [(["train", "no-such-model", "--epochs", "1"], ["unknown model"]),
                                        (["train", "quadranet25-xxs", "--lr", "-1"], ["--lr"])])
def test_bad_input_from_the_console_command(args, words, tmp_path, edgedet_process):
    p = edgedet_process(*args, "--out", str(tmp_path / "o"), timeout=300)
    CliResult(p.returncode, p.stdout, p.stderr).assert_one_line_error(*words)


def test_train_tiny_run(tmp_path, edgedet_process):
    arch = tmp_path / "a.json"
    arch.write_text(json.dumps({"schema_version": 1, "stem": {"kernel": 4, "stride": 4}, "stages": [
        {"width": 8, "stride": 1, "layers": [{"kernel": 3, "expansion": 2}]},
        {"width": 8, "stride": 2, "layers": ["skip"]}]}))
    out = tmp_path / "run"
    p = edgedet_process("train", f"quadranet-arch:{arch}", "--epochs", "1", "--batch-size", "8", "--img-size",
                        "16", "--train-size", "16", "--val-size", "8", "--threads", "1", "--out", str(out),
                        timeout=300)
    assert p.returncode == 0, p.stderr
    assert "val top-1" in p.stdout
    m = json.loads((out / "metrics.json").read_text())
    assert m["epochs_done"] == 1 and m["num_classes"] == 10


def _commands(group, path=()):
    """(path, click command) for every command under `group`, nested groups included."""
    for name, cmd in group.commands.items():
        yield (*path, name), cmd
        if hasattr(cmd, "commands"):
            yield from _commands(cmd, (*path, name))


def test_help_texts_survive_rich_markup():
    """Rich reads `[...]` in a help string as a style tag and drops it (once: "[default: X]")."""
    import typer
    from rich.text import Text

    from edgedet.cli.main import app

    eaten = []
    for path, cmd in _commands(typer.main.get_command(app)):
        for text in [cmd.help or ""] + [getattr(p, "help", None) or "" for p in cmd.params]:
            if Text.from_markup(text).plain != text:
                eaten.append(f"{' '.join(path)}: {text[:60]}")
    assert not eaten, eaten
