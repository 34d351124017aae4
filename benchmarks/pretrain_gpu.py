"""The default-library checkpoints (issue #11), built on a machine with a GPU and many cores.

The same checkpoints as ``benchmarks/pretrained.sh``'s phases ``ship`` and ``bench_checkpoint``
(``matbench-ts pretrain``: CrabNet and Roost at the cpu profile's size, CHGNet teacher, 60 epochs,
the default library; the benchmark one without the formulas of the evaluated tasks), made faster:
the library's CIFs are parsed in parallel workers, CHGNet builds its graphs in parallel workers
while the GPU embeds, then the students are trained side by side on the GPU, one process each. The
checkpoints record the same library (file names, content hash, size) as ``matbench-ts pretrain``.

    python benchmarks/pretrain_gpu.py exclusions --out FILE     # where the task data is: the formulas to leave out
    python benchmarks/pretrain_gpu.py build --out DIR --exclusions FILE [--jobs N] [--deadline S]
    python benchmarks/pretrain_gpu.py build --out DIR --exclusions FILE --part K/N   # embeddings of one slice only
    python benchmarks/pretrain_gpu.py import-cache FILE...       # the exported embeddings into the local cache
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from matbench_ts.pretrain import DEFAULT_LIBRARY

EVALUATED = ("matbench_steels,matbench_expt_gap,matbench_glass,matbench_jdft2d,matbench_phonons,"
             "matbench_dielectric,matbench_log_gvrh,matbench_perovskites")
#: name -> (student, leave out the evaluated tasks' formulas)
CHECKPOINTS = {"crabnet-chgnet-mp": ("crabnet", False), "crabnet-chgnet-mp-bench": ("crabnet", True),
               "roost-chgnet-mp": ("roost", False)}
EPOCHS = 60
EXPORT_ROWS = 40_000  # embeddings per exported file (about 12 MB: the device tool returns files up to 16 MiB)


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def read_exclusions(path: str) -> tuple[set[str], list[str]]:
    """The formulas of an ``exclusions`` file and the tasks they came from (its first line)."""
    from matbench_ts.pretrain import exclusion_formulas

    formulas, _ = exclusion_formulas(path)
    with open(path) as fh:
        return formulas, fh.readline().removeprefix("# tasks: ").strip().split(",")


def cmd_exclusions(args: argparse.Namespace) -> None:
    from matbench_ts.pretrain import exclusion_formulas

    formulas, tasks = exclusion_formulas(EVALUATED, args.data_dir)
    Path(args.out).write_text(f"# tasks: {','.join(tasks)}\n" + "\n".join(sorted(formulas)) + "\n")
    print(f"{len(formulas)} formulas of {len(tasks)} tasks -> {args.out}")


def _parse_chunk(cifs: list[str], start: int) -> list:
    from matbench_ts.inputs import parse_structure

    return [parse_structure(cif, start + i) for i, cif in enumerate(cifs)]


def cmd_build(args: argparse.Namespace) -> None:
    from joblib import Parallel, delayed

    from matbench_ts.cache import structure_key
    from matbench_ts.pretrain import embed_library, read_library
    from matbench_ts.teachers import frozen_cache_id, make_teacher

    out, work_root = Path(args.out), Path(args.work)
    out.mkdir(parents=True, exist_ok=True)
    timings: dict[str, float] = {}
    t0 = time.time()
    excluded, _ = read_exclusions(args.exclusions)
    full = read_library(args.library, (), args.data_dir)
    timings["read_library_s"] = time.time() - t0
    log(f"read {len(full.ids)} rows")
    if args.part:  # embeddings only, of one slice of the library: a command's time limit holds a part
        k, n = map(int, args.part.split("/"))
        rows = np.array_split(np.arange(len(full.ids)), n)[k - 1]
        full = full.take(rows)
        log(f"part {k} of {n}: rows {rows[0]}-{rows[-1]}")

    t0 = time.time()
    step = 2048
    chunks = Parallel(n_jobs=args.jobs)(delayed(_parse_chunk)(full.structures[i:i + step], i)
                                        for i in range(0, len(full.ids), step))
    parsed = [s for chunk in chunks for s in chunk]
    by_id = dict(zip(full.ids, parsed))
    timings["parse_s"] = time.time() - t0
    log("parsed")

    teacher = make_teacher("chgnet", {"n_jobs": args.jobs, "batch_size": args.teacher_batch})
    teacher.fit([], None)
    teacher_id = frozen_cache_id(teacher)  # the cache id does not depend on n_jobs or batch_size
    t0 = time.time()
    libraries = {False: full.with_structures(parsed)}
    if not args.part:
        bench = full.without(excluded)
        libraries[True] = bench.with_structures([by_id[i] for i in bench.ids])
    embedded = {}
    for leave_out, library in libraries.items():
        work = work_root / f"embed-{int(leave_out)}"
        embedded[leave_out] = embed_library(library, teacher, teacher_id, work, args.cache_dir, chunk_size=8192)
    timings["teacher_embeddings_s"] = time.time() - t0
    timings["library_size"] = len(full.ids)
    log(f"embedded {len(full.ids)} structures: {timings}")

    lib = embedded[False]  # exported for the local cache: keys of the embeddable rows, in library order
    left_out = set(lib["unembeddable"].tolist())
    keys = np.array([f"{teacher_id}/{structure_key(s)}" for i, s in zip(full.ids, parsed) if i not in left_out])
    prefix = f"embeddings-{args.part.replace('/', 'of')}" if args.part else "embeddings"
    for j, rows in enumerate(np.array_split(np.arange(len(keys)), -(-len(keys) // EXPORT_ROWS))):
        np.savez_compressed(out / f"{prefix}-{j}.npz", keys=keys[rows], embeddings=lib["embeddings"][rows])
    log("embeddings exported")
    if args.part:
        return

    procs = {}
    for name, (student, leave_out) in CHECKPOINTS.items():
        if args.only and name not in args.only.split(","):
            continue
        work = work_root / f"{name}.pt.work"
        work.mkdir(parents=True, exist_ok=True)
        shutil.copy(work_root / f"embed-{int(leave_out)}" / "library.npz", work / "library.npz")
        child_log = open(work_root / f"{name}.log", "w")
        procs[name] = (subprocess.Popen([sys.executable, __file__, "train", name, "--work", str(work_root),
                                         "--exclusions", args.exclusions, "--cache-dir", args.cache_dir,
                                         "--library", ",".join(args.library), "--epochs", str(args.epochs)]
                                        + (["--data-dir", args.data_dir] if args.data_dir else []),
                                        stdout=child_log, stderr=subprocess.STDOUT), time.time())
    deadline = args.start + args.deadline
    for name, (proc, started) in procs.items():
        try:
            proc.wait(timeout=max(1.0, deadline - time.time()))
            timings[f"{name}_step1_s"] = time.time() - started
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            timings[f"{name}_step1_s"] = None  # stopped at the deadline; its state is kept for a resume
        ckpt = work_root / f"{name}.pt"
        if proc.returncode == 0 and ckpt.exists():
            shutil.copy(ckpt, out / ckpt.name)
        elif (work_root / f"{name}.pt.work" / "state.pt").exists():
            shutil.copy(work_root / f"{name}.pt.work" / "state.pt", out / f"{name}.state.pt")
    # one log file: the device tool returns at most 8 files
    with open(out / "build.log", "w") as build_log:
        for name in procs:
            build_log.write(f"===== {name}\n" + (work_root / f"{name}.log").read_text(errors="replace") + "\n")
        build_log.write("===== timings (s)\n" + json.dumps(timings, indent=1) + "\n")
    print(json.dumps(timings, indent=1))


def cmd_train(args: argparse.Namespace) -> None:
    import torch

    from matbench_ts.bench.config import preset_student_params
    from matbench_ts.pretrain import pretrain

    torch.set_num_threads(2)
    student, leave_out = CHECKPOINTS[args.name]
    excluded, tasks = read_exclusions(args.exclusions) if leave_out else (set(), [])
    t0 = time.time()
    path = pretrain(Path(args.work) / f"{args.name}.pt", args.library, student=student,
                    student_params=preset_student_params("cpu", student), teacher="chgnet",
                    exclude_formulas=excluded, exclude_source=tasks, epochs=args.epochs, data_dir=args.data_dir,
                    cache_dir=args.cache_dir, verbose=1)
    print(f"{path} in {time.time() - t0:.0f} s", flush=True)


def cmd_import_cache(args: argparse.Namespace) -> None:
    from matbench_ts.cache import TeacherCache

    with TeacherCache(args.cache_dir) as cache:
        for path in args.files:
            with np.load(path) as z:
                cache.add(z["keys"].tolist(), z["embeddings"])
                print(f"{path}: {len(z['keys'])} embeddings", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("exclusions")
    p.add_argument("--out", required=True)
    p.add_argument("--data-dir")
    p = sub.add_parser("build")
    p.add_argument("--out", required=True, help="checkpoints, embeddings, logs, timings")
    p.add_argument("--work", default="/tmp/pretrain_gpu", help="work folders (library embeddings, states)")
    p.add_argument("--exclusions", required=True)
    p.add_argument("--jobs", type=int, default=14)
    p.add_argument("--teacher-batch", type=int, default=64)
    p.add_argument("--deadline", type=float, default=3600, help="seconds from the start; unfinished students stop")
    p.add_argument("--only", help="comma list of checkpoint names")
    p.add_argument("--part", help="K/N: only embed (and export) the K-th of N slices of the library; no training")
    p.add_argument("--library", type=lambda s: s.split(","), default=list(DEFAULT_LIBRARY),
                   help="comma list of structure files (default: matbench-ts pretrain's)")
    p.add_argument("--epochs", type=int, default=EPOCHS)
    p.add_argument("--cache-dir", default="/tmp/pretrain_gpu/cache")
    p.add_argument("--data-dir")
    p = sub.add_parser("train")
    p.add_argument("name", choices=sorted(CHECKPOINTS))
    p.add_argument("--library", type=lambda s: s.split(","), default=list(DEFAULT_LIBRARY))
    p.add_argument("--epochs", type=int, default=EPOCHS)
    for flag in ("--work", "--exclusions", "--cache-dir"):
        p.add_argument(flag, required=True)
    p.add_argument("--data-dir")
    p = sub.add_parser("import-cache")
    p.add_argument("files", nargs="+")
    p.add_argument("--cache-dir")
    args = parser.parse_args()
    args.start = time.time()
    {"exclusions": cmd_exclusions, "build": cmd_build, "train": cmd_train,
     "import-cache": cmd_import_cache}[args.command](args)


if __name__ == "__main__":
    main()
