"""Report of a run directory: per-task tables (markdown, CSV, JSON), MAE-vs-fraction plots and
t-SNE maps of student embeddings with and without the teacher, next to the teacher's own.

Columns of the table (one row per task x student x teacher x strategy x fraction):
``mae_mean``/``mae_std`` over folds (and seeds), ``gain_vs_baseline`` = relative MAE drop against the
baseline of the same student and fraction on the folds both ran, ``folds_better``/``folds_paired`` and ``p_paired`` (paired
t-test over folds against that baseline), ``teacher_mae`` (the teacher's own test MAE, from its
``predict`` or a ridge probe on its embeddings), ``composition_floor`` (see
:func:`~matbench_ts.bench.data.composition_floor`), ``gap_closed`` =
``(MAE_base - MAE) / (MAE_base - max(floor, MAE_teacher))`` (left empty when that denominator is below
5 % of the baseline's MAE: the student is already about as good as the reference) and the leaderboard
references.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .data import DATA_ENV

LEADERBOARD_FILE = Path("leaderboard") / "matbench_v0.1_mean_scores.json"
#: Matbench tasks whose only input is the composition: every entry there is composition-only.
COMPOSITION_TASKS = {"matbench_steels", "matbench_expt_gap", "matbench_expt_is_metal", "matbench_glass"}
#: Leaderboard entries that use the composition alone on structure tasks.
COMPOSITION_ONLY_MARKERS = ("crabnet", "_composition", "roost")
#: The gap to the reachable floor is reported only when it exceeds this share of the baseline's MAE.
MIN_ROOM = 0.05
TABLE_COLUMNS = [
    "task", "student", "teacher", "strategy", "fraction", "n_runs", "n_train", "mae_mean", "mae_std",
    "rmse_mean", "dummy_mae", "alpha_mean", "baseline_mae", "gain_vs_baseline", "folds_better", "folds_paired",
    "p_paired", "teacher_mae",
    "composition_floor", "gap_closed", "leaky", "fit_time_s", "leaderboard_crabnet", "leaderboard_best_composition",
    "leaderboard_best_composition_name",
]


# ----------------------------------------------------------------------------- loading
def strategy_label(d: dict[str, Any], pretrain_max: int | None = None) -> str:
    """The run's strategy, with its alpha when it was not the current ``"auto"`` rule (``ts alpha=0.3``,
    ``ts alpha=auto-step2``) and, for ``transfer``, its step-1 library size when it was not the default
    (``transfer D1=all``): alpha sweeps, runs made under another rule and larger step-1 sets stay apart.
    A pretrained student whose library held test-fold formulas is labelled ``transductive``."""
    from ..estimator import ALPHA_RULES, AUTO_ALPHA_RULE
    from .config import PRETRAIN_MAX

    strategy = d["strategy"]
    if strategy == "transfer" and pretrain_max is not None and pretrain_max != PRETRAIN_MAX:
        strategy += f" D1={pretrain_max or 'all'}"
    if (d.get("pretrained") or {}).get("transductive"):
        strategy += " transductive"
    # Runs written before ``alpha_rule`` was recorded used "auto" = "auto-step2".
    rule = d.get("alpha_rule", (d.get("params") or {}).get("alpha", "auto"))
    rule = "auto-step2" if rule == "auto" else rule
    if d["strategy"] in ("baseline", "step1-only", "pretrained") or rule == AUTO_ALPHA_RULE:
        return strategy
    if d["strategy"] == "ts-no-step1" and rule in ALPHA_RULES:
        return strategy  # without step 1 both rules measure at the same point
    return f"{strategy} alpha={rule:g}" if isinstance(rule, (int, float)) else f"{strategy} alpha={rule}"


def _run_dirs(run_dir: str | Path | Sequence[str | Path]) -> list[Path]:
    return [Path(run_dir)] if isinstance(run_dir, (str, Path)) else [Path(d) for d in run_dir]


CLASSIFICATION_METRICS = ("roc_auc", "accuracy", "f1", "balanced_accuracy")


def fit_time(result: dict[str, Any]) -> float:
    """A run file's fit time in seconds, over all its sittings; NaN when unknown: a resumed run
    written before earlier sittings were counted recorded only its last sitting's."""
    if "fit_time_sitting_s" not in result and any((result.get("epochs_resumed") or {}).values()):
        return np.nan
    value = result.get("fit_time_s")
    return np.nan if value is None else float(value)


def _result_row(path: Path, pretrain_max: int | None) -> list[dict[str, Any]]:
    """The scalar fields of one finished regression run file (an empty list for an unfinished one
    or a classification run, see :func:`load_classification_results`)."""
    d = json.loads(path.read_text())
    if d.get("status") != "done" or d.get("kind") == "classification":
        return []
    return [{
        "task": d["task"], "student": d["student"], "teacher": d["teacher"] or "none",
        "strategy": strategy_label(d, pretrain_max), "fraction": d["fraction"], "fold": d["fold"], "seed": d["seed"],
        "mae": d["mae"], "rmse": d["rmse"], "dummy_mae": d["dummy_mae"], "n_train": d["n_train"],
        "alpha": d["alpha"], "teacher_mae": np.nan if d.get("teacher_mae") is None else d["teacher_mae"],
        "leaky": d["teacher_info"].get("leaky"), "wall_time_s": d["wall_time_s"],
        "fit_time_s": fit_time(d), "path": str(path),
    }]


def load_results(run_dir: str | Path | Sequence[str | Path]) -> pd.DataFrame:
    """One row per finished run (the scalar fields of each ``runs/**/*.json``) of one or more
    run directories; a run present in two of them is an error."""
    rows = []
    for directory in _run_dirs(run_dir):
        config = Path(directory, "config.json")
        pretrain_max = json.loads(config.read_text()).get("pretrain_max") if config.exists() else None
        for path in sorted(Path(directory, "runs").rglob("*.json")):
            rows += _result_row(path, pretrain_max)
    frame = pd.DataFrame(rows)
    if len(frame):
        key = ["task", "student", "teacher", "strategy", "fraction", "fold", "seed"]
        dup = frame[frame.duplicated(key, keep=False)]
        if len(dup):
            raise ValueError("the same run is in two run directories: " + ", ".join(dup["path"].head(4)))
    return frame


def load_classification_results(run_dir: str | Path | Sequence[str | Path]) -> pd.DataFrame:
    """One row per finished classification run: its keys and :data:`CLASSIFICATION_METRICS`."""
    rows = []
    for directory in _run_dirs(run_dir):
        config = Path(directory, "config.json")
        pretrain_max = json.loads(config.read_text()).get("pretrain_max") if config.exists() else None
        for path in sorted(Path(directory, "runs").rglob("*.json")):
            d = json.loads(path.read_text())
            if d.get("status") == "done" and d.get("kind") == "classification":
                rows.append({"task": d["task"], "student": d["student"], "teacher": d["teacher"] or "none",
                             "strategy": strategy_label(d, pretrain_max), "fraction": d["fraction"], "fold": d["fold"],
                             "seed": d["seed"], "n_train": d["n_train"], "fit_time_s": fit_time(d),
                             **{m: d[m] for m in CLASSIFICATION_METRICS}})
    return pd.DataFrame(rows)


def summarize_classification(results: pd.DataFrame, board: dict[str, Any] | None = None) -> pd.DataFrame:
    """Per task, student, teacher, strategy and fraction: each metric's mean and std over folds, the
    ROC-AUC change against the same student's baseline on the folds both ran (higher is better),
    folds better, paired p, and the leaderboard's best and CrabNet ROC-AUC (see the submit notes)."""
    from scipy.stats import ttest_rel

    keys = ["task", "student", "teacher", "strategy", "fraction"]
    table = results.groupby(keys).agg(
        n_runs=("roc_auc", "size"), n_train=("n_train", "mean"), fit_time_s=("fit_time_s", "mean"),
        **{f"{m}_{f}": (m, f) for m in CLASSIFICATION_METRICS for f in ("mean", "std")}).reset_index()
    base = results[results["strategy"] == "baseline"][["task", "student", "fraction", "fold", "seed", "roc_auc"]]
    paired = results.merge(base, on=["task", "student", "fraction", "fold", "seed"], suffixes=("", "_base"))
    rows = []
    for key, g in paired.groupby(keys):
        p = float(ttest_rel(g["roc_auc"], g["roc_auc_base"]).pvalue) if len(g) >= 3 and not np.allclose(
            g["roc_auc"], g["roc_auc_base"]) else np.nan
        rows.append({**dict(zip(keys, key)), "roc_auc_change": float((g["roc_auc"] - g["roc_auc_base"]).mean()),
                     "folds_better": int((g["roc_auc"] > g["roc_auc_base"]).sum()), "folds_paired": len(g), "p_paired": p})
    table = table.merge(pd.DataFrame(rows, columns=[*keys, "roc_auc_change", "folds_better", "folds_paired",
                                                    "p_paired"]), on=keys, how="left")
    table.loc[table["strategy"] == "baseline", ["roc_auc_change", "folds_better", "folds_paired", "p_paired"]] = np.nan
    entries = lambda t: {k: v[1] for k, v in (board or {}).get(t, {}).items() if v and v[0] == "rocauc"}  # noqa: E731
    table["leaderboard_best"] = table["task"].map(lambda t: max(entries(t).values(), default=np.nan))
    table["leaderboard_crabnet"] = table["task"].map(lambda t: entries(t).get("CrabNet", np.nan))
    return table.sort_values(keys).reset_index(drop=True)


def classification_markdown(task: str, table: pd.DataFrame) -> str:
    """The markdown page of one classification task."""
    t = table[table["task"] == task]
    pm = lambda m: [f"{a:.4g} ± {b:.2g}" for a, b in zip(t[f"{m}_mean"], t[f"{m}_std"])]  # noqa: E731
    view = pd.DataFrame({
        "student": t["student"], "teacher": t["teacher"], "strategy": t["strategy"], "fraction": t["fraction"],
        "n_train": t["n_train"].round().astype(int), "ROC-AUC": pm("roc_auc"),
        "change vs baseline": [f"{c:+.4f}" if np.isfinite(c) else "" for c in t["roc_auc_change"]],
        "better folds": [f"{b:.0f}/{n:.0f}" if np.isfinite(n) else "" for b, n in zip(t["folds_better"], t["folds_paired"])],
        "p (paired)": [f"{p:.2g}" if np.isfinite(p) else "" for p in t["p_paired"]],
        "accuracy": pm("accuracy"), "F1": pm("f1"), "balanced accuracy": pm("balanced_accuracy"),
        "fit s": t["fit_time_s"].round(), "runs": t["n_runs"],
    })
    best = t["leaderboard_best"].iloc[0]
    lines = [f"# {task} (classification)", ""]
    if np.isfinite(best):
        lines.append(f"- leaderboard (Matbench v0.1) best ROC-AUC {best:.4g}; most entries recorded labels, for which "
                     "Matbench's ROC-AUC is the balanced accuracy: compare with our balanced accuracy column")
    return "\n".join([*lines, "", markdown_table(view), "", f"![{task}_roc_auc_vs_fraction]({task}_roc_auc_vs_fraction.png)"]) + "\n"


def plot_roc_auc_vs_fraction(task: str, table: pd.DataFrame, path: Path) -> Path:
    """ROC-AUC (mean ± std over folds) against training fraction, one line per strategy (log x)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t = table[table["task"] == task]
    fig, ax = plt.subplots(figsize=(6.5, 4.5))
    _strategy_lines(ax, t, "roc_auc")
    best = t["leaderboard_best"].iloc[0]
    if np.isfinite(best):
        ax.axhline(best, color="tab:red", ls="-.", alpha=0.6, label="leaderboard best (full data)")
    return _save_fraction_plot(fig, ax, t, task, "test ROC-AUC", path)


def load_task_info(run_dir: str | Path | Sequence[str | Path]) -> dict[str, dict[str, Any]]:
    """``tasks/<task>.json`` written by the runner (floor, structure coverage, provenance);
    the teachers of a task seen in several run directories are merged."""
    info: dict[str, dict[str, Any]] = {}
    for d in _run_dirs(run_dir):
        for p in sorted(Path(d, "tasks").glob("*.json")):
            new = json.loads(p.read_text())
            old = info.setdefault(p.stem, new)
            old["teachers"] = {**new.get("teachers", {}), **old.get("teachers", {})}
    return info


def find_leaderboard(run_dir: str | Path | None = None) -> Path | None:
    """The leaderboard file under the run's ``data_dir`` or ``$MATBENCH_TS_DATA`` (if any)."""
    dirs = []
    if run_dir is not None and Path(run_dir, "config.json").exists():
        dirs.append(json.loads(Path(run_dir, "config.json").read_text()).get("data_dir"))
    dirs.append(os.environ.get(DATA_ENV))
    for d in dirs:
        if d and (Path(d) / LEADERBOARD_FILE).is_file():
            return Path(d) / LEADERBOARD_FILE
    return None


def leaderboard_refs(board: dict[str, Any], task: str) -> dict[str, Any]:
    """CrabNet's and the best composition-only leaderboard MAE of ``task`` (None when absent)."""
    entries = {k: v for k, v in board.get(task, {}).items() if v and v[0] == "mae"}
    composition = {k: v[1] for k, v in entries.items() if k != "dummy" and (
        task in COMPOSITION_TASKS or any(m in k.lower() for m in COMPOSITION_ONLY_MARKERS))}
    best = min(composition, key=composition.get) if composition else None
    return {
        "leaderboard_crabnet": entries["CrabNet"][1] if "CrabNet" in entries else None,
        "leaderboard_best_composition": composition.get(best),
        "leaderboard_best_composition_name": best,
    }


# ----------------------------------------------------------------------------- tables
def with_baseline(results: pd.DataFrame) -> pd.DataFrame:
    """Each run with ``mae_base``, the MAE of the same student's baseline on the same task, fraction,
    fold and seed (runs without such a baseline are dropped)."""
    fold_keys = ["task", "student", "fraction", "fold", "seed"]
    base = results[results["strategy"] == "baseline"][[*fold_keys, "mae"]]
    return results.merge(base, on=fold_keys, suffixes=("", "_base"))


def paired_p_value(pairs: pd.DataFrame) -> float:
    """Two-sided paired t-test of ``mae`` against ``mae_base`` over folds: below 0.05 the difference is
    beyond fold noise. NaN with fewer than three folds or identical scores."""
    from scipy.stats import ttest_rel

    if len(pairs) < 3 or np.allclose(pairs["mae"], pairs["mae_base"]):
        return np.nan
    return float(ttest_rel(pairs["mae"], pairs["mae_base"]).pvalue)


def summarize(
    results: pd.DataFrame, task_info: dict[str, dict[str, Any]], board: dict[str, Any] | None = None
) -> pd.DataFrame:
    """The report table (see module docstring), sorted by task, student, teacher, strategy, fraction."""
    std = lambda x: float(np.std(x))  # noqa: E731  (over folds, as Matbench reports it)
    keys = ["task", "student", "teacher", "strategy", "fraction"]
    table = results.groupby(keys, dropna=False).agg(
        n_runs=("mae", "size"), n_train=("n_train", "mean"), mae_mean=("mae", "mean"), mae_std=("mae", std),
        rmse_mean=("rmse", "mean"), dummy_mae=("dummy_mae", "mean"), alpha_mean=("alpha", "mean"),
        teacher_mae=("teacher_mae", "mean"), leaky=("leaky", "first"), fit_time_s=("fit_time_s", "mean"),
    ).reset_index()
    paired = with_baseline(results)
    paired["better"] = paired["mae"] < paired["mae_base"]
    # The gain compares the same folds: a cell that ran on fewer folds than its baseline is not
    # credited with the baseline's other folds.
    groups = paired.groupby(keys, dropna=False)
    wins = groups.agg(folds_better=("better", "sum"), folds_paired=("better", "size"),
                      paired_mae=("mae", "mean"), baseline_mae=("mae_base", "mean"))
    wins["p_paired"] = groups[["mae", "mae_base"]].apply(paired_p_value)
    table = table.merge(wins.reset_index(), on=keys, how="left")
    table["gain_vs_baseline"] = (table["baseline_mae"] - table["paired_mae"]) / table["baseline_mae"]
    table["composition_floor"] = table["task"].map(lambda t: task_info.get(t, {}).get("composition_floor", np.nan))
    reference = np.fmax(table["composition_floor"].to_numpy(float), table["teacher_mae"].to_numpy(float))
    room = table["baseline_mae"].to_numpy(float) - reference
    with np.errstate(divide="ignore", invalid="ignore"):
        gap = (table["baseline_mae"] - table["paired_mae"]).to_numpy(float) / room
    # Undefined when the baseline is already (nearly) as good as the reference: the ratio explodes.
    has_room = room > MIN_ROOM * table["baseline_mae"].to_numpy(float)
    table["gap_closed"] = np.where(has_room & (table["strategy"] != "baseline"), gap, np.nan)
    refs = pd.DataFrame([{"task": t, **leaderboard_refs(board or {}, t)} for t in table["task"].unique()])
    table = table.merge(refs, on="task", how="left") if len(refs) else table
    table.loc[table["strategy"] == "baseline", ["gain_vs_baseline", "folds_better", "folds_paired", "p_paired"]] = np.nan
    return table.reindex(columns=TABLE_COLUMNS).sort_values(keys[:4] + ["fraction"]).reset_index(drop=True)


def _fmt(value: Any, digits: int = 4) -> str:
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return ""
    if isinstance(value, (float, np.floating)):
        return f"{value:.{digits}g}"
    return str(value)


def markdown_table(frame: pd.DataFrame) -> str:
    """A GitHub markdown table (no tabulate dependency)."""
    lines = ["| " + " | ".join(frame.columns) + " |", "|" + "---|" * len(frame.columns)]
    lines += ["| " + " | ".join(_fmt(v) for v in row) + " |" for row in frame.itertuples(index=False)]
    return "\n".join(lines)


def task_markdown(task: str, table: pd.DataFrame, info: dict[str, Any], plots: Sequence[str]) -> str:
    """The markdown page of one task."""
    t = table[table["task"] == task]
    view = pd.DataFrame({
        "student": t["student"], "teacher": t["teacher"], "strategy": t["strategy"], "fraction": t["fraction"],
        "n_train": t["n_train"].round().astype(int),
        "MAE": [f"{m:.4g} ± {s:.2g}" for m, s in zip(t["mae_mean"], t["mae_std"])],
        "gain vs baseline": [_fmt(100 * g, 3) + " %" if np.isfinite(g) else "" for g in t["gain_vs_baseline"]],
        "better folds": [f"{b:.0f}/{n:.0f}" if np.isfinite(n) else "" for b, n in zip(t["folds_better"], t["folds_paired"])],
        "p (paired)": [f"{p:.2g}" if np.isfinite(p) else "" for p in t["p_paired"]],
        "teacher MAE": t["teacher_mae"], "gap closed": t["gap_closed"], "alpha": t["alpha_mean"],
        "fit s": t["fit_time_s"].round(), "runs": t["n_runs"], "leaky teacher": t["leaky"].map({True: "yes", False: "no"}).fillna("?"),
    })
    lines = [f"# {task}", ""]
    if info:
        rate = info.get("structure_match_rate")
        lines += [
            f"- source: `{info.get('source')}`, {info.get('n_rows')} rows, folds {info.get('fold_sizes')}",
            f"- teacher structures: {info.get('structure_source')} ({info.get('n_with_structure')} rows"
            + (f", formula match rate {rate:.1%}" if rate is not None else "") + ")",
            f"- composition floor (median target per reduced formula): {_fmt(info.get('composition_floor'))}",
            f"- target: mean {_fmt(info.get('target_mean'))}, std {_fmt(info.get('target_std'))}, "
            f"MAD {_fmt(info.get('target_mad'))}",
        ]
        for name, prov in info.get("teachers", {}).items():
            leak = {True: "LEAKY", False: "leak-free"}.get(prov.get("leaky"), "unknown")
            lines.append(f"- teacher {name}: {leak} ({prov.get('leak_reason')}); "
                         f"trained on {prov.get('pretrained_on')}")
    refs = t.iloc[0] if len(t) else None
    if refs is not None and refs["leaderboard_crabnet"] is not None and np.isfinite(refs["leaderboard_crabnet"]):
        lines.append(
            f"- leaderboard (Matbench v0.1, full training folds): CrabNet {_fmt(refs['leaderboard_crabnet'])}, best "
            f"composition-only {refs['leaderboard_best_composition_name']} {_fmt(refs['leaderboard_best_composition'])}"
        )
    lines += ["", markdown_table(view), ""]
    lines += [f"![{Path(p).stem}]({Path(p).name})" for p in plots]
    return "\n".join(lines) + "\n"


# ----------------------------------------------------------------------------- plots
def plot_mae_vs_fraction(task: str, table: pd.DataFrame, path: Path) -> Path:
    """MAE (mean ± std over folds) against training fraction, one line per strategy (log x)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t = table[table["task"] == task]
    fig, ax = plt.subplots(figsize=(6.5, 4.5))
    _strategy_lines(ax, t, "mae")
    for teacher, g in t[t["teacher_mae"].notna()].groupby("teacher"):
        g = g.groupby("fraction")["teacher_mae"].mean()
        ax.plot(g.index, g.values, "k--", alpha=0.6, label=f"teacher {teacher} (probe)")
    floor = t["composition_floor"].iloc[0]
    if np.isfinite(floor) and floor > 0:
        ax.axhline(floor, color="grey", ls=":", label="composition floor")
    crab = t["leaderboard_crabnet"].iloc[0]
    if crab is not None and np.isfinite(crab):
        ax.axhline(crab, color="tab:red", ls="-.", alpha=0.6, label="leaderboard CrabNet (full data)")
    return _save_fraction_plot(fig, ax, t, task, "test MAE", path)


def _strategy_lines(ax: Any, t: pd.DataFrame, metric: str) -> None:
    """One line per student, teacher and strategy: ``<metric>_mean`` ± ``<metric>_std`` against fraction."""
    for (student, teacher, strategy), g in t.groupby(["student", "teacher", "strategy"]):
        label = f"{student} {strategy}" + ("" if strategy == "baseline" else f" ({teacher})")
        ax.errorbar(g["fraction"], g[f"{metric}_mean"], yerr=g[f"{metric}_std"], marker="o", capsize=3, label=label)


def _save_fraction_plot(fig: Any, ax: Any, t: pd.DataFrame, task: str, ylabel: str, path: Path) -> Path:
    """Log fraction axis with a tick per fraction run, labels, legend; saved to ``path`` and closed."""
    import matplotlib.pyplot as plt

    ax.set_xscale("log")
    fractions = sorted(t["fraction"].unique())
    ax.set_xticks(fractions, [f"{f:g}" for f in fractions], minor=False)
    ax.minorticks_off()
    ax.set_xlabel("training fraction")
    ax.set_ylabel(ylabel)
    ax.set_title(task)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def _tsne(x: np.ndarray, seed: int = 0) -> np.ndarray:
    """2-d t-SNE of at most a few hundred rows (one thread: small inputs gain nothing from more,
    and spinning OpenMP threads can stall badly on small shared VMs)."""
    from sklearn.manifold import TSNE
    from threadpoolctl import threadpool_limits

    perplexity = float(min(30.0, max(2.0, (len(x) - 1) / 3)))
    with threadpool_limits(limits=1):
        return TSNE(n_components=2, perplexity=perplexity, init="pca", random_state=seed).fit_transform(x)


def tsne_inputs(
    run_dir: Path | Sequence[Path], task: str, student: str, teacher: str
) -> dict[str, Any] | None:
    """Saved test-row embeddings of the baseline and the T-S student of one fold (largest
    fraction where both exist), with the teacher's; None when not available."""
    roots = [Path(d) / "runs" / task for d in _run_dirs(run_dir)]
    candidates = []
    for strategy in ("ts", "ts-no-step1", "step1-only", "transfer", "transfer-fold"):
        ts_files = sorted(f for r in roots for f in (r / f"{student}__{teacher}" / strategy).glob("*.npz"))
        for ts_file in ts_files:
            base_file = next((r / f"{student}__none" / "baseline" / ts_file.name for r in roots
                              if (r / f"{student}__none" / "baseline" / ts_file.name).exists()), None)
            if base_file is not None:
                frac = float(ts_file.stem.split("_")[0][len("frac"):])
                candidates.append((-frac, strategy != "ts", ts_file.name, strategy, base_file, ts_file))
    if not candidates:
        return None
    *_, strategy, base_file, ts_file = min(candidates)
    base, ts = np.load(base_file), np.load(ts_file)
    if "teacher" not in ts.files or len(base["ids"]) < 5:
        return None
    return {"strategy": strategy, "file": ts_file.stem, "y": base["y_true"], "baseline": base["student"],
            "ts": ts["student"], "teacher": ts["teacher"]}


def plot_tsne(run_dir: Path | Sequence[Path], task: str, student: str, teacher: str, path: Path) -> Path | None:
    """Three t-SNE panels (student baseline, student T-S, teacher), coloured by target."""
    data = tsne_inputs(run_dir, task, student, teacher)
    if data is None:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    has_teacher = ~np.isnan(data["teacher"]).any(axis=1)
    panels = [(f"{student} baseline", data["baseline"], np.ones_like(has_teacher)),
              (f"{student} {data['strategy']} ({teacher})", data["ts"], np.ones_like(has_teacher)),
              (f"teacher {teacher}", data["teacher"], has_teacher)]
    fig, axes = plt.subplots(1, 3, figsize=(13, 4.2))
    for ax, (title, x, keep) in zip(axes, panels):
        ax.set_title(title, fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
        if keep.sum() < 5:
            ax.text(0.5, 0.5, "too few rows", ha="center", transform=ax.transAxes)
            continue
        xy = _tsne(np.asarray(x[keep], dtype=np.float64))
        sc = ax.scatter(xy[:, 0], xy[:, 1], c=data["y"][keep], s=8, cmap="viridis")
    fig.colorbar(sc, ax=axes, label="target", shrink=0.8)
    fig.suptitle(f"{task}: t-SNE of test-row embeddings ({data['file']})", fontsize=10)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


# ----------------------------------------------------------------------------- entry point
def write_report(
    run_dir: str | Path | Sequence[str | Path],
    out: str | Path | None = None,
    leaderboard: str | Path | None = None,
    tsne: bool = True,
) -> dict[str, list[Path]]:
    """Write ``<task>.md/.csv/.json``, ``<task>_mae_vs_fraction.png``, ``<task>_tsne_*.png`` and
    ``README.md``/``summary.csv`` (all tasks) into ``out`` (default ``<first run_dir>/report``).
    Several run directories are reported together (grids with different settings)."""
    run_dirs = _run_dirs(run_dir)
    results, classified = load_results(run_dirs), load_classification_results(run_dirs)
    if results.empty and classified.empty:
        raise ValueError(f"no finished runs under {[str(d / 'runs') for d in run_dirs]}")
    out = Path(out) if out is not None else run_dirs[0] / "report"
    out.mkdir(parents=True, exist_ok=True)
    board_path = Path(leaderboard) if leaderboard else next(filter(None, map(find_leaderboard, run_dirs)), None)
    board = json.loads(board_path.read_text()) if board_path else {}
    info = load_task_info(run_dirs)
    table = summarize(results, info, board) if len(results) else pd.DataFrame(columns=TABLE_COLUMNS)
    written: dict[str, list[Path]] = {"tables": [], "plots": [], "tsne": []}
    pages = []
    if len(classified):
        ctable = summarize_classification(classified, board)
        for task in ctable["task"].unique():
            written["plots"].append(plot_roc_auc_vs_fraction(task, ctable, out / f"{task}_roc_auc_vs_fraction.png"))
            page = classification_markdown(task, ctable)
            (out / f"{task}.md").write_text(page)
            pages.append(page)
            written["tables"].append(out / f"{task}.md")
        ctable.to_csv(out / "summary_classification.csv", index=False)
        written["tables"].append(out / "summary_classification.csv")
    for task in table["task"].unique():
        t = table[table["task"] == task]
        t.to_csv(out / f"{task}.csv", index=False)
        (out / f"{task}.json").write_text(json.dumps(
            {"task": task, "info": info.get(task, {}), "rows": json.loads(t.to_json(orient="records"))}, indent=1))
        plots = [plot_mae_vs_fraction(task, table, out / f"{task}_mae_vs_fraction.png")]
        written["plots"].append(plots[0])
        if tsne:
            pairs = t[t["teacher"] != "none"][["student", "teacher"]].drop_duplicates().itertuples(index=False)
            for student, teacher in pairs:
                p = plot_tsne(run_dirs, task, student, teacher, out / f"{task}_tsne_{student}_{teacher}.png")
                if p is not None:
                    plots.append(p)
                    written["tsne"].append(p)
        page = task_markdown(task, table, info.get(task, {}), plots)
        (out / f"{task}.md").write_text(page)
        pages.append(page)
        written["tables"] += [out / f"{task}.md", out / f"{task}.csv", out / f"{task}.json"]
    table.to_csv(out / "summary.csv", index=False)
    (out / "README.md").write_text("\n".join(pages))
    written["tables"] += [out / "summary.csv", out / "README.md"]
    return written
