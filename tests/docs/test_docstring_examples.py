"""The runnable examples in the method modules' docstrings run as written (one per method family besides the
classifier family, whose example is the README's)."""

import importlib
import re

import pytest


@pytest.mark.parametrize("module", ["jaxunlearn.methods.mcmc_forgetting", "jaxunlearn.methods.selective_amnesia"])
def test_docstring_example_runs(module, capsys):
    doc = importlib.import_module(module).__doc__
    match = re.search(r"Example \(runnable[^\n]*::\n\n((?:    .*\n|\n)+)", doc)
    assert match, f"{module} has no runnable example"
    code = "\n".join(line[4:] for line in match.group(1).splitlines())
    exec(compile(code, f"{module} docstring", "exec"), {})  # noqa: S102 - our own documentation
    assert capsys.readouterr().out.strip(), "the example prints its result"
