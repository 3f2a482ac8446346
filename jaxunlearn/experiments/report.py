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
    lines = ["  ".join(v.ljust(w) if i == 0 else v.rjust(w) for i, (v, w) in enumerate(zip(r, widths)))
             for r in [header, *body]]
    lines.insert(1, "-" * len(lines[0]))
    return "\n".join(lines)


def write_results(out_dir: str, config: dict[str, Any], rows: list[dict], summaries: list[dict], *,
                  run_id: str | None = None) -> list[str]:
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

    Returns:
      The paths of the written files, manifest last.
    """
    run_id = run_id or new_run_id()
    files = {  # the names of RESULT_FILES
        "results.json": json_bytes({"run_id": run_id, "config": config, "rows": rows, "summary": summaries}),
        "summary.csv": csv_bytes(summaries),
        "comparison.png": render_comparison(summaries, title=config.get("title", "")),
    }
    return write_folder_atomically(out_dir, files, run_id=run_id)


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
