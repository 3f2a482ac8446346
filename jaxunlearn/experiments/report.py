"""Results a person can read: a console table, JSON and CSV files, and a PNG comparing the methods.

:func:`write_results` writes one run's files as a whole folder
(:func:`jaxunlearn.io.write_folder_atomically`): a reader of the folder sees the
previous run or this one, never a mix, and ``manifest.json`` (written last)
lets it check that with :func:`jaxunlearn.io.verify_folder`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from jaxunlearn.io import (
    csv_bytes,
    figure_bytes,
    json_bytes,
    new_run_id,
    save_figure,
    write_folder_atomically,
)

#: The files :func:`write_results` writes into a result folder (plus ``manifest.json``).
RESULT_FILES = ("results.json", "summary.csv", "comparison.png")

_EPSILON_SHOWN = 10.0  # the histogram's last bin: eps >= 10 (beyond every bucket of the forget score up to N ~ 8000)

#: The histogram of per-example epsilons that :func:`write_results` adds when given ``epsilons``.
EPSILON_FILE = "epsilon_histogram.png"

#: (column, header, format) of the console table, in order.
TABLE_COLUMNS = (
    ("acc_retain_train", "Dr train", "{:.3f}"),
    ("acc_forget_train", "Df train", "{:.3f}"),
    ("acc_retain_test", "Dr test", "{:.3f}"),
    ("acc_forget_test", "Df test", "{:.3f}"),
    ("mia", "MIA", "{:.3f}"),
    ("js_to_retrain", "JS->retr", "{:.4f}"),
    ("l1_to_retrain", "L1->retr", "{:.3f}"),
    ("zrf", "ZRF", "{:.3f}"),
    ("seconds", "time s", "{:.2f}"),
    ("speedup", "x retrain", "{:.1f}"),
    # many-model runs only (jaxunlearn.experiments.many_models): the challenge's scores and a note
    ("forget_score", "forget score (higher=better)", "{:.3f}"),
    ("final_score", "final score (higher=better)", "{:.3f}"),
    ("note", "note", "{}"),
)


def _cell(summary: dict[str, Any], col: str, fmt: str) -> str:
    value = summary.get(col, float("nan"))
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    text = fmt.format(value)
    std = summary.get(f"{col}_std")
    if std is not None and summary.get("seeds", 1) > 1 and not math.isnan(std) and col != "speedup":
        text += "±" + fmt.format(std).lstrip("0") if std < 1 else "±" + fmt.format(std)
    return text


def format_table(summaries: Sequence[dict[str, Any]], columns=TABLE_COLUMNS) -> str:
    """Rows: methods; columns: the metrics (mean ± std over seeds)."""
    present = [(c, h, f) for c, h, f in columns if any(c in s for s in summaries)]
    header = ["method"] + [h for _, h, _ in present]
    body = [[s["method"]] + [_cell(s, c, f) for c, _, f in present] for s in summaries]
    widths = [max(len(r[i]) for r in [header, *body]) for i in range(len(header))]
    left = {0} | {i + 1 for i, (c, _, _) in enumerate(present) if c == "note"}  # text columns
    lines = ["  ".join(v.ljust(w) if i in left else v.rjust(w) for i, (v, w) in enumerate(zip(r, widths))).rstrip()
             for r in [header, *body]]
    lines.insert(1, "-" * len(lines[0]))
    return "\n".join(lines)


def write_results(out_dir: str, config: dict[str, Any], rows: list[dict], summaries: list[dict], *,
                  run_id: str | None = None, epsilons: dict[str, dict[str, Any]] | None = None) -> list[str]:
    """Replace the folder ``out_dir`` by this run's files, as a whole.

    The folder holds ``results.json`` (``run_id``, config, per-seed rows,
    summary; strict JSON with ``null`` for NaN/inf), ``summary.csv``,
    ``comparison.png`` and ``manifest.json`` (written last: run id, sizes and
    sha256 of the others). All are rendered in memory first, then written by
    :func:`jaxunlearn.io.write_folder_atomically`.

    Args:
      out_dir: the result folder of this comparison (replaced entirely).
      config: the run's settings (``title`` is used for the plot).
      rows: per-seed result rows.
      summaries: per-method summaries (see ``jaxunlearn.experiments.summarise``).
      run_id: the run id to record (default: :func:`jaxunlearn.io.new_run_id`).
      epsilons: optional per-example epsilons of a many-model run, ``{seed: {method: [F]}}``
        (:class:`jaxunlearn.experiments.many_models.ManyModelsResult`): stored under ``"epsilons"`` in
        ``results.json`` (seed keys as strings) and drawn in :data:`EPSILON_FILE`
        (:func:`render_epsilon_histogram`).

    Returns:
      The paths of the written files, manifest last.
    """
    run_id = run_id or new_run_id()
    document = {"run_id": run_id, "config": config, "rows": rows, "summary": summaries}
    if epsilons is not None:
        document["epsilons"] = {str(seed): {m: [float(e) for e in eps] for m, eps in by_method.items()}
                                for seed, by_method in epsilons.items()}
    files = {  # the names of RESULT_FILES (and EPSILON_FILE)
        "results.json": json_bytes(document),
        "summary.csv": csv_bytes(summaries),
        "comparison.png": render_comparison(summaries, title=config.get("title", "")),
    }
    if epsilons is not None:
        files[EPSILON_FILE] = render_epsilon_histogram(epsilons, title=config.get("title", ""))
    return write_folder_atomically(out_dir, files, run_id=run_id)


def render_epsilon_histogram(epsilons: dict[Any, dict[str, Any]], title: str = "") -> bytes:
    """PNG bytes of one histogram of per-example epsilons per method (pooled over seeds; nothing written).

    Args:
      epsilons: ``{seed: {method: [F] eps_i}}`` as given to :func:`write_results`.
      title: the figure title.

    Returns:
      The PNG bytes. Bins are 0.5 wide, the width of the forget score's buckets
      (:func:`jaxunlearn.metrics.forget_score`); the last bin gathers ``eps_i >= 10`` (no bucket scores there),
      and each title gives the share at the cap ``eps_i = 50`` (separated samples or a spike).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    pooled: dict[str, list] = {}
    for by_method in epsilons.values():
        for method, eps in by_method.items():
            pooled.setdefault(method, []).extend(np.asarray(eps, float).ravel().tolist())
    bins = np.arange(0.0, _EPSILON_SHOWN + 1.0, 0.5)  # the last bin holds every eps_i >= _EPSILON_SHOWN
    cols = min(4, max(len(pooled), 1))
    rows = -(-len(pooled) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4 * cols, 2.6 * rows), squeeze=False, sharex=True)
    for ax, (method, eps) in zip(axes.ravel(), pooled.items()):
        eps = np.asarray(eps, float)
        ax.hist(np.clip(eps, 0.0, _EPSILON_SHOWN + 0.25), bins=bins, color="tab:blue")
        median = f"median {np.median(eps):.2f}, " if eps.size else ""
        ax.set_title(f"{method} ({median}{np.mean(eps >= 50.0):.0%} at the cap 50)", fontsize=9)
        ax.set_xticks(list(range(0, int(_EPSILON_SHOWN), 2)) + [_EPSILON_SHOWN + 0.25],
                      [str(t) for t in range(0, int(_EPSILON_SHOWN), 2)] + [f">={_EPSILON_SHOWN:g}"])
        ax.set_xlabel("per-example epsilon (lower = closer to retraining)", fontsize=8)
        ax.grid(alpha=0.3)
    for ax in axes.ravel()[len(pooled):]:
        ax.set_visible(False)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    try:
        return figure_bytes(fig, "png")
    finally:
        plt.close(fig)


def _comparison_figure(summaries: Sequence[dict[str, Any]], title: str = ""):
    """The figure of :func:`plot_comparison` and the pyplot module (the caller closes the figure)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [s["method"] for s in summaries]
    fig, axes = plt.subplots(1, 4, figsize=(18, 0.45 * len(names) + 1.8), sharey=True)
    y = range(len(names))

    def bars(ax, col, label, color, offset=0.0, height=0.8):
        vals = [s.get(col, float("nan")) for s in summaries]
        errs = [s.get(f"{col}_std", 0.0) or 0.0 for s in summaries]
        ax.barh([i + offset for i in y], vals, height=height, xerr=errs, color=color, label=label, capsize=2)

    bars(axes[0], "acc_forget_train", "forget train", "tab:red", -0.2, 0.4)
    bars(axes[0], "acc_retain_test", "retain test", "tab:blue", 0.2, 0.4)
    axes[0].set_xlabel("accuracy")
    axes[0].legend(loc="lower left", bbox_to_anchor=(0.0, 1.0), ncol=2, fontsize=8, frameon=False)
    bars(axes[1], "mia", "MIA", "tab:purple")
    axes[1].set_xlabel("membership attack on forget set (lower = forgotten)")
    bars(axes[2], "js_to_retrain", "JS", "tab:green")
    axes[2].set_xlabel("JS divergence to retrained model (lower = closer)")
    bars(axes[3], "seconds", "time", "tab:gray")
    axes[3].set_xscale("log")
    axes[3].set_xlabel("method wall time, s (log)")
    axes[0].set_yticks(list(y), names)
    axes[0].invert_yaxis()
    for ax in axes:
        ax.grid(axis="x", alpha=0.3)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig, plt


def render_comparison(summaries: Sequence[dict[str, Any]], title: str = "") -> bytes:
    """The PNG bytes of :func:`plot_comparison`'s figure (nothing written)."""
    fig, plt = _comparison_figure(summaries, title)
    try:
        return figure_bytes(fig, "png")
    finally:
        plt.close(fig)


def plot_comparison(summaries: Sequence[dict[str, Any]], path: str, title: str = "") -> str:
    """Four panels: forget vs retain accuracy, MIA, distance to the retrained model, and time.

    Args:
      summaries: per-method summaries (see ``jaxunlearn.experiments.summarise``).
      path: the image file, written atomically (:func:`jaxunlearn.io.save_figure`).
      title: the figure title.

    Returns:
      ``path``.
    """
    fig, plt = _comparison_figure(summaries, title)
    try:
        return save_figure(fig, path)
    finally:
        plt.close(fig)
