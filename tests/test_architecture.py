"""The architecture rules, enforced: layers point one way (import-linter contract in
pyproject.toml), and the model contract is the only way the engine reaches a model."""

from __future__ import annotations

import ast
from pathlib import Path

from importlinter import cli

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src" / "recforge"


def test_import_layers_contract_is_kept(monkeypatch) -> None:
    monkeypatch.chdir(ROOT)
    assert cli.lint_imports(config_filename=str(ROOT / "pyproject.toml")) == 0


def test_no_hook_is_probed_with_getattr_or_hasattr() -> None:
    """Model hooks are declared on RecModel; nothing in the library probes for them."""
    from recforge.models.base import RecModel

    hooks = {n for n in vars(RecModel) if not n.startswith("_")} | {"behaviours", "pair_names"}
    offenders = []
    for path in SRC.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Name)
                and node.func.id in {"getattr", "hasattr"}
                and len(node.args) >= 2
                and isinstance(node.args[1], ast.Constant)
                and node.args[1].value in hooks
            ):
                offenders.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert not offenders, offenders


def test_no_model_file_reads_files_or_runs_a_training_loop() -> None:
    """Model files are wiring: no file reading, no optimizer, no loop over epochs."""
    banned = ("open(", "torch.load(", "read_table(", "torch.optim.", ".backward(", "Path(")
    offenders = [
        f"{path.name}: {word}"
        for path in (SRC / "models").glob("*.py")
        for word in banned
        if word in path.read_text()
    ]
    assert not offenders, offenders
