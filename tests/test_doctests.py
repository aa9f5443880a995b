"""The examples in kdtool's docstrings run and print what they show (those not marked +SKIP).

Every module has at least one example, run or skipped, except the few in ``WITHOUT_EXAMPLES``.
"""

from __future__ import annotations

import doctest
import importlib
import pkgutil

import pytest

import kdtool

MODULES = sorted(m.name for m in pkgutil.walk_packages(kdtool.__path__, "kdtool.") if not m.name.endswith("__main__"))
#: modules with no docstring example, and why
WITHOUT_EXAMPLES = {
    "kdtool.bench": "a package's face: its docstring maps the modules",
    "kdtool.distill": "a package's face",
    "kdtool.export": "a package's face",
    "kdtool.bench._child": "the isolated child process's entry point, run only by kdtool.bench.isolation",
    "kdtool.cli": "click commands, shown by --help and docs/cli.md",
    "kdtool.export.cli": "click commands, shown by --help and docs/cli.md",
}
FLAGS = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE


def _examples(module) -> int:
    return sum(len(test.examples) for test in doctest.DocTestFinder().find(module))


@pytest.mark.parametrize("name", [m for m in MODULES if m not in WITHOUT_EXAMPLES])
def test_docstring_examples(name):
    module = importlib.import_module(name)
    assert _examples(module) > 0, f"{name} has no docstring example: add one (or list it in WITHOUT_EXAMPLES)"
    result = doctest.testmod(module, optionflags=FLAGS, verbose=False)
    failed, attempted = result.failed, result.attempted
    assert failed == 0, f"{failed} of {attempted} docstring example(s) in {name} failed (see above)"


def test_the_exceptions_exist_and_still_have_no_examples():
    """An entry of WITHOUT_EXAMPLES that names a gone module, or one that has examples now, is stale."""
    for name in WITHOUT_EXAMPLES:
        assert name in MODULES, f"{name} no longer exists"
        assert _examples(importlib.import_module(name)) == 0, f"{name} has examples now: drop it from the list"


def test_numpy_only_examples_run():
    """Guard against examples that are all skipped: the numpy-only ones really run."""
    attempted = sum(
        doctest.testmod(importlib.import_module(n), verbose=False).attempted
        for n in ("kdtool.distill.run_folder", "kdtool.metrics", "kdtool.quant")
    )
    assert attempted >= 3
