"""The seeds' experiments as one-command configurations: ``jaxunlearn paper NAME``.

Each :class:`PaperSetting` is one experiment of a seed paper with the original
code's hyperparameters (``params``, plain values, every key settable with
``--set KEY=VALUE``), the numbers the paper prints for it (``paper``, quoted
with their ``reference``) and the ways our run departs from the original's
(``notes``). A *kind* module runs it and prints the seed's table with the
paper's numbers beside ours:

==============  ===========================================================  ==============================
kind            settings                                                     module
==============  ===========================================================  ==============================
classification  SSD, LFSSD and JiT on CIFAR-100/20/10, ResNet-18 and ViT     ``paper_classification``
bayesian        VI and MCMC (SGLD, SGHMC) forgetting of Bayesian LeNets      ``paper_bayesian``
amnesia         Selective Amnesia's MNIST CVAE forgets a digit               ``paper_amnesia``
==============  ===========================================================  ==============================

A kind module exposes ``SETTINGS`` (a tuple of :class:`PaperSetting`),
``run(setting, params, train, test, *, progress, log) -> dict`` (a JSON-able
result) and ``table(setting, params, result) -> str``; optionally
``figures(setting, params, result) -> {file name: PNG bytes}`` and
``data_options(params) -> dict`` (keyword arguments of the data loader, such
as ``preset``).

``--smoke`` swaps the prepared tfds data for the generated stand-in of the
same shape (:data:`jaxunlearn.data.SYNTHETIC_DATASETS`) at
``setting.smoke_sizes`` examples and applies ``setting.smoke`` (fewer epochs
and steps, narrower models): the whole path of a paper run, in a minute on a
CPU, before anyone spends GPU hours on it. The test suite runs every setting
this way.
"""

from __future__ import annotations

import dataclasses
import importlib
from collections.abc import Mapping, Sequence
from typing import Any

from jaxunlearn.experiments.config import ConfigError, coerce, parse_value

#: kind -> the module (in this package) that runs it.
KINDS = {"classification": "paper_classification", "bayesian": "paper_bayesian", "amnesia": "paper_amnesia"}


@dataclasses.dataclass(frozen=True)
class PaperSetting:
    """One seed experiment.

    Attributes:
      name: the command's ``NAME`` (lower case, words joined by ``-``), e.g. ``"cifar20-fullclass-resnet18"``.
      kind: a key of :data:`KINDS`: the module that runs it.
      title: one line saying what runs.
      params: the run's settings as plain values (int, float, str, bool, tuples of those); ``params["dataset"]``
        names the tfds dataset it reads (:data:`jaxunlearn.data.DATASETS`).
      smoke: overrides of ``params`` under ``--smoke``.
      smoke_sizes: ``(num_train, num_test)`` of the synthetic stand-in under ``--smoke``.
      paper: ``{row: {column: number}}``, each number a string exactly as the reference prints it.
      reference: where ``paper`` comes from (paper, table or figure, and how it was read).
      notes: how this run departs from the original code's, printed under the table.
    """

    name: str
    kind: str
    title: str
    params: Mapping[str, Any]
    smoke: Mapping[str, Any]
    smoke_sizes: tuple[int, int]
    paper: Mapping[str, Mapping[str, str]]
    reference: str
    notes: tuple[str, ...] = ()


def kind_module(kind: str) -> Any:
    """The module that runs settings of ``kind`` (imported on first use)."""
    if kind not in KINDS:
        raise ValueError(f"unknown paper setting kind {kind!r}; choose one of {', '.join(KINDS)}.")
    return importlib.import_module(f"jaxunlearn.experiments.{KINDS[kind]}")


def all_settings() -> dict[str, PaperSetting]:
    """Every paper setting by name, kind by kind."""
    out: dict[str, PaperSetting] = {}
    for kind in KINDS:
        for setting in kind_module(kind).SETTINGS:
            if setting.kind != kind or setting.name in out:
                raise RuntimeError(f"paper setting {setting.name!r} is registered twice or under the wrong kind.")
            out[setting.name] = setting
    return out



#: The cell of a number the reference does not print.
NOT_QUOTED = "—"


def paper_cell(setting: PaperSetting, row: str, column: str) -> str:
    """The paper's number for ``(row, column)`` as quoted in ``setting.paper``, else :data:`NOT_QUOTED`."""
    return setting.paper.get(row, {}).get(column, NOT_QUOTED)


def render_table(setting: PaperSetting, columns: Sequence[str], rows: Sequence[Sequence[str]], *, title: str,
                 legend: Sequence[str] = ()) -> str:
    """The seed's table as aligned text: ``title``, the header, the rows, then ``legend`` lines, the paper
    columns' reference and ``setting.notes``.

    Args:
      setting: the experiment (its ``reference`` and ``notes`` close the table).
      columns: the header cells; a column of the paper's numbers is headed ``"paper ..."`` by convention, a
        column of ours says which direction is better (``↑``/``↓``).
      rows: the cells, as strings, one sequence per row, as long as ``columns``.
      title: the first line.
      legend: lines explaining columns and marks.

    Returns:
      The table, ending with a newline.
    """
    for row in rows:
        if len(row) != len(columns):
            raise ValueError(f"a table row has {len(row)} cells for {len(columns)} columns: {list(row)}")
    widths = [max(len(str(c)) for c in col) for col in zip(columns, *rows)]

    def line(cells):
        return "  ".join(str(c).ljust(w) if i == 0 else str(c).rjust(w) for i, (c, w) in enumerate(zip(cells, widths)))

    out = [title, "", line(columns), "  ".join("-" * w for w in widths)]
    out += [line(r) for r in rows]
    out += ["", *legend, f"paper columns: {setting.reference}"]
    out += [f"note: {n}" for n in setting.notes]
    return "\n".join(out).rstrip() + "\n"


def resolve_params(setting: PaperSetting, assignments: Sequence[str] = (), *, smoke: bool = False,
                   file_values: Mapping[str, Any] | None = None) -> dict:
    """``setting.params``, then ``setting.smoke`` (when ``smoke``), ``file_values`` (a ``--config`` file's
    table) and each ``KEY=VALUE`` of ``assignments`` (``--set``), later ones winning.

    A value must have its default's type (an integer where the default is one, ...); a command-line value
    is read as a TOML scalar, and where the default is a tuple it is a comma-separated list of such scalars
    (``forget=rocket,sea``, ``seeds=0,1,2``, ``model.stage_widths=16,32,64,128``).

    Raises:
      ConfigError: (a ``ValueError``) an assignment without ``=``, an unknown key (the message lists the
        valid ones) or a value of the wrong type.
    """
    params = dict(setting.params)
    if smoke:
        params.update(setting.smoke)
    updates: list[tuple[str, Any, str]] = [(k, v, "--config") for k, v in (file_values or {}).items()]
    for text in assignments:
        key, eq, value = (part.strip() for part in text.partition("="))
        if not eq or not key:
            raise ConfigError(f"--set takes KEY=VALUE (e.g. seeds=0,1,2); got {text!r}.")
        items = [parse_value(v) for v in value.split(",") if v.strip()]
        updates.append((key, items if isinstance(params.get(key), tuple) else parse_value(value), "--set"))
    for key, value, where in updates:
        if key not in params:
            raise ConfigError(f"{where} {key}: {setting.name} has no setting {key!r}; its settings are "
                              f"{', '.join(sorted(params))}.")
        default = params[key]
        if isinstance(default, tuple):
            example = setting.params[key][0] if setting.params[key] else ""
            items = value if isinstance(value, (list, tuple)) else [value]
            params[key] = tuple(coerce(v, example, key, where) for v in items)
        else:
            params[key] = coerce(value, default, key, where)
    return params


def params_toml(setting: PaperSetting, params: Mapping[str, Any]) -> str:
    """``params`` as TOML, headed by the command that runs them (a record beside the results)."""
    lines = [f"# jaxunlearn paper {setting.name}: {setting.title}",
             f"# run it again with: jaxunlearn paper {setting.name} --config THIS_FILE (or --set KEY=VALUE)"]
    for key, value in params.items():
        items = value if isinstance(value, tuple) else (value,)
        text = ", ".join(_toml_scalar(v) for v in items)
        lines.append(f'"{key}" = ' + (f"[{text}]" if isinstance(value, tuple) else text))
    return "\n".join(lines) + "\n"


def _toml_scalar(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    return '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'
