"""Every kdtool command's help texts: one sentence each, at most 200 characters, no measurements or repo paths.

Rationale and measurements live in docs/decisions.md and docs/performance.md, not in --help.
"""

from __future__ import annotations

import re

import click
import pytest

from kdtool.cli import main

MAX_CHARS = 200
# a sentence ends where a full stop, ! or ? is followed by a capital ("e.g. vgg16" continues one)
SENTENCE_END = re.compile(r"[.!?]\s+(?=[A-Z])")
# what belongs in docs/, not in --help: repository paths and measured numbers
NOT_IN_HELP = re.compile(
    r"benchmarks/|\w\.md\b|README|HISTORY|\d\s*%|\bover (two|three|four|five|\d+) seeds\b"
    r"|\bpercentage points? (better|worse|higher|lower)|\bmeasured\b",
    re.I,
)


def commands(group: click.Group = main, path: tuple[str, ...] = ("kdtool",)):
    """(path, command) for the group itself and every command under it."""
    yield path, group
    for name, command in group.commands.items():
        if isinstance(command, click.Group):
            yield from commands(command, (*path, name))
        else:
            yield (*path, name), command


COMMANDS = list(commands())
OPTIONS = [
    (" ".join(path), param)
    for path, command in COMMANDS
    for param in command.params
    if getattr(param, "help", None) is not None
]


def prose(help_text: str) -> str:
    """A command's help without its ``\\b`` blocks (examples, listings), as one line."""
    paragraphs = re.split(r"\n\s*\n", help_text.split("\f")[0].strip())
    return " ".join(" ".join(p.split()) for p in paragraphs if not p.lstrip().startswith("\b"))


def check(text: str, where: str) -> None:
    assert text, f"{where}: no help text"
    assert len(text) <= MAX_CHARS, f"{where}: help is {len(text)} characters (at most {MAX_CHARS}): {text!r}"
    assert len(SENTENCE_END.split(text)) == 1, f"{where}: help is more than one sentence: {text!r}"
    assert text.rstrip()[-1] in ".)", f"{where}: help does not end as a sentence: {text!r}"
    found = NOT_IN_HELP.search(text)
    assert not found, f"{where}: {found.group()!r} belongs in docs/, not in --help: {text!r}"


def test_the_commands_are_all_found():
    assert {" ".join(p) for p, _ in COMMANDS} >= {
        "kdtool",
        "kdtool data",
        "kdtool data synthetic",
        "kdtool data dermamnist",
        "kdtool distill",
        "kdtool export",
        "kdtool bench",
        "kdtool predict",
    }
    assert len(OPTIONS) > 60


@pytest.mark.parametrize("where,param", OPTIONS, ids=[f"{w} {p.opts[0]}" for w, p in OPTIONS])
def test_option_help_is_one_short_sentence(where, param):
    check(" ".join(param.help.split()), f"{where} {param.opts[0]}")


@pytest.mark.parametrize("path,command", COMMANDS, ids=[" ".join(p) for p, _ in COMMANDS])
def test_command_help_is_one_short_sentence_and_examples(path, command):
    check(prose(command.help or ""), " ".join(path))


@pytest.mark.parametrize(
    "text",
    [
        "Two sentences. Here is the second.",
        "x" * 201 + ".",
        "Measured in benchmarks/recipes.md.",
        "Raised sensitivity from 55.4 to 59.3% over three seeds.",
        "no full stop at the end",
    ],
)
def test_the_check_refuses_what_it_should(text):
    with pytest.raises(AssertionError):
        check(text, "example")


def test_the_check_accepts_a_plain_sentence():
    check("Teachers fine-tuned per architecture, e.g. vgg16 and resnet50 (0: none).", "example")
