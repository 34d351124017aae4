"""A Matbench leaderboard submission: every official fold through ``MatbenchBenchmark``.

:func:`make_submission` runs the official folds with the benchmark runner (so it is resumable
and parallel like ``bench``), then records each fold's predictions with ``task.record(...,
params=...)`` and writes the three files a Matbench submission needs: ``results.json.gz``,
``info.json`` (authors, algorithm, algorithm_long, bibtex_refs, notes, requirements) and a
source file (``run_submission.py``) that reproduces it.
"""

from __future__ import annotations

import importlib.metadata
import json
import math
from pathlib import Path
from typing import Any

from .config import NO_TEACHER, STRATEGIES, BenchConfig, estimator_kwargs, teacher_provenance
from .report import fit_time
from .runner import RunSpec, result_path, run_grid
from .store import atomic_write_json

DISPLAY = {"crabnet": "CrabNet", "roost": "Roost", "chgnet": "CHGNet", "alignn": "ALIGNN"}
BIBTEX = {
    "matbench": """@article{Dunn2020,
  title = {Benchmarking materials property prediction methods:
           the Matbench test set and Automatminer reference algorithm},
  author = {Dunn, Alexander and Wang, Qi and Ganose, Alex and Dopp, Daniel and Jain, Anubhav},
  journal = {npj Computational Materials}, volume = {6}, pages = {138}, year = {2020},
  doi = {10.1038/s41524-020-00406-3}
}""",
    "crabnet": """@article{Wang2021crabnet,
  title = {Compositionally restricted attention-based network for materials property predictions},
  author = {Wang, Anthony Yu-Tung and Kauwe, Steven K. and Murdock, Ryan J. and Sparks, Taylor D.},
  journal = {npj Computational Materials}, volume = {7}, pages = {77}, year = {2021},
  doi = {10.1038/s41524-021-00545-1}
}""",
    "roost": """@article{Goodall2020roost,
  title = {Predicting materials properties without crystal structure: deep representation learning from stoichiometry},
  author = {Goodall, Rhys E. A. and Lee, Alpha A.},
  journal = {Nature Communications}, volume = {11}, pages = {6280}, year = {2020},
  doi = {10.1038/s41467-020-19964-7}
}""",
    "chgnet": """@article{Deng2023chgnet,
  title = {CHGNet as a pretrained universal neural network potential for charge-informed atomistic modelling},
  author = {Deng, Bowen and Zhong, Peichen and Jun, KyuJung and Riebesell, Janosh and Han, Kevin and
            Bartel, Christopher J. and Ceder, Gerbrand},
  journal = {Nature Machine Intelligence}, volume = {5}, pages = {1031--1041}, year = {2023},
  doi = {10.1038/s42256-023-00716-3}
}""",
    "alignn": """@article{Choudhary2021alignn,
  title = {Atomistic Line Graph Neural Network for improved materials property predictions},
  author = {Choudhary, Kamal and DeCost, Brian},
  journal = {npj Computational Materials}, volume = {7}, pages = {185}, year = {2021},
  doi = {10.1038/s41524-021-00650-1}
}""",
}
REQUIREMENTS = ("matbench-ts", "matbench", "torch", "numpy", "scikit-learn", "pymatgen")
MODEL_DISTRIBUTIONS = {"crabnet": "crabnet", "roost": "aviary-models", "chgnet": "chgnet", "alignn": "alignn"}


def _version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def algorithm_name(student: str, teacher: str | None, strategy: str) -> str:
    """Short leaderboard name (5-15 characters), e.g. ``CrabNet+CHGNet``."""
    name = DISPLAY.get(student, student)
    return f"{name}+{DISPLAY.get(teacher, teacher)}"[:15] if teacher and strategy != "baseline" else f"{name}-mbts"[:15]


#: What a classification submission's info.json says of its scores.
CLASSIFICATION_NOTE = (
    "Classification tasks record the probability of True, so Matbench's ROC-AUC is a real ROC-AUC; most "
    "leaderboard entries recorded labels, for which Matbench's 'ROC-AUC' equals the balanced accuracy: "
    "compare our balanced accuracy with theirs."
)


def is_matbench_classification(task: str) -> bool:
    """Whether ``task`` is a Matbench v0.1 classification task."""
    from matbench.constants import CLF_KEY
    from matbench.metadata import mbv01_metadata

    return task in mbv01_metadata and mbv01_metadata[task].task_type == CLF_KEY


def checkpoint_note(runs: list[dict[str, Any]]) -> tuple[str, str | None]:
    """What a submission's runs started from: a sentence for ``algorithm_long`` and the checkpoint's teacher.

    ``runs`` are the run results of one submission; a student trained from a pretrained checkpoint
    learnt from that checkpoint's teacher even when the runs compute none, and the checkpoint's
    library may hold test materials' structures (transductive): both are said, summed over folds.
    """
    used = [r for r in runs if r.get("pretrained")]
    if not used:
        return "", None
    first = used[0]["pretrained"]
    teacher = used[0]["teacher_info"]["teacher"]
    n_seen = sum(r["pretrained"]["n_test_formulas_seen"] for r in used)
    library = first["library"]
    sentence = (
        f" The student starts from the step-1 checkpoint {first['id']} (distilled from the embeddings of "
        f"{DISPLAY.get(teacher, teacher)} ({first['teacher_id']}) on {library['size']:,} structures of "
        f"{', '.join(library['paths'])}, targets unused). Its library holds {n_seen} reduced formulas of the test "
        f"folds (summed over folds): " + ("transductive (the structures, not the targets, of test materials were "
                                          "seen in pretraining)." if n_seen else "leak-safe.")
    )
    return sentence, teacher


def build_info(config: BenchConfig, authors: str, algorithm: str | None, notes: str,
               runs: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """The ``info.json`` of a submission (fields required by the Matbench repository).

    ``runs`` (the fold results) add what a pretrained checkpoint brings: its teacher's citation and
    provenance, and how many test formulas its library held.
    """
    student, strategy = config.students[0], config.strategies[0]
    teacher = config.teachers[0] if config.teachers and strategy != "baseline" else None
    kwargs = estimator_kwargs(config, student, teacher, strategy, seed=config.seeds[0], jsonable=True)
    long = (
        f"{DISPLAY.get(student, student)} predicting from the composition alone, trained with matbench-ts "
        f"(strategy '{strategy}': {STRATEGIES[strategy]})."
    )
    if teacher:
        long += (
            f" During training only, the student's embedding is taught to reproduce the embedding of the "
            f"crystal-structure model {DISPLAY.get(teacher, teacher)} (teacher-student: step 1 matches embeddings, "
            f"step 2 fits the target with the embedding loss weighted by alpha). Teacher structures come from the "
            f"task itself or, for composition-only "
            f"tasks, from a reduced-formula look-up in a structure library; predictions need compositions only."
        )
    checkpoint_sentence, checkpoint_teacher = checkpoint_note(runs or [])
    long += checkpoint_sentence
    long += f" Settings: {json.dumps({k: v for k, v in kwargs.items() if k != 'teacher'})}."
    taught_by = teacher or checkpoint_teacher  # the teacher whose knowledge the student carries
    leaks = [f"{t}: {teacher_provenance(taught_by, t, config.teacher_params)['leak_reason']}" for t in config.tasks]
    requirements = [*REQUIREMENTS, MODEL_DISTRIBUTIONS.get(student, student)]
    if teacher:
        requirements.append(MODEL_DISTRIBUTIONS.get(teacher, teacher))
    refs = [BIBTEX["matbench"], BIBTEX.get(student)] + ([BIBTEX.get(taught_by)] if taught_by else [])
    return {
        "authors": authors,
        "algorithm": algorithm or algorithm_name(student, teacher, strategy),
        "algorithm_long": long,
        "bibtex_refs": [r for r in refs if r],
        "notes": " ".join(filter(None, [
            notes,
            f"Profile '{config.profile}', seed {config.seeds[0]}, all training rows of each official fold.",
            "Teacher provenance: " + "; ".join(leaks) + "." if taught_by else "",
            f"Structure library for formula look-up: {config.structure_library}." if config.structure_library else "",
            CLASSIFICATION_NOTE if any(is_matbench_classification(t) for t in config.tasks) else "",
        ])),
        "requirements": {"python": [f"{d}=={_version(d)}" if _version(d) else d for d in dict.fromkeys(requirements)]},
    }


SOURCE_TEMPLATE = '''"""Reproduces this Matbench submission (results.json.gz, info.json) with matbench-ts {version}.

Equivalent command line:
    matbench-ts submit {args}

``make_submission`` trains ``matbench_ts.TSRegressor`` on every official fold of
``MatbenchBenchmark(subset=TASKS)`` (``task.get_train_and_val_data``), predicts
``task.get_test_data`` from compositions and calls ``task.record(fold, predictions, params=...)``.
"""
from matbench_ts.bench.submit import make_submission

make_submission(**{kwargs})
'''


def make_submission(
    tasks: list[str],
    out: str | Path,
    *,
    strategy: str = "ts",
    student: str = "crabnet",
    teacher: str | None = "chgnet",
    seed: int = 0,
    authors: str = "matbench-ts user",
    algorithm: str | None = None,
    notes: str = "",
    **config_kwargs: Any,
) -> dict[str, Path]:
    """Run the official folds of ``tasks`` and write a Matbench submission into ``out``.

    ``config_kwargs`` go to :class:`~matbench_ts.bench.config.BenchConfig` (profile,
    estimator_params, structure_library, n_jobs, scheduler, cache_dir...).
    Returns the paths of ``results.json.gz``, ``info.json`` and ``run_submission.py``.
    """
    from matbench.bench import MatbenchBenchmark

    if algorithm is not None and not 5 <= len(algorithm) <= 15:  # the leaderboard's limits, checked before any run
        raise ValueError(f"algorithm must have 5-15 characters (Matbench's limits), got {algorithm!r} "
                         f"({len(algorithm)} characters)")
    out = Path(out)
    use_teacher = strategy not in NO_TEACHER and teacher not in (None, "none")
    config_kwargs.setdefault("n_embed", 0)
    config = BenchConfig(
        out=str(out), tasks=list(tasks), fractions=[1.0], strategies=[strategy], seeds=[seed], students=[student],
        teachers=[teacher] if use_teacher else [], source="matbench", save_predictions=True, **config_kwargs,
    )
    summary = run_grid(config)
    if summary.failed:
        raise RuntimeError(f"{len(summary.failed)} fold(s) failed, no submission written: {summary.failed}")
    mb = MatbenchBenchmark(subset=list(tasks), autoload=False)
    runs = []
    for mb_task in mb.tasks:
        mb_task.load()
        for fold in mb_task.folds:
            spec = RunSpec(mb_task.dataset_name, 1.0, strategy, student, teacher if use_teacher else None, fold, seed)
            result = json.loads(result_path(config, spec).read_text())
            runs.append(result)
            by_id = dict(zip(result["predictions"]["ids"], result["predictions"]["y_pred"]))
            seconds = fit_time(result)
            test_ids = mb_task.get_test_data(fold, as_type="df").index
            params = {
                "strategy": strategy, "student": student, "teacher": result["teacher"] or "none", "seed": seed,
                "profile": config.profile, "alpha": result["alpha"], "n_train": result["n_train"],
                "epochs_run": result["epochs_run"], "teacher_id": result["teacher_info"]["teacher_id"] or "none",
                "teacher_leaky": str(result["teacher_info"]["leaky"]), "fit_time_s": None if math.isnan(seconds) else seconds,
                "estimator": {k: v for k, v in result["params"].items() if v is not None},
            }
            if result.get("pretrained"):  # the checkpoint and how many of this fold's test formulas it held
                params["pretrained_id"] = result["pretrained"]["id"]
                params["n_test_formulas_seen"] = result["pretrained"]["n_test_formulas_seen"]
            std = result["predictions"].get("y_std")
            std_by_id = None if std is None else dict(zip(result["predictions"]["ids"], std))
            mb_task.record(fold, [by_id[i] for i in test_ids], params=params,
                           std=None if std_by_id is None else [std_by_id[i] for i in test_ids])
    mb.add_metadata({"matbench_ts_version": _version("matbench-ts") or "unknown", "strategy": strategy,
                     "student": student, "teacher": teacher if use_teacher else "none", "profile": config.profile})
    results_path = out / "results.json.gz"
    mb.to_file(str(results_path))
    info_path = out / "info.json"
    atomic_write_json(info_path, build_info(config, authors, algorithm, notes, runs))
    call = dict(tasks=list(tasks), out=".", strategy=strategy, student=student, teacher=teacher, seed=seed,
                authors=authors, algorithm=algorithm, notes=notes,
                **{k: v for k, v in config_kwargs.items() if k not in ("n_jobs", "scheduler", "verbose", "cache_dir")})
    args = (f"--tasks {','.join(tasks)} --strategy {strategy} --student {student} "
            f"--teacher {teacher or 'none'} --seed {seed} --out .")
    source_path = out / "run_submission.py"
    source_path.write_text(SOURCE_TEMPLATE.format(version=_version("matbench-ts"), args=args, kwargs=repr(call)))
    return {"results": results_path, "info": info_path, "source": source_path}
