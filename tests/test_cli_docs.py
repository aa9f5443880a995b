"""docs/cli.md is kdtool.cli_docs.render() of today's click commands, and rendering needs no TensorFlow."""

from __future__ import annotations

import subprocess
import sys

import click
from conftest import ROOT

from kdtool.cli import main
from kdtool.cli_docs import render

DOC = ROOT / "docs" / "cli.md"


def test_docs_cli_md_is_up_to_date():
    assert DOC.read_text() == render(), (
        "docs/cli.md is stale: regenerate it with `python -m kdtool.cli_docs > docs/cli.md` and commit it"
    )


def test_every_command_and_option_is_in_the_reference():
    text = render()

    def walk(group, path):
        for name, command in group.commands.items():
            assert f"## `{path} {name}`" in text
            if isinstance(command, click.Group):
                walk(command, f"{path} {name}")
            for param in command.params:
                if isinstance(param, click.Option) and not param.hidden:  # removed options stay hidden
                    assert all(f"`{opt}" in text or f" {opt}" in text for opt in param.opts), (name, param.opts)

    walk(main, "kdtool")
    assert "### Distillation" in text and "| `--epochs INTEGER` | `120` |" in text


def test_rendering_needs_no_tensorflow():
    code = (
        "import sys; sys.modules['tensorflow'] = None; sys.modules['keras'] = None; "
        "from kdtool.cli_docs import render; print(len(render()))"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert int(proc.stdout) > 1000
