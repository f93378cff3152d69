"""The examples in graphc's docstrings run and print what they show (a user
reads them in help(); an example that no longer runs is a wrong answer)."""
import doctest
import importlib

import pytest

MODULES = ["graphc", "graphc.api", "graphc.autodiff", "graphc.datasets", "graphc.interpret",
           "graphc.jacobians",
           "graphc.optim", "graphc.steady_call", "graphc.train"]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples_run_as_shown(name):
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.NORMALIZE_WHITESPACE, verbose=False)
    assert result.attempted > 0, f"{name} has no examples: drop it from MODULES"
    assert result.failed == 0, f"{result.failed} of {result.attempted} examples in {name} failed"
