"""The examples in kdtool's docstrings run and print what they show (those not marked +SKIP)."""

from __future__ import annotations

import doctest
import importlib
import pkgutil

import pytest

import kdtool

MODULES = sorted(m.name for m in pkgutil.walk_packages(kdtool.__path__, "kdtool.") if not m.name.endswith("__main__"))


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE, verbose=False)
    failed, attempted = result.failed, result.attempted
    assert failed == 0, f"{failed} of {attempted} docstring example(s) in {name} failed (see above)"


def test_some_examples_run():
    """Guard against a collection that silently finds nothing: the numpy-only examples exist."""
    attempted = sum(
        doctest.testmod(importlib.import_module(n), verbose=False).attempted
        for n in ("kdtool.distill.run_folder", "kdtool.metrics")
    )
    assert attempted >= 2
