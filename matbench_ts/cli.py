"""``matbench-ts``: benchmark grids, reports and Matbench submissions from the command line.

::

    matbench-ts bench --tasks matbench_perovskites,matbench_log_gvrh --fractions 0.05,0.25,1 \\
        --strategies baseline,ts,ts-no-step1,step1-only --student crabnet --teacher chgnet \\
        --folds 0,1,2,3,4 --out runs/perov
    matbench-ts report runs/perov
    matbench-ts embed --tasks matbench_dielectric --teacher chgnet   # warm the teacher cache first
    matbench-ts submit --tasks matbench_steels --strategy baseline --out submission/
    matbench-ts pretrain --out crabnet-chgnet-mp.pt   # a student aligned to CHGNet on all MP structures
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from typing import Any


def _list(cast: Callable[[str], Any]) -> Callable[[str], list]:
    def parse(text: str) -> list:
        try:
            return [cast(item.strip()) for item in text.split(",") if item.strip()]
        except ValueError as exc:
            raise argparse.ArgumentTypeError(f"bad list {text!r}: {exc}") from None

    return parse


def _json_dict(text: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise argparse.ArgumentTypeError(f"not JSON: {exc}") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError("expected a JSON object")
    return value


def _alpha(text: str) -> float | str:
    from .estimator import ALPHA_NAMES

    if text in ALPHA_NAMES:
        return text
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {', '.join(ALPHA_NAMES)} or a number, got {text!r}") from None


def _recipe(text: str) -> str | dict[str, Any]:
    from .recipe import resolve_recipe

    value = json.loads(text) if text.lstrip().startswith("{") else text
    try:
        resolve_recipe(value, "crabnet")
    except (TypeError, ValueError) as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return value


def _common(parser: argparse.ArgumentParser) -> None:
    """Options shared by ``bench`` and ``submit``: data, models, training, execution."""
    data = parser.add_argument_group("data")
    data.add_argument("--data-dir", help="folder of task files <task>.jsonl.gz (also searched: its matbench_proxy/ and "
                      "ci/ subfolders); default $MATBENCH_TS_DATA")
    data.add_argument("--structure-library", help="structure file (composition, structure[, e_form]) for "
                      "reduced-formula "
                      "look-up of teacher structures on rows without one (e.g. mp2018_eform_gap.jsonl.gz)")
    models = parser.add_argument_group("models and training")
    models.add_argument("--profile", default="auto", choices=["auto", "tiny", "cpu", "gpu"],
                        help="size/epoch preset: cpu = smaller student, fewer epochs; gpu = CrabNet's published sizes; "
                        "tiny = smoke tests; auto = gpu when CUDA is present (default)")
    models.add_argument("--student-params", type=_json_dict, help="JSON overriding the preset student sizes")
    models.add_argument("--pretrained", help="checkpoint of the pretrained/pretrained-ts strategies: a shipped name "
                        "(matbench_ts.pretrained.available()) or a .pt file from `matbench-ts pretrain`")
    models.add_argument("--teacher-params", type=_json_dict, help="JSON overriding the teacher parameters")
    for name, cast in (("epochs", int), ("epochs-step1", int), ("batch-size", int), ("patience", int),
                       ("learning-rate", float), ("beta", float), ("validation-fraction", float)):
        models.add_argument(f"--{name}", type=cast, help="overrides the preset")
    models.add_argument("--recipe", type=_recipe, help="training recipe: auto (the student's published one), "
                        "crabnet, roost, plain, or JSON overrides such as '{\"base\": \"crabnet\", \"swa\": false}'")
    models.add_argument("--alpha", type=_alpha, help="'auto', 'auto-init', 'auto-step2' or a number (overrides the preset)")
    models.add_argument("--mixed-precision", action="store_true",
                        help="train the student under autocast (bfloat16/float16; for GPUs)")
    run = parser.add_argument_group("execution")
    run.add_argument("--cache-dir", help="teacher embedding cache (default $MATBENCH_TS_CACHE or ~/.cache/matbench_ts)")
    run.add_argument("--device", help="cuda, cpu... (default: CUDA when present)")
    run.add_argument("--n-jobs", type=int, default=1, help="parallel runs (joblib; -1 = all cores)")
    run.add_argument("--scheduler", help="address of a Dask scheduler: runs go to that cluster (joblib Dask backend)")
    run.add_argument("--threads", type=int, help="torch threads per run (1 is best for many small CPU runs)")
    run.add_argument("-q", "--quiet", action="store_true", help="no progress bars")


def _config_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    names = ("epochs", "epochs_step1", "batch_size", "patience", "learning_rate", "beta", "validation_fraction",
             "alpha", "recipe")
    return dict(
        profile=args.profile, student_params=args.student_params, teacher_params=args.teacher_params,
        estimator_params={**{n: getattr(args, n) for n in names if getattr(args, n) is not None},
                          **({"mixed_precision": True} if args.mixed_precision else {})},
        data_dir=args.data_dir, structure_library=args.structure_library, cache_dir=args.cache_dir,
        pretrained=args.pretrained, device=args.device, n_jobs=args.n_jobs, scheduler=args.scheduler, threads=args.threads,
        verbose=0 if args.quiet else 1,
    )


def build_parser() -> argparse.ArgumentParser:
    from .bench.config import PRETRAIN_MAX, STRATEGIES
    from .pretrain import DEFAULT_LIBRARY

    parser = argparse.ArgumentParser(prog="matbench-ts",
                                     description="Does the teacher help on my task, and by how much?")
    sub = parser.add_subparsers(dest="command", required=True)

    bench = sub.add_parser("bench", help="run a (task x fraction x strategy x fold x seed) grid, resumable",
                           formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    bench.add_argument("--tasks", type=_list(str), required=True,
                       help="task names (local file under --data-dir, else official matbench) or file paths")
    bench.add_argument("--out", required=True, help="run directory (results, config.json); rerun to resume")
    bench.add_argument("--fractions", type=_list(float), default=[1.0], help="training fractions (nested subsamples)")
    bench.add_argument("--strategies", type=_list(str), default=["baseline", "ts"],
                       help="comma list of: " + ", ".join(f"{k} ({v})" for k, v in STRATEGIES.items()))
    bench.add_argument("--student", type=_list(str), default=["crabnet"], help="crabnet, roost (comma list)")
    bench.add_argument("--teacher", type=_list(str), default=["chgnet"], help="chgnet, alignn (comma list)")
    bench.add_argument("--folds", type=_list(int), default=[0, 1, 2, 3, 4], help="official test folds")
    bench.add_argument("--seeds", type=_list(int), default=[0], help="seeds (subsample, split, init)")
    bench.add_argument("--source", default="auto", choices=["auto", "local", "matbench"],
                       help="local files, the official matbench package, or local when found")
    bench.add_argument("--pretrain-library", help="step-1 structures of 'transfer' (default --structure-library)")
    bench.add_argument("--pretrain-max", type=int, default=PRETRAIN_MAX,
                       help="library structures sampled for 'transfer' (0: all of them)")
    bench.add_argument("--no-predictions", action="store_true", help="do not store test predictions in run files")
    bench.add_argument("--n-embed", type=int, default=500, help="test rows whose embeddings are saved (t-SNE)")
    bench.add_argument("--inner-validation", type=float, default=0.0, metavar="SHARE",
                       help="model selection: hold out SHARE (e.g. 0.2) of each training fold and score on it; "
                       "the test folds are not used")
    _common(bench)

    report = sub.add_parser("report", help="tables (md/csv/json), MAE-vs-fraction plots, t-SNE of a run directory")
    report.add_argument("run_dir", nargs="+", help="run directories (several are reported together)")
    report.add_argument("--out", help="report folder (default: the first RUN_DIR/report)")
    report.add_argument("--leaderboard", help="matbench_v0.1_mean_scores.json (default: under the data dir)")
    report.add_argument("--no-tsne", action="store_true", help="skip the t-SNE maps")

    embed = sub.add_parser("embed", help="compute a frozen teacher's embeddings of whole tasks into the cache "
                           "(before a parallel grid)", formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    embed.add_argument("--tasks", type=_list(str), required=True, help="task names or file paths")
    embed.add_argument("--teacher", default="chgnet", help="a frozen teacher (chgnet)")
    embed.add_argument("--teacher-params", type=_json_dict, help="JSON teacher parameters (e.g. n_jobs, layer)")
    embed.add_argument("--data-dir", help="as for bench (default $MATBENCH_TS_DATA)")
    embed.add_argument("--source", default="auto", choices=["auto", "local", "matbench"])
    embed.add_argument("--structure-library", help="formula look-up for rows without a structure")
    embed.add_argument("--cache-dir", help="default $MATBENCH_TS_CACHE or ~/.cache/matbench_ts")

    pre = sub.add_parser("pretrain", help="align a student to a frozen teacher on a structure library and save "
                         "the checkpoint (resumable)", formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    pre.add_argument("--out", required=True, help="checkpoint file (.pt); the library embeddings and per-epoch "
                     "training state go to OUT.work/ (what a rerun resumes from; delete it once done)")
    pre.add_argument("--library", type=_list(str), default=list(DEFAULT_LIBRARY),
                     help="structure files (file names are looked up under --data-dir); repeated ids are kept once")
    pre.add_argument("--exclude-formulas", help="leave out these reduced formulas: a text file (one per line) or "
                     "comma-separated task names (all their rows)")
    pre.add_argument("--max-structures", type=int, help="a seeded sample of this many library structures "
                     "(after exclusion; default: all)")
    pre.add_argument("--student", default="crabnet", help="crabnet or roost")
    pre.add_argument("--student-params", type=_json_dict, help="JSON student sizes (default: the cpu profile's)")
    pre.add_argument("--teacher", default="chgnet", help="a frozen teacher")
    pre.add_argument("--teacher-params", type=_json_dict, help="JSON teacher parameters")
    pre.add_argument("--epochs", type=int, default=200, help="maximum epochs (a recipe with early_stopping may stop earlier)")
    pre.add_argument("--recipe", type=_recipe, default="auto", help="as for bench")
    pre.add_argument("--learning-rate", type=float)
    pre.add_argument("--batch-size", type=int)
    pre.add_argument("--validation-fraction", type=float, default=0.05)
    pre.add_argument("--seed", type=int, default=0)
    pre.add_argument("--data-dir", help="as for bench (default $MATBENCH_TS_DATA)")
    pre.add_argument("--cache-dir", help="default $MATBENCH_TS_CACHE or ~/.cache/matbench_ts")
    pre.add_argument("--device", help="cuda, cpu... (default: CUDA when present)")
    pre.add_argument("--threads", type=int, help="torch threads")
    pre.add_argument("-q", "--quiet", action="store_true", help="no progress bars")

    submit = sub.add_parser("submit", help="official Matbench folds -> results.json.gz + info.json",
                            formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    submit.add_argument("--tasks", type=_list(str), required=True, help="official matbench task names")
    submit.add_argument("--out", required=True, help="submission folder")
    submit.add_argument("--strategy", default="ts", choices=list(STRATEGIES))
    submit.add_argument("--student", default="crabnet")
    submit.add_argument("--teacher", default="chgnet", help="'none' for the baseline")
    submit.add_argument("--seed", type=int, default=0)
    submit.add_argument("--authors", default="matbench-ts user", help="info.json authors")
    submit.add_argument("--algorithm", help="info.json short algorithm name (5-15 characters)")
    submit.add_argument("--notes", default="", help="info.json free-form notes")
    _common(submit)
    return parser


def _bench(args: argparse.Namespace) -> int:
    from .bench.config import BenchConfig
    from .bench.runner import run_grid

    config = BenchConfig(
        out=args.out, tasks=args.tasks, fractions=args.fractions, strategies=args.strategies, folds=args.folds,
        seeds=args.seeds, students=args.student, teachers=args.teacher, source=args.source,
        pretrain_library=args.pretrain_library, pretrain_max=args.pretrain_max,
        save_predictions=not args.no_predictions, n_embed=args.n_embed, inner_validation=args.inner_validation,
        **_config_kwargs(args),
    )
    summary = run_grid(config)
    print(f"{summary.total} runs: {len(summary.executed)} executed, {summary.skipped} already done, "
          f"{len(summary.failed)} failed -> {args.out}")
    for run_id, error in summary.failed.items():
        print(f"FAILED {run_id}: {error}", file=sys.stderr)
    return 1 if summary.failed else 0


def _report(args: argparse.Namespace) -> int:
    from .bench.report import write_report

    written = write_report(args.run_dir, out=args.out, leaderboard=args.leaderboard, tsne=not args.no_tsne)
    readme = next(p for p in written["tables"] if p.name == "README.md")
    print(readme.read_text())
    print(f"written: {len(written['tables'])} tables, {len(written['plots'])} plots, "
          f"{len(written['tsne'])} t-SNE maps in {readme.parent}")
    return 0


def _embed(args: argparse.Namespace) -> int:
    from .bench.embed import embed_tasks

    done = embed_tasks(args.tasks, args.teacher, args.teacher_params, data_dir=args.data_dir, source=args.source,
                       structure_library=args.structure_library, cache_dir=args.cache_dir)
    for task, d in done.items():
        print(f"{task}: {d['n_structures']} structures, {d['n_computed']} computed by {d['teacher_id']} "
              f"in {d['seconds']} s")
    return 0


def _pretrain(args: argparse.Namespace) -> int:
    import torch

    from .bench.config import preset_student_params
    from .pretrain import exclusion_formulas, pretrain
    from .pretrained import load

    excluded, source = exclusion_formulas(args.exclude_formulas, args.data_dir)
    if args.threads:
        torch.set_num_threads(args.threads)
    params = args.student_params if args.student_params is not None else preset_student_params("cpu", args.student)
    path = pretrain(args.out, args.library, student=args.student, student_params=params, teacher=args.teacher,
                    teacher_params=args.teacher_params, exclude_formulas=excluded, exclude_source=source,
                    max_structures=args.max_structures,
                    epochs=args.epochs, recipe=args.recipe, learning_rate=args.learning_rate,
                    batch_size=args.batch_size, validation_fraction=args.validation_fraction, data_dir=args.data_dir,
                    cache_dir=args.cache_dir, device=args.device, random_state=args.seed,
                    verbose=0 if args.quiet else 1)
    summary = load(path).summary()
    lib = summary["library"]
    print(f"{summary['id']}: {summary['student']} aligned to {summary['teacher_id']} on {lib['size']} structures "
          f"({lib['n_excluded']} excluded, {lib['n_unembeddable']} not embeddable), {summary['epochs']} epochs, "
          f"validation embedding loss {summary['val_loss']:.4f} -> {path}")
    return 0


def _submit(args: argparse.Namespace) -> int:
    from .bench.submit import make_submission

    paths = make_submission(
        args.tasks, args.out, strategy=args.strategy, student=args.student,
        teacher=None if args.teacher.lower() == "none" else args.teacher, seed=args.seed,
        authors=args.authors, algorithm=args.algorithm, notes=args.notes, **_config_kwargs(args),
    )
    from matbench.bench import MatbenchBenchmark

    mb = MatbenchBenchmark.from_file(str(paths["results"]))
    for task in mb.tasks:
        metric = "rocauc" if task.metadata.task_type == "classification" else "mae"
        score = task.scores[metric]
        print(f"{task.dataset_name}: {metric} {score['mean']:.4g} ± {score['std']:.2g} over {len(task.folds)} folds")
    print("written: " + ", ".join(str(p) for p in paths.values()))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``matbench-ts`` command."""
    args = build_parser().parse_args(argv)
    from .bench.config import ConfigMismatchError
    from .bench.runner import GridInterrupted

    try:
        return {"bench": _bench, "report": _report, "embed": _embed, "submit": _submit,
                "pretrain": _pretrain}[args.command](args)
    except (ConfigMismatchError, FileNotFoundError, ValueError) as exc:
        print(f"matbench-ts {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except GridInterrupted as exc:
        print(f"matbench-ts {args.command}: interrupted by {exc}: finished runs are kept in {args.out}; "
              "rerun the same command to resume", file=sys.stderr)
        return 128 + exc.signum


if __name__ == "__main__":
    sys.exit(main())
