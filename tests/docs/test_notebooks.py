"""The notebooks in colab/: well formed, ready for Colab, stored with the outputs of a run, and run top to bottom.

Every notebook is executed in a fresh Jupyter kernel by nbclient, one test per notebook, so pytest-xdist spreads
them over its workers like any other test; a failing cell fails its test with the cell's traceback. nbclient is
what nbmake runs on; a test module rather than ``--nbmake`` in ``addopts`` keeps plain ``pytest tests/...`` free of
the plugin, sorts the notebooks with the other docs tests instead of last in the run, and lets one function
execute the notebooks both here and when their outputs are stored, so the stored outputs come from exactly the
run CI makes. Each notebook runs with ``QUICK = True`` (its small settings); its settings cell says how to run
the full-size ones.

After editing a notebook, store its outputs (execution in place, the same settings as the test)::

    .venv/bin/python tests/docs/test_notebooks.py [colab/NAME.ipynb ...]    # no argument: every notebook
"""

from __future__ import annotations

import ast
import importlib
import json
import pathlib
import re
import sys
import types

import nbformat
import pytest
from nbclient import NotebookClient

ROOT = pathlib.Path(__file__).resolve().parents[2]
NOTEBOOKS = sorted((ROOT / "colab").glob("*.ipynb"))
COLAB_REPO = "jaxunlearn/jaxunlearn"
"""The GitHub repository the Colab badges open and the Colab install cells install from. The one place to change it:
the tests below then name every notebook cell (badge, install line) that must follow."""
CELL_TIMEOUT_S = 600
MAX_NOTEBOOK_BYTES = 250_000
WIDGET_MIME = "application/vnd.jupyter.widget-view+json"


def colab_url(path: pathlib.Path) -> str:
    return f"https://colab.research.google.com/github/{COLAB_REPO}/blob/main/colab/{path.name}"


def execute(path: pathlib.Path):
    """Run the notebook at ``path`` top to bottom in a fresh ``python3`` kernel (this interpreter) in its folder.

    Returns the executed ``nbformat.NotebookNode``; a failing cell raises ``nbclient.exceptions.CellExecutionError``.
    """
    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(nb, timeout=CELL_TIMEOUT_S, kernel_name="python3", record_timing=False,
                            resources={"metadata": {"path": str(path.parent)}})
    client.execute()
    return nb


def _code_cells(nb) -> list:
    return [cell for cell in nb["cells"] if cell["cell_type"] == "code"]


def _source(cell) -> str:
    source = cell["source"]
    return source if isinstance(source, str) else "".join(source)


def _output_kinds(cell) -> list[str]:
    """What a code cell showed: ``stdout`` and the mime types of its displays (stderr left out: warnings vary)."""
    kinds = set()
    for out in cell.get("outputs", []):
        if out["output_type"] == "stream" and out["name"] == "stdout":
            kinds.add("stdout")
        elif out["output_type"] in ("display_data", "execute_result"):
            kinds.update(out["data"])
    return sorted(kinds)


def _python(cell_source: str) -> str:
    """The cell as plain Python: IPython magics and shell escapes become ``pass`` at their indentation."""
    return "\n".join(re.sub(r"^(\s*)[%!].*$", r"\1pass", line) for line in cell_source.splitlines())


def _load(path: pathlib.Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


def test_the_four_notebooks_are_there():
    names = [p.name for p in NOTEBOOKS]
    for name in ("01_classifier_unlearning.ipynb", "02_bayesian_forgetting.ipynb", "03_selective_amnesia.ipynb",
                 "04_curvature_core.ipynb"):
        assert name in names


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_is_valid_nbformat_with_unique_cell_ids(path):
    nb = _load(path)  # the file as stored: nbformat.read would add missing ids
    nbformat.validate(nbformat.from_dict(nb))  # raises on a schema violation
    assert (nb["nbformat"], nb["nbformat_minor"]) >= (4, 5), "cell ids need nbformat 4.5"
    ids = [cell.get("id") for cell in nb["cells"]]
    assert all(ids), f"{path.name}: every cell needs an id (nbformat 4.5)"
    assert len(set(ids)) == len(ids), f"{path.name}: cell ids repeat"
    assert path.stat().st_size < MAX_NOTEBOOK_BYTES, f"{path.name} is {path.stat().st_size:,} bytes: shrink its plots"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_opens_in_colab_and_installs_there(path):
    nb = _load(path)
    title = _source(nb["cells"][0])
    assert nb["cells"][0]["cell_type"] == "markdown" and title.startswith("# ")
    assert f"]({colab_url(path)})" in title, f"{path.name}: the first cell needs the Open in Colab badge"
    setup = _source(_code_cells(nb)[0])
    assert 'if "google.colab" in sys.modules:' in setup
    install = [line.strip() for line in setup.splitlines() if line.strip().startswith("%pip install")]
    assert install and f"git+https://github.com/{COLAB_REPO}" in install[0], f"{path.name}: no Colab install line"
    assert '.venv/bin/pip install -e ".[notebooks]"' in setup and ".venv/bin/jupyter lab colab/" in setup


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_is_stored_with_the_outputs_of_a_quick_run(path):
    nb = _load(path)
    cells = _code_cells(nb)
    assert any(re.fullmatch(r"QUICK = True", line) for cell in cells for line in _source(cell).splitlines()), (
        f"{path.name}: store the outputs of the QUICK = True run (what the suite executes)")
    counts = [cell["execution_count"] for cell in cells]
    assert counts == list(range(1, len(cells) + 1)), (
        f"{path.name} is not stored as run top to bottom in a fresh kernel (execution counts {counts}): "
        f"run `.venv/bin/python tests/docs/test_notebooks.py colab/{path.name}`")
    for i, cell in enumerate(cells):
        outputs = cell["outputs"]
        assert outputs, f"{path.name}: code cell {i} ({cell['id']}) has no stored output"
        assert all(out["output_type"] != "error" for out in outputs), f"{path.name}: cell {cell['id']} failed"
        for out in outputs:
            text = "".join(out.get("text", ""))
            assert "\r" not in text and WIDGET_MIME not in out.get("data", {}), (
                f"{path.name}: cell {cell['id']} stores a progress bar; pass progress=False")


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_code_compiles_and_uses_public_names(path):
    """Every ``from jaxunlearn... import name`` resolves, and so does every ``module.attribute`` of an imported module
    (also in the branches a quick run skips)."""
    modules: dict[str, object] = {}
    for cell in _code_cells(_load(path)):
        tree = ast.parse(_python(_source(cell)), filename=path.name)
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("jaxunlearn"):
                module = importlib.import_module(node.module)
                for alias in node.names:
                    if hasattr(module, alias.name):
                        value = getattr(module, alias.name)
                    else:
                        value = importlib.import_module(f"{node.module}.{alias.name}")
                    if isinstance(value, types.ModuleType):
                        modules[alias.asname or alias.name] = value
            elif isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.name.startswith("jaxunlearn") and alias.asname is None and "." not in alias.name:
                        modules[alias.name] = importlib.import_module(alias.name)
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in modules:
                assert hasattr(modules[node.value.id], node.attr), (
                    f"{path.name}: {node.value.id}.{node.attr} is not in jaxunlearn")


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_runs_top_to_bottom(path):
    """The notebook executes without error, and every cell shows what its stored outputs show (else: store again)."""
    executed = execute(path)
    stored = _load(path)
    for ran, kept in zip(_code_cells(executed), _code_cells(stored)):
        assert _output_kinds(ran) == _output_kinds(kept), (
            f"{path.name}: cell {kept['id']} now shows {_output_kinds(ran)}, its stored outputs "
            f"{_output_kinds(kept)}: store them again (module doc)")


def store(paths: list[pathlib.Path]) -> None:
    """Execute each notebook as the test does and write it back with its outputs."""
    for path in paths:
        nbformat.write(execute(path), path)
        print(f"stored {path.relative_to(ROOT)}")


if __name__ == "__main__":
    store([pathlib.Path(p).resolve() for p in sys.argv[1:]] or NOTEBOOKS)
