"""Trade-off sweeps: methods run over grids of their settings, against models trained once per seed.

``jaxunlearn sweep --grid ssd.alpha=1,3,10,30 --grid jit.sigma=0.1,0.5`` runs
every value of each grid (the product of a method's grids when it has several)
and draws the forget-accuracy / retain-accuracy trade-off, one curve per swept
method, each point labelled with its value, the original and the retrained
models marked as the two reference points. Per seed the original and the
retrained models are trained once (or loaded from the model cache) and shared
by every point (:func:`jaxunlearn.experiments.classification.prepare_seed`).
Methods named with ``--methods`` but not swept run once at their settings and
appear as single points.

A sweep is its own command, not ``forget --sweep``: its output is a different
artefact (a curve per method, not one row per method; ``<dataset>-<scenario>-sweep/``
beside the comparison's folder, so neither replaces the other), and its
arguments (grids) make no sense for a comparison.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from typing import Any, Callable, NamedTuple

import numpy as np

from jaxunlearn.experiments.cache import ModelCache
from jaxunlearn.experiments.classification import ForgettingConfig, describe, prepare_seed, run_method
from jaxunlearn.experiments.config import (
    ConfigError,
    check_override,
    nested,
    parse_assignment,
    parse_value,
)
from jaxunlearn.experiments.registry import COMPARED, merge_settings, resolve_methods
from jaxunlearn.experiments.report import directions
from jaxunlearn.io import csv_bytes, figure_bytes, json_bytes, new_run_id, write_folder_atomically

#: The files :func:`write_sweep` writes into a sweep folder (plus ``manifest.json``).
SWEEP_FILES = ("results.json", "sweep.csv", "tradeoff.png", "config.toml")


class Grid(NamedTuple):
    """One ``--grid``: the method, the key path of the setting and its values, in the order given."""

    method: str
    path: tuple[str, ...]
    values: tuple[Any, ...]


class Point(NamedTuple):
    """One point of a method's sweep: ``label`` (``"alpha=3"``) and the method's full settings there."""

    label: str
    settings: dict


def parse_grid(text: str) -> Grid:
    """``"ssd.alpha=1,3,10,30"`` -> ``Grid("ssd", ("alpha",), (1, 3, 10, 30))``: each value read as a TOML scalar
    (:func:`jaxunlearn.experiments.config.parse_value`); :class:`ConfigError` for an empty or repeated value."""
    method, path, value_text = parse_assignment(text, "--grid")
    values = tuple(parse_value(v) for v in value_text.split(","))
    if any(v == "" for v in values):
        raise ConfigError(f"--grid {text!r}: give comma-separated values, e.g. ssd.alpha=1,3,10,30.")
    if len(set(map(repr, values))) != len(values):
        raise ConfigError(f"--grid {text!r} lists a value twice.")
    return Grid(method, tuple(path), values)


def grid_points(grids: Sequence[Grid], settings: Mapping[str, Mapping[str, Any]]) -> dict[str, list[Point]]:
    """Per swept method, its points: the product of its grids, in the order given, on top of ``settings``.

    Args:
      grids: the parsed ``--grid`` values.
      settings: every method's resolved settings (``ForgettingConfig.method_settings()``).

    Returns:
      ``{method: [Point]}``, methods in the order of their first grid.

    Raises:
      ConfigError: an unknown method or key, a value of the wrong type, or one setting swept twice.
    """
    by_method: dict[str, list[Grid]] = {}
    for grid in grids:
        if grid.method not in COMPARED:
            raise ConfigError(f"--grid: unknown method {grid.method!r}; methods with settings: {', '.join(COMPARED)}.")
        if any(g.path == grid.path for g in by_method.get(grid.method, [])):
            raise ConfigError(f"--grid sweeps {grid.method}.{'.'.join(grid.path)} twice; give its values once.")
        by_method.setdefault(grid.method, []).append(grid)
    out = {}
    for method, method_grids in by_method.items():
        points = []
        for values in itertools.product(*(g.values for g in method_grids)):
            override: dict = {}
            for grid, value in zip(method_grids, values):
                override = merge_settings(override, nested(grid.path, value))
            checked = check_override(method, override, settings[method], "--grid")
            label = ", ".join(f"{'.'.join(g.path)}={v}" for g, v in zip(method_grids, values))
            points.append(Point(label, merge_settings(settings[method], checked)))
        out[method] = points
    return out


def run_sweep(config: ForgettingConfig, points: Mapping[str, Sequence[Point]], *, cache: ModelCache | None = None,
              progress: bool = True, log: Callable[[str], None] = print) -> list[dict[str, Any]]:
    """Every point of every swept method, and every other method of ``config`` once, on each seed.

    Args:
      config: the run (its ``methods`` not in ``points`` run once at their settings).
      points: :func:`grid_points`.
      cache: the model cache, or ``None``.
      progress: training progress bars.
      log: receives a progress line per point (``[3/8] ssd alpha=10 ...``) and its result.

    Returns:
      One row per seed and point (:func:`jaxunlearn.experiments.classification.run_method`) with ``method``
      ``"<method> <label>"``, ``swept`` (the method) and ``setting`` (the label; ``""`` when not swept), plus
      the ``"original"`` and ``"retrain"`` rows.
    """
    settings = config.method_settings()
    singles = [m for m in resolve_methods(config.methods) if m in COMPARED and m not in points]
    plan = [(m, p) for m, pts in points.items() for p in pts] + [(m, Point("", settings[m])) for m in singles]
    rows = []
    for seed in config.seeds:
        run = prepare_seed(config, seed, cache=cache, progress=progress, log=log)
        for name in ("original", "retrain"):
            rows.append({**run_method(run, name), "swept": name, "setting": ""})
        for i, (method, point) in enumerate(plan, 1):
            label = f"{method} {point.label}".strip()
            log(f"[seed {seed}] [{i}/{len(plan)}] {label} ...")
            row = {**run_method(run, method, point.settings), "method": label, "swept": method,
                   "setting": point.label}
            log(f"[seed {seed}] {label}: {describe(row)}")
            rows.append(row)
    return rows


def render_tradeoff(summaries: Sequence[dict[str, Any]], *, scenario: str | None = None, title: str = "") -> bytes:
    """PNG bytes of the trade-off: forget-train accuracy (x) against retain-test accuracy (y).

    One curve per swept method through its points in grid order, each labelled with its setting (the
    labels of points that coincide stacked in one; points that diverged in any seed are left out); error bars are the standard deviations over seeds; methods run
    once are single points; the original
    (square) and the retrained model (star, the target) are the reference points. The axis labels say
    which direction is better (lower forget accuracy in full-class scenarios, closest to the retrained
    model otherwise; higher retain accuracy).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 5.5))
    try:
        methods = list(dict.fromkeys(s.get("swept", s["method"]) for s in summaries))
        labels: list[tuple[float, float, list[str]]] = []  # nearby points share one stacked label
        xs = [s.get("acc_forget_train", math.nan) for s in summaries]
        ys = [s.get("acc_retain_test", math.nan) for s in summaries]
        near_x = 0.06 * max(np.nanmax(xs) - np.nanmin(xs), 0.05)  # "nearby": within 6 % of the axis ranges
        near_y = 0.06 * max(np.nanmax(ys) - np.nanmin(ys), 0.05)
        for method in methods:
            if method in ("original", "retrain"):
                continue
            group = [s for s in summaries if s.get("swept", s["method"]) == method and not s.get("diverged")]
            if not group:
                continue
            x = [s["acc_forget_train"] for s in group]
            y = [s["acc_retain_test"] for s in group]
            ax.errorbar(x, y, xerr=[s.get("acc_forget_train_std", 0.0) or 0.0 for s in group],
                        yerr=[s.get("acc_retain_test_std", 0.0) or 0.0 for s in group], marker="o",
                        linestyle="-" if len(group) > 1 else "none", capsize=2, label=method)
            for s, xi, yi in zip(group, x, y):
                if s.get("setting"):
                    text = f"{method} {s['setting']}"
                    near = next((lab for lab in labels if abs(lab[0] - xi) < near_x and abs(lab[1] - yi) < near_y),
                                None)
                    if near is None:
                        labels.append((xi, yi, [text]))
                    else:
                        near[2].append(text)
        middle = (np.nanmax(xs) + np.nanmin(xs)) / 2
        for xi, yi, texts in labels:
            right = xi > middle  # labels on the right half point left, so they stay inside the axes
            ax.annotate("\n".join(texts), (xi, yi), textcoords="offset points", xytext=(-6 if right else 6, -6),
                        ha="right" if right else "left", va="top", fontsize=7)
        refs = {s["method"]: s for s in summaries if s["method"] in ("original", "retrain")}
        for name, marker, size, color, label in (("original", "s", 80, "black", "original (before forgetting)"),
                                                 ("retrain", "*", 260, "tab:green", "retrained (the target)")):
            if name in refs:
                ax.scatter([refs[name]["acc_forget_train"]], [refs[name]["acc_retain_test"]], marker=marker, s=size,
                           color=color, zorder=5, label=label)
        better = ("← lower is better" if directions(scenario)["acc_forget_train"] == "↓"
                  else "closest to the retrained model's is best")
        ax.set_xlabel(f"forget-train accuracy ({better})")
        ax.set_ylabel("retain-test accuracy (↑ higher is better)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, loc="best")
        if title:
            ax.set_title(title, fontsize=10)
        fig.tight_layout()
        return figure_bytes(fig, "png")
    finally:
        plt.close(fig)


def write_sweep(out_dir: str, config: dict[str, Any], rows: list[dict], summaries: list[dict], *,
                run_id: str | None = None, config_toml: str | None = None) -> list[str]:
    """Replace the folder ``out_dir`` by the sweep's files, as a whole (:func:`jaxunlearn.io.write_folder_atomically`).

    Args:
      out_dir: the sweep's folder.
      config: the run's settings (``title`` and ``scenario`` are used for the plot), recorded in ``results.json``.
      rows, summaries: :func:`run_sweep`'s rows and their summaries (``jaxunlearn.experiments.summarise``).
      run_id: the run id (default :func:`jaxunlearn.io.new_run_id`).
      config_toml: the resolved configuration as TOML, written as ``config.toml``.

    Returns:
      The paths of the written files (:data:`SWEEP_FILES` present), manifest last.
    """
    run_id = run_id or new_run_id()
    files = {
        "results.json": json_bytes({"run_id": run_id, "config": config, "rows": rows, "summary": summaries}),
        "sweep.csv": csv_bytes(summaries),
        "tradeoff.png": render_tradeoff(summaries, scenario=config.get("scenario"), title=config.get("title", "")),
    }
    if config_toml is not None:
        files["config.toml"] = config_toml.encode("utf-8")
    return write_folder_atomically(out_dir, files, run_id=run_id)
