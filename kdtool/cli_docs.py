"""docs/cli.md, the option reference of every kdtool command, rendered from the click commands.

Regenerate it after changing an option (tests/test_cli_docs.py fails while it is stale)::

    python -m kdtool.cli_docs > docs/cli.md

Nothing here imports TensorFlow: the commands import it only when they run.

Example:
    >>> text = render()
    >>> text.startswith("# Command-line reference")
    True
    >>> "| `--epochs INTEGER` | `120` |" in text
    True
"""

from __future__ import annotations

import inspect
import re
import textwrap

import click

from kdtool.cli import main

_HEADER = """# Command-line reference

Generated from the click commands by `python -m kdtool.cli_docs > docs/cli.md`; do not edit by hand.
`kdtool COMMAND --help` (or `-h`) prints the same.
"""


def render() -> str:
    """The Markdown of docs/cli.md: each command's help, usage and option tables.

    Returns:
        The whole file's text, ending with one newline.

    Example:
        >>> "## `kdtool distill`" in render()
        True
    """
    root = click.Context(main, info_name="kdtool", **main.context_settings)
    parts = [_HEADER, _command(["kdtool"], main, root)]
    for path, command, ctx in _walk(main, root, ["kdtool"]):
        parts.append(_command(path, command, ctx))
    return "\n".join(parts).rstrip("\n") + "\n"


def _walk(group: click.Group, parent: click.Context, path: list[str]):
    """Yield ``(path, command, context)`` for every visible command under ``group``, in definition order."""
    for name, command in group.commands.items():
        if command.hidden:
            continue
        ctx = command.context_class(command, info_name=name, parent=parent, **command.context_settings)
        if isinstance(command, click.Group):
            yield [*path, name], command, ctx
            yield from _walk(command, ctx, [*path, name])
        else:
            yield [*path, name], command, ctx


def _command(path: list[str], command: click.Command, ctx: click.Context) -> str:
    """One command's section."""
    name = " ".join(path)
    lines = [f"## `{name}`", "", *_help_text(command.help or ""), ""]
    usage = " ".join(command.collect_usage_pieces(ctx))
    lines += ["```text", f"{name} {usage}".rstrip(), "```", ""]
    if isinstance(command, click.Group):
        lines += ["| Command | What it does |", "|---|---|"]
        for sub, cmd in command.commands.items():
            if not cmd.hidden:
                lines.append(f"| `{name} {sub}` | {_cell(cmd.get_short_help_str(limit=200))} |")
        lines.append("")
    groups = getattr(command, "option_groups", None)  # cloup's option groups
    if groups:
        sections = [(g.title, [p for p in g.options if not p.hidden]) for g in groups if not g.hidden]
        rest = [p for p in command.get_ungrouped_options(ctx) if not set(p.opts) & set(ctx.help_option_names)]
        if rest:
            sections.append(("Other options", rest))
    else:
        options = [p for p in command.params if isinstance(p, click.Option) and not p.hidden]
        sections = [("Options", options)] if options else []
    for title, params in sections:
        lines += [
            f"### {title}" if groups else f"**{title}**",
            "",
            "| Option | Default | Description |",
            "|---|---|---|",
        ]
        for param in params:
            lines.append(_option_row(param, ctx))
        lines.append("")
    return "\n".join(lines)


def _help_text(text: str) -> list[str]:
    """A command's help as Markdown: paragraphs joined, ``\\b`` blocks (examples) as code blocks."""
    text = inspect.cleandoc(text).split("\f")[0]
    out: list[str] = []
    for para in re.split(r"\n\s*\n", text):
        if para.startswith("\b"):
            out += ["```text", *textwrap.dedent(para[1:].lstrip("\n")).splitlines(), "```", ""]
        else:
            out += [" ".join(line.strip() for line in para.splitlines()), ""]
    return out[:-1]


def _option_row(param: click.Parameter, ctx: click.Context) -> str:
    """One table row: the option's spellings and value, its default, its help."""
    names, text = param.get_help_record(ctx) or ("", "")
    default = ""
    match = re.fullmatch(r"(.*?)\s*\[(.*)\]", text, flags=re.S)
    if match:
        text, extras = match.groups()
        kept = []
        for extra in extras.split("; "):
            if extra.startswith("default: "):
                default = f"`{extra[len('default: ') :]}`"
            else:
                kept.append(extra)
        if kept:
            text += f" ({'; '.join(kept)})"
    return f"| `{_cell(names)}` | {_cell(default)} | {_cell(text)} |"


def _cell(text: str) -> str:
    """``text`` made safe for one Markdown table cell."""
    return " ".join(text.split()).replace("|", "\\|")


if __name__ == "__main__":
    print(render(), end="")
