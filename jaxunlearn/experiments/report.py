"""Results a person can read: a console table, JSON and CSV files, and a PNG comparing the methods.

:func:`write_results` writes one run's files as a whole folder
(:func:`jaxunlearn.io.write_folder_atomically`): a reader of the folder sees the
previous run or this one, never a mix, and ``manifest.json`` (written last)
lets it check that with :func:`jaxunlearn.io.verify_folder`.
"""

from __future__ import annotations

import math
import textwrap
from collections.abc import Sequence
from typing import Any

from jaxunlearn.experiments.classification import NO_EFFECT_ACCURACY, SHORT_CALL_S
from jaxunlearn.io import (
    csv_bytes,
    figure_bytes,
    json_bytes,
    new_run_id,
    save_figure,
    write_folder_atomically,
)

#: The files :func:`write_results` writes into a result folder (plus ``manifest.json``); ``config.toml``, the
#: resolved configuration (``jaxunlearn forget --config`` reads it back), when given.
RESULT_FILES = ("results.json", "summary.csv", "comparison.png", "config.toml")

_EPSILON_SHOWN = 10.0  # the histogram's last bin: eps >= 10 (beyond every bucket of the forget score up to N ~ 8000)

#: The histogram of per-example epsilons that :func:`write_results` adds when given ``epsilons``.
EPSILON_FILE = "epsilon_histogram.png"

def _share(value: float) -> str:
    """A share of parameters: ``0``, ``<0.1%`` for a few, else one decimal of a percent."""
    if value == 0:
        return "0"
    return "<0.1%" if value < 1e-3 else f"{100 * value:.1f}%"


#: (column, header, format) of the console table, in order; a format is a ``str.format`` pattern or a function.
TABLE_COLUMNS = (
    ("acc_retain_train", "Dr train", "{:.3f}"),
    ("acc_forget_train", "Df train", "{:.3f}"),
    ("acc_retain_test", "Dr test", "{:.3f}"),
    ("acc_forget_test", "Df test", "{:.3f}"),
    ("mia", "MIA", "{:.3f}"),
    ("js_to_retrain", "JS→R", "{:.4f}"),
    ("l1_to_retrain", "L1→R", "{:.3f}"),
    ("zrf", "ZRF", "{:.3f}"),
    ("svc_mia_confidence", "SVC MIA", "{:.3f}"),
    ("relearn_steps", "relearn", "{:.0f}"),
    ("cka_forget", "CKA Df", "{:.3f}"),
    ("params_changed", "changed", _share),
    ("seconds", "time s", "{:.3g}"),
    ("speedup", "×retrain", "{:.1f}"),
    # many-model runs only (jaxunlearn.experiments.many_models): the challenge's scores and a note
    ("forget_score", "forget score (higher=better)", "{:.3f}"),
    ("final_score", "final score (higher=better)", "{:.3f}"),
    ("ulira_auc", "U-LiRA AUC", "{:.3f}"),
    ("note", "note", "{}"),
)

#: The better direction of each column: ↑ higher, ↓ lower, ≈R closest to the retrained model's row. The forget
#: accuracies are ↓ in full-class scenarios only (:func:`directions`); elsewhere the retrained model keeps some.
DIRECTIONS = {
    "acc_retain_train": "↑", "acc_forget_train": "≈R", "acc_retain_test": "↑", "acc_forget_test": "≈R",
    "mia": "≈R", "js_to_retrain": "↓", "l1_to_retrain": "↓", "zrf": "≈R", "seconds": "↓", "speedup": "↑",
    "svc_mia_confidence": "≈R", "relearn_steps": "≈R", "cka_forget": "↑", "ulira_auc": "≈R",
}

#: What each column measures (the legend under the table).
LEGEND = {
    "acc_retain_train": "Dr train: accuracy on the retained training samples",
    "acc_forget_train": "Df train: accuracy on the forgotten training samples",
    "acc_retain_test": "Dr test: test accuracy outside the forget set",
    "acc_forget_test": "Df test: test accuracy on the forgotten class",
    "mia": "MIA: share of Df train an entropy membership attack calls members",
    "js_to_retrain": "JS→R, L1→R: JS divergence and L1 distance of the predictions on Df train to the retrained "
                     "model's",
    "zrf": "ZRF: 1 - JS divergence to a random model on Df train (1 = as uninformed as random)",
    "svc_mia_confidence": "SVC MIA: share of Df train an SVC on confidences (retain vs test) calls non-members "
                          "(SalUn's MIA-efficacy; results.json has the other four features)",
    "relearn_steps": "relearn: SGD steps on 10 forget samples until the rest of Df train is back to the "
                     "original's accuracy - 0.1 (a suppressed class relearns at once)",
    "cka_forget": "CKA Df: linear CKA of penultimate features with the retrained model on Df train "
                  "(results.json: cka_retain)",
    "params_changed": "changed: share of the parameters the method changed",
    "seconds": f"time s: method wall time, compilation excluded unless --cold-timing (calls under "
               f"{1000 * SHORT_CALL_S:.0f} ms: the median of repeats)",
    "speedup": "×retrain: retraining time / method time",
    "forget_score": "forget/final score: the NeurIPS 2023 challenge's scores from many models",
    "ulira_auc": "U-LiRA AUC: how well a per-example likelihood-ratio attack tells the method's models from "
                 "held-out retrained ones (0.5 = not at all; results.json: TPR at low FPR)",
}

#: The flag of a method that changed nothing measurable (``summary["no_effect"]``, set by ``summarise``).
NO_EFFECT = "no effect"
#: The flag of a method whose parameters became non-finite (``summary["diverged"]``).
DIVERGED = "diverged"


def _kind(scenario: str | None) -> str | None:
    """The scenario kind of a scenario string (``class:3`` -> ``"class"``), ``None`` when not given."""
    if not scenario:
        return None
    kind = scenario.strip().partition(":")[0].lower().replace("-", "_")
    return {"full_class": "class"}.get(kind, kind)


def directions(scenario: str | None = None) -> dict[str, str]:
    """:data:`DIRECTIONS` for ``scenario``: in a full-class scenario (``class:C``) the retrained model has
    forget accuracy 0, so lower is better (↓) there."""
    out = dict(DIRECTIONS)
    if _kind(scenario) == "class":
        out.update(acc_forget_train="↓", acc_forget_test="↓")
    return out


def _cell(summary: dict[str, Any], col: str, fmt: Any) -> str:
    value = summary.get(col, float("nan"))
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    render = fmt if callable(fmt) else fmt.format
    text = render(value) + ("*" if col == "seconds" and summary.get("from_cache") else "")
    std = summary.get(f"{col}_std")
    if (std is not None and summary.get("seeds", 1) > 1 and not math.isnan(std) and not callable(fmt)
            and col not in ("speedup", "seconds")):
        text += "±" + fmt.format(std).lstrip("0") if std < 1 else "±" + fmt.format(std)
    return text


def format_table(summaries: Sequence[dict[str, Any]], columns=TABLE_COLUMNS, *, scenario: str | None = None,
                 legend: bool = True, width: int = 110) -> str:
    """Rows: methods; columns: the metrics (mean ± std over seeds), each header with its better direction.

    Args:
      summaries: per-method summaries (``jaxunlearn.experiments.summarise``).
      columns: (column, header, format) triples; a column no summary holds is left out.
      scenario: the scenario string, for the directions (:func:`directions`) and the legend.
      legend: add the legend under the table: the directions, what each column measures, and the
        flags: ``no effect`` (a method that changed no parameter, or moved forget-train accuracy by less
        than a point from the original's) and ``diverged`` (non-finite parameters).
      width: the legend's line width.

    Returns:
      The table: every column aligned (text left, numbers right) whatever the widths of its values.
    """
    arrows = directions(scenario)
    present = [(c, h, f) for c, h, f in columns if any(c in s for s in summaries)]
    flags = [_flag(s) for s in summaries]
    flagged = any(flags)
    header = ["method"] + (["flag"] if flagged else []) + [f"{h} {arrows[c]}" if c in arrows else h
                                                           for c, h, _ in present]
    body = [[s["method"]] + ([flag] if flagged else []) + [_cell(s, c, f) for c, _, f in present]
            for s, flag in zip(summaries, flags)]
    widths = [max(len(r[i]) for r in [header, *body]) for i in range(len(header))]
    offset = 2 if flagged else 1
    left = {0, 1} if flagged else {0}
    left |= {i + offset for i, (c, _, _) in enumerate(present) if c == "note"}  # text columns
    lines = ["  ".join(v.ljust(w) if i in left else v.rjust(w) for i, (v, w) in enumerate(zip(r, widths))).rstrip()
             for r in [header, *body]]
    lines.insert(1, "-" * max(len(line) for line in lines))
    if legend:
        cached = any(s.get("from_cache") for s in summaries)
        lines += [""] + _legend([c for c, _, _ in present], scenario, set(flags) - {""}, cached, width)
    return "\n".join(lines)


def _flag(summary: dict[str, Any]) -> str:
    if summary.get("diverged"):
        return DIVERGED
    return NO_EFFECT if summary.get("no_effect") else ""


def _legend(cols: Sequence[str], scenario: str | None, flags: set[str], cached: bool, width: int) -> list[str]:
    """The legend lines: directions, what each present column measures, the flags, a cached retraining time
    and a dropped forget-test set."""
    parts = ["↑ higher is better, ↓ lower is better, ≈R closest to the retrain row is best"]
    parts += [LEGEND[c] for c in cols if c in LEGEND]
    if cached and "seconds" in cols:
        parts.append("* from the cache: a row (or the retraining time) computed by an earlier run with the same "
                     "models, settings and library code; its time was measured then (--rerun-methods measures "
                     "again)")
    if NO_EFFECT in flags:
        parts.append(f"{NO_EFFECT}: no parameter changed, or Df train within "
                     f"{100 * NO_EFFECT_ACCURACY:.0f} point of the original's")
    if DIVERGED in flags:
        parts.append(f"{DIVERGED}: the parameters became non-finite in some seed (no metrics)")
    if _kind(scenario) in ("random", "class_subset") and "acc_forget_test" not in cols:
        parts.append("no Df test: in this scenario the forget-test set is the forgotten training samples (Df train)")
    return textwrap.wrap("; ".join(parts) + ".", width)


def write_results(out_dir: str, config: dict[str, Any], rows: list[dict], summaries: list[dict], *,
                  run_id: str | None = None, epsilons: dict[str, dict[str, Any]] | None = None,
                  config_toml: str | None = None) -> list[str]:
    """Replace the folder ``out_dir`` by this run's files, as a whole.

    The folder holds ``results.json`` (``run_id``, config, per-seed rows,
    summary; strict JSON with ``null`` for NaN/inf), ``summary.csv``,
    ``comparison.png``, ``config.toml`` when given, and ``manifest.json``
    (written last: run id, sizes and sha256 of the others). All are rendered in
    memory first, then written by :func:`jaxunlearn.io.write_folder_atomically`.

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
      config_toml: the resolved configuration as TOML (:func:`jaxunlearn.experiments.config.to_toml`), written
        as ``config.toml``: ``jaxunlearn forget --config <folder>/config.toml`` runs the same comparison.

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
    if config_toml is not None:
        files["config.toml"] = config_toml.encode("utf-8")
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
