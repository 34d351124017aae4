"""Speed and scale benchmark of matbench_ts (teachers, T-S training overhead, CrabNet, scaling).

Measures on one machine, in one run:

1. ``teacher``  teacher embedding throughput (structures/s) of CHGNet and ALIGNN on a sample of
   the mp_e_form proxy: a naive one-structure-at-a-time CHGNet loop, cold runs through a fresh
   ``TeacherCache`` (several CHGNetTeacher settings) and warm runs (cache hits: the number of
   teacher calls and model forward passes is counted and must be 0).
2. ``train``    student training time per epoch of ``ts`` (CHGNet teacher, warm cache) over
   ``baseline`` (teacher=None): same rows, model, batch size, fixed epochs, repeated and
   interleaved; the median ratio is reported.
3. ``crabnet``  our CrabNet student against the ``crabnet`` package's ``CrabNet.fit``/``predict``
   at the same model size, rows and epochs, each run in its own subprocess (fresh cwd).
4. ``scaling``  fit time (split into data loading, CIF parsing, teacher embedding, training)
   and peak memory (``ru_maxrss`` of a subprocess per run) against the training size.

Quick mode (about 17 minutes on 2 CPU cores)::

    OMP_WAIT_POLICY=PASSIVE python benchmarks/speed.py --quick --out benchmarks/results/speed_quick.json

Full mode (defaults; hours on a CPU, meant for a GPU machine: 100k rows for both strategies)::

    python benchmarks/speed.py --out runs/speed_full.json

CUDA is used when present (``--device`` overrides). ``--amp`` adds mixed-precision arms to
``train`` (ratios to float32, interleaved) and trains the ``scaling`` runs with it. On a GPU
machine, the whole mp_e_form proxy end to end::

    python benchmarks/speed.py --sections scaling --sizes-baseline "" --sizes-ts 107000 --amp --out runs/gpu_full.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

DEFAULT_DATA = Path(os.environ.get("MATBENCH_TS_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))
CPU_CRABNET = dict(d_model=128, N=2, heads=4, out_hidden=[256, 128, 64], dim_feedforward=256)
TINY_ALIGNN = dict(alignn_layers=1, gcn_layers=1, hidden_features=32, embedding_features=16)


def log(*args) -> None:
    print(f"[{time.strftime('%H:%M:%S')}]", *args, file=sys.stderr, flush=True)


def load_proxy(data: Path, n: int | None, seed: int = 0):
    """``n`` random rows (all when None or larger) of the mp_e_form proxy, as a DataFrame."""
    import pandas as pd

    df = pd.read_json(data / "matbench_proxy" / "matbench_mp_e_form.jsonl.gz", lines=True)
    if n is not None and n < len(df):
        df = df.sample(n, random_state=seed)
    return df.reset_index(drop=True)


def parse_cifs(cifs) -> list:
    from pymatgen.core import Structure

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return [Structure.from_str(c, fmt="cif") for c in cifs]


def chgnet_graphable(structures, cutoff: float = 6.0) -> np.ndarray:
    """Mask of structures without isolated atoms (no neighbour within CHGNet's 6 A atom-graph
    cutoff): CHGNet refuses those (a few rows of the proxy), so the benchmark leaves them out."""
    keep = []
    for s in structures:
        centers = s.get_neighbor_list(cutoff)[0]
        keep.append(len(np.unique(centers)) == len(s))
    return np.array(keep, dtype=bool)


def maxrss_gb() -> float:
    """Peak resident memory of this process so far, GB: VmHWM (Linux), which starts afresh at exec,
    unlike ``ru_maxrss`` that a subprocess inherits from the parent it was forked from."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 2**20  # kB
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # Linux: KiB


def rss_gb() -> float:
    """Current resident memory of this process, GB (Linux)."""
    try:
        return int(Path("/proc/self/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**30
    except OSError:
        return float("nan")


class Counted:
    """Wrap a teacher's ``transform`` and count calls and structures."""

    def __init__(self, transform) -> None:
        self.transform, self.calls, self.structures = transform, 0, 0

    def __call__(self, structures):
        self.calls += 1
        self.structures += len(structures)
        return self.transform(structures)


def count_forwards(module) -> list:
    """A one-element list counting forward calls of ``module`` (a torch module)."""
    counter = [0]
    module.register_forward_pre_hook(lambda *_: counter.__setitem__(0, counter[0] + 1))
    return counter


# ---------------------------------------------------------------- 1. teacher throughput
def teacher_sample(args):
    """``args.n_teacher`` random rows of the proxy that CHGNet can embed, and their structures."""
    df = load_proxy(args.data, args.n_teacher + args.n_teacher // 20 + 20, seed=0)
    structures = parse_cifs(df.structure)
    keep = np.flatnonzero(chgnet_graphable(structures))[: args.n_teacher]
    return df.iloc[keep].reset_index(drop=True), [structures[i] for i in keep]


def bench_teacher(args, device: str, work: Path) -> dict:
    import torch

    from matbench_ts.cache import TeacherCache
    from matbench_ts.teachers.alignn import ALIGNNTeacher
    from matbench_ts.teachers.chgnet import CHGNetTeacher

    out: dict = {}
    df, structures = teacher_sample(args)
    t0 = time.perf_counter()
    parse_cifs(df.structure[:200])
    out["cif_parse_per_s"] = 200 / (time.perf_counter() - t0)
    out["n_structures"] = len(structures)
    out["mean_atoms"] = float(np.mean([len(s) for s in structures]))
    log(f"teacher: {len(structures)} structures, {out['mean_atoms']:.1f} atoms on average")

    model = CHGNetTeacher(device=device)._model()
    forwards = count_forwards(model)

    # naive: CHGNet.predict_structure one structure at a time (the model's own API)
    naive = structures[: args.n_naive]
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for s in naive:
            model.predict_structure(s)
    out["chgnet_naive_predict_structure_per_s"] = len(naive) / (time.perf_counter() - t0)
    log(f"chgnet naive predict_structure: {out['chgnet_naive_predict_structure_per_s']:.1f}/s")

    variants = {"bs1": dict(batch_size=1), "bs64": dict(batch_size=64), "bs16": dict(batch_size=16),
                "bs16_jobs2": dict(batch_size=16, n_jobs=2)}
    chgnet: dict = {}
    warm_dir = None
    for name, params in variants.items():
        teacher = CHGNetTeacher(device=device, **params)
        teacher._chgnet = model  # the weights are loaded once, outside the timings
        subset = naive if name == "bs1" else structures
        cache_dir = Path(tempfile.mkdtemp(dir=work, prefix=f"chgnet_{name}_"))
        counted = Counted(teacher.transform)
        with TeacherCache(cache_dir) as cache:
            t0 = time.perf_counter()
            emb = cache.embeddings(teacher.cache_id(), subset, counted)
            elapsed = time.perf_counter() - t0
        chgnet[f"cold_{name}"] = {"params": params, "n": len(subset), "seconds": elapsed,
                                  "per_s": len(subset) / elapsed, "teacher_calls": counted.calls}
        log(f"chgnet cold {name}: {len(subset) / elapsed:.1f}/s")
        if name == "bs16":
            warm_dir, reference = cache_dir, emb
    # warm: a fresh teacher object (no model in memory either) and a fresh cache handle
    teacher = CHGNetTeacher(device=device)
    teacher._chgnet = model
    counted = Counted(teacher.transform)
    before = forwards[0]
    with TeacherCache(warm_dir) as cache:
        t0 = time.perf_counter()
        emb = cache.embeddings(teacher.cache_id(), structures, counted)
        elapsed = time.perf_counter() - t0
        computed = cache.computed
    chgnet["warm"] = {"n": len(structures), "seconds": elapsed, "per_s": len(structures) / elapsed,
                      "teacher_calls": counted.calls, "model_forwards": forwards[0] - before,
                      "cache_computed": computed, "identical_to_cold": bool(np.array_equal(emb, reference))}
    log(f"chgnet warm: {chgnet['warm']}")
    chgnet["speedup_cold_bs16_over_naive"] = chgnet["cold_bs16"]["per_s"] / out["chgnet_naive_predict_structure_per_s"]
    chgnet["speedup_cold_bs16_jobs2_over_naive"] = (
        chgnet["cold_bs16_jobs2"]["per_s"] / out["chgnet_naive_predict_structure_per_s"])
    out["chgnet"] = chgnet
    out["warm_cache_dir"] = str(warm_dir)

    # ALIGNN: a small teacher fitted on a few structures, then embedding cold and warm
    fit_idx = np.arange(min(args.alignn_fit, len(structures)))
    emb_structs = structures[: args.n_alignn]
    teacher = ALIGNNTeacher(**TINY_ALIGNN, epochs=args.alignn_epochs, batch_size=32, random_state=0, device=device)
    t0 = time.perf_counter()
    teacher.fit([structures[i] for i in fit_idx], df.target.values[fit_idx])
    fit_s = time.perf_counter() - t0
    alignn = {"params": {**TINY_ALIGNN, "epochs": args.alignn_epochs, "batch_size": 32},
              "fit_rows": len(fit_idx), "fit_seconds": fit_s,
              "n_parameters": sum(p.numel() for p in teacher.model_.parameters())}
    forwards = count_forwards(teacher.model_)
    cache_dir = Path(tempfile.mkdtemp(dir=work, prefix="alignn_"))
    for phase in ("cold", "warm"):
        counted = Counted(teacher.transform)
        before = forwards[0]
        with TeacherCache(cache_dir) as cache:
            t0 = time.perf_counter()
            cache.embeddings("alignn-bench", emb_structs, counted)
            elapsed = time.perf_counter() - t0
        alignn[phase] = {"n": len(emb_structs), "seconds": elapsed, "per_s": len(emb_structs) / elapsed,
                         "teacher_calls": counted.calls, "model_forwards": forwards[0] - before}
        log(f"alignn {phase}: {alignn[phase]}")
    # where ALIGNN's cold time goes: graph building vs model
    t0 = time.perf_counter()
    graphs = teacher._graphs(emb_structs[:200])
    alignn["graph_build_per_s"] = len(graphs) / (time.perf_counter() - t0)
    out["alignn"] = alignn
    torch.set_grad_enabled(True)
    return out


# ---------------------------------------------------------------- 2. ts over baseline
class EpochClock:
    """Timestamps of the end of each epoch: wraps ``matbench_ts.training.evaluate`` (called once
    per epoch, after its training batches), so epoch times exclude the per-fit fixed costs
    (input parsing, cache look-up, encoding, alpha balancing)."""

    def __init__(self) -> None:
        import matbench_ts.training as training

        self.training, self.original, self.stamps = training, training.evaluate, []

    def __enter__(self):
        def timed(*a, **k):
            result = self.original(*a, **k)
            self.stamps.append(time.perf_counter())
            return result

        self.training.evaluate = timed
        return self

    def __exit__(self, *exc) -> None:
        self.training.evaluate = self.original

    def last_epochs(self, n: int) -> float:
        """Median time of the last ``n - 1`` epochs (the first one of a step has no start stamp)."""
        return statistics.median(np.diff(self.stamps[-n:]))


def bench_train(args, device: str, warm_dir: str | None, work: Path) -> dict:
    from matbench_ts import TSRegressor

    df, structures = teacher_sample(args)  # the rows whose CHGNet embeddings are cached
    df, structures = df.iloc[: args.n_train], structures[: args.n_train]
    X, y = df.composition.tolist(), df.target.values
    cache_dir = warm_dir or str(Path(tempfile.mkdtemp(dir=work, prefix="train_cache_")))
    common = dict(student="crabnet", student_params=CPU_CRABNET, epochs=args.epochs, batch_size=args.batch_size,
                  patience=10**6, random_state=0, verbose=0, device=device, cache_dir=cache_dir)
    # warm the cache if it is not yet (not timed)
    TSRegressor(teacher="chgnet", **{**common, "epochs": 1, "epochs_step1": 0}).fit(X, y, structures=structures)
    settings = {
        "baseline": dict(teacher=None, epochs_step1=0),
        "ts": dict(teacher="chgnet", epochs_step1=0, alpha=1.0),  # step 2 only: same epochs as baseline
        "ts_step1": dict(teacher="chgnet", epochs_step1=args.epochs),  # default T-S: step 1 + step 2
    }
    if args.amp:  # the same fits under mixed precision, interleaved with the float32 ones
        settings.update({f"{name}_amp": {**settings[name], "mixed_precision": True} for name in ("baseline", "ts")})
    runs: dict[str, list] = {name: [] for name in settings}
    for rep in range(args.reps):
        order = list(settings) if rep % 2 == 0 else list(reversed(settings))
        for name in order:
            model = TSRegressor(**common, **settings[name])
            with EpochClock() as clock:
                t0 = time.perf_counter()
                model.fit(X, y, structures=None if name == "baseline" else structures)
                elapsed = time.perf_counter() - t0
            epochs = len(model.history_)
            assert getattr(model, "n_teacher_computed_", 0) == 0, "the cache was not warm"
            runs[name].append({"seconds": elapsed, "epochs": epochs, "per_epoch": clock.last_epochs(args.epochs),
                               "fit_seconds_per_epoch": elapsed / epochs})
            log(f"train {name} rep {rep}: {elapsed:.2f}s, {epochs} epochs")
    out: dict = {"n_rows": len(df), "n_train": int(round(len(df) * 0.9)), "batch_size": args.batch_size,
                 "epochs": args.epochs, "student_params": CPU_CRABNET, "runs": runs}
    for name, values in runs.items():
        out[f"{name}_median_epoch_s"] = statistics.median(v["per_epoch"] for v in values)
        out[f"{name}_samples_per_s"] = out["n_train"] / out[f"{name}_median_epoch_s"]
    out["ratio_ts_over_baseline_epoch"] = statistics.median(
        t["per_epoch"] / b["per_epoch"] for t, b in zip(runs["ts"], runs["baseline"]))
    out["ratio_ts_step1_over_baseline_epoch"] = statistics.median(
        t["per_epoch"] / b["per_epoch"] for t, b in zip(runs["ts_step1"], runs["baseline"]))
    out["ratio_ts_over_baseline_whole_fit"] = statistics.median(
        t["seconds"] / b["seconds"] for t, b in zip(runs["ts"], runs["baseline"]))
    for name in ("baseline", "ts"):
        if f"{name}_amp" in runs:
            out[f"ratio_{name}_amp_over_float32_epoch"] = statistics.median(
                a["per_epoch"] / f["per_epoch"] for a, f in zip(runs[f"{name}_amp"], runs[name]))
    return out


# ---------------------------------------------------------------- 3. vs the crabnet package
def worker_crabnet(spec: dict) -> dict:
    """Fit and predict with ``spec['impl']`` ('ours' or 'crabnet') in this process's cwd."""
    import torch
    from sklearn.model_selection import train_test_split

    df = load_proxy(Path(spec["data"]), spec["n_rows"] + spec["n_predict"], seed=1)
    train, test = df.iloc[: spec["n_rows"]], df.iloc[spec["n_rows"]:]
    size, epochs, batch = spec["size"], spec["epochs"], spec["batch_size"]
    if spec["impl"] == "crabnet":
        from crabnet.crabnet_ import CrabNet

        tr, va = train_test_split(np.arange(len(train)), test_size=0.1, random_state=0)
        frame = train.rename(columns={"composition": "formula"})[["formula", "target"]]
        model = CrabNet(**size, epochs=epochs, epochs_step=max(epochs // 2, 1), batch_size=batch, verbose=False,
                        losscurve=False, learningcurve=False, save=False, random_state=0,
                        compute_device=torch.device(spec["device"]))
        t0 = time.perf_counter()
        model.fit(frame.iloc[tr].reset_index(drop=True), frame.iloc[va].reset_index(drop=True))
        fit_s = time.perf_counter() - t0
        epochs_run = model.epoch + 1
        test_frame = pd_frame(test)
        t0 = time.perf_counter()
        model.predict(test_frame)
        predict_s = time.perf_counter() - t0
    else:
        from matbench_ts import TSRegressor

        model = TSRegressor(teacher=None, student="crabnet", student_params=size, epochs=epochs, epochs_step1=0,
                            batch_size=batch, patience=10**6, validation_fraction=0.1, random_state=0, verbose=0,
                            device=spec["device"])
        t0 = time.perf_counter()
        model.fit(train.composition.tolist(), train.target.values)
        fit_s = time.perf_counter() - t0
        epochs_run = len(model.history_)
        t0 = time.perf_counter()
        model.predict(test.composition.tolist())
        predict_s = time.perf_counter() - t0
    return {"impl": spec["impl"], "fit_seconds": fit_s, "epochs_run": epochs_run, "per_epoch": fit_s / epochs_run,
            "predict_seconds": predict_s, "predict_per_s": len(test) / predict_s, "maxrss_gb": maxrss_gb()}


def pd_frame(test):
    frame = test.rename(columns={"composition": "formula"})[["formula"]].reset_index(drop=True)
    frame["target"] = 0.0
    return frame


def run_worker(kind: str, spec: dict, cwd: Path) -> dict:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", kind, "--spec", json.dumps(spec)]
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        raise RuntimeError(f"worker {kind} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def bench_crabnet(args, device: str, work: Path) -> dict:
    spec = dict(data=str(args.data), n_rows=args.n_crabnet, n_predict=args.n_predict, size=CPU_CRABNET,
                epochs=args.crabnet_epochs, batch_size=args.batch_size, device=device)
    runs: dict[str, list] = {"ours": [], "crabnet": []}
    for rep in range(args.reps_crabnet):
        for impl in (["ours", "crabnet"] if rep % 2 == 0 else ["crabnet", "ours"]):
            cwd = Path(tempfile.mkdtemp(dir=work, prefix=f"crabnet_{impl}_"))
            result = run_worker("crabnet", {**spec, "impl": impl}, cwd)
            runs[impl].append(result)
            log(f"crabnet {impl} rep {rep}: {result}")
    out: dict = {"spec": spec, "runs": runs}
    pairs = list(zip(runs["ours"], runs["crabnet"]))
    out["ratio_fit_time_ours_over_crabnet"] = statistics.median(o["fit_seconds"] / c["fit_seconds"] for o, c in pairs)
    out["ratio_epoch_time_ours_over_crabnet"] = statistics.median(o["per_epoch"] / c["per_epoch"] for o, c in pairs)
    out["ratio_predict_throughput_ours_over_crabnet"] = statistics.median(
        o["predict_per_s"] / c["predict_per_s"] for o, c in pairs)
    return out


# ---------------------------------------------------------------- 4. scaling
def worker_scale(spec: dict) -> dict:
    from matbench_ts import TSRegressor
    from matbench_ts.cache import TeacherCache
    from matbench_ts.teachers.chgnet import CHGNetTeacher

    t0 = time.perf_counter()
    df = load_proxy(Path(spec["data"]), spec["n"], seed=2)
    cols = ["composition", "target"] + (["structure"] if spec["strategy"] == "ts" else [])
    df = df[cols]
    out = {"strategy": spec["strategy"], "n": len(df), "load_s": time.perf_counter() - t0,
           "maxrss_after_load_gb": maxrss_gb(), "rss_after_load_gb": rss_gb()}
    structures = None
    if spec["strategy"] == "ts":
        t0 = time.perf_counter()
        structures = parse_cifs(df.structure)
        df = df.drop(columns="structure")
        out["parse_s"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        keep = chgnet_graphable(structures)
        out["filter_s"], out["n_dropped_isolated_atoms"] = time.perf_counter() - t0, int((~keep).sum())
        structures = [s for s, k in zip(structures, keep) if k]
        df = df[keep].reset_index(drop=True)
        out["maxrss_after_parse_gb"], out["rss_after_parse_gb"] = maxrss_gb(), rss_gb()
        teacher = CHGNetTeacher(device=spec["device"], n_jobs=spec["n_jobs"])
        t0 = time.perf_counter()
        with TeacherCache(spec["cache_dir"]) as cache:
            cache.embeddings(teacher.cache_id(), structures, teacher.transform)
            out["teacher_computed"] = cache.computed
        out["teacher_s"] = time.perf_counter() - t0
        out["maxrss_after_teacher_gb"], out["rss_after_teacher_gb"] = maxrss_gb(), rss_gb()
    model = TSRegressor(teacher="chgnet" if structures is not None else None, student_params=spec["size"],
                        epochs=spec["epochs"], epochs_step1=spec["epochs"] if structures is not None else 0,
                        batch_size=spec["batch_size"], patience=10**6, random_state=0, verbose=0,
                        mixed_precision=spec.get("amp", False),
                        device=spec["device"], cache_dir=spec["cache_dir"])
    t0 = time.perf_counter()
    model.fit(df.composition.tolist(), df.target.values, structures=structures)
    out["train_s"] = time.perf_counter() - t0
    out["epochs_run"] = len(model.history_)
    out["train_s_per_epoch"] = out["train_s"] / out["epochs_run"]
    out["maxrss_gb"], out["rss_end_gb"] = maxrss_gb(), rss_gb()
    return out


def bench_scaling(args, device: str, work: Path) -> dict:
    runs = []
    for strategy, sizes, epochs in (("baseline", args.sizes_baseline, args.scale_epochs),
                                    ("baseline", args.sizes_baseline_1epoch, 1),
                                    ("ts", args.sizes_ts, args.scale_epochs)):
        for n in sizes:
            cache_dir = str(Path(tempfile.mkdtemp(dir=work, prefix=f"scale_{strategy}_{n}_")))
            spec = dict(data=str(args.data), n=n, strategy=strategy, epochs=epochs, batch_size=args.batch_size,
                        size=CPU_CRABNET, device=device, cache_dir=cache_dir, n_jobs=args.n_jobs, amp=args.amp)
            result = run_worker("scale", spec, work)
            runs.append(result)
            log(f"scaling {strategy} n={n}: {result}")
    return {"epochs": args.scale_epochs, "batch_size": args.batch_size, "student_params": CPU_CRABNET,
            "runs": runs}


# ---------------------------------------------------------------- main
def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small sizes (about 17 minutes on 2 CPU cores)")
    parser.add_argument("--sections", default="teacher,train,crabnet,scaling")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="shared data root (MATBENCH_TS_DATA)")
    parser.add_argument("--device", default=None, help="default: cuda when present, else cpu")
    parser.add_argument("--amp", action="store_true",
                        help="also time the training fits under mixed precision (TSRegressor(mixed_precision=True)); "
                        "scaling runs train with it")
    parser.add_argument("--out", type=Path, default=None, help="JSON file of the figures")
    parser.add_argument("--n-teacher", type=int, default=None, help="structures embedded by the teachers (2000)")
    parser.add_argument("--n-naive", type=int, default=None, help="structures of the naive CHGNet loop")
    parser.add_argument("--n-alignn", type=int, default=None, help="structures embedded by ALIGNN")
    parser.add_argument("--alignn-fit", type=int, default=None, help="rows ALIGNN is fitted on")
    parser.add_argument("--alignn-epochs", type=int, default=None)
    parser.add_argument("--n-train", type=int, default=None, help="rows of the ts-vs-baseline fits")
    parser.add_argument("--epochs", type=int, default=None, help="epochs of the ts-vs-baseline fits")
    parser.add_argument("--reps", type=int, default=None, help="repetitions of the ts-vs-baseline fits")
    parser.add_argument("--n-crabnet", type=int, default=None, help="rows of the crabnet comparison")
    parser.add_argument("--n-predict", type=int, default=None, help="rows predicted in the crabnet comparison")
    parser.add_argument("--crabnet-epochs", type=int, default=None)
    parser.add_argument("--reps-crabnet", type=int, default=None)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--n-jobs", type=int, default=2, help="CHGNet graph-building processes in the scaling runs")
    parser.add_argument("--sizes-baseline", default=None, help="comma-separated training sizes (baseline)")
    parser.add_argument("--sizes-baseline-1epoch", default=None, help="baseline sizes run with 1 epoch")
    parser.add_argument("--sizes-ts", default=None, help="comma-separated training sizes (ts)")
    parser.add_argument("--scale-epochs", type=int, default=None)
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--spec", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.worker:
        result = {"crabnet": worker_crabnet, "scale": worker_scale}[args.worker](json.loads(args.spec))
        print(json.dumps(result))
        return

    quick = dict(n_teacher=2000, n_naive=100, n_alignn=500, alignn_fit=200, alignn_epochs=2, n_train=2000,
                 epochs=8, reps=3, n_crabnet=2000, n_predict=5000, crabnet_epochs=10, reps_crabnet=2,
                 sizes_baseline="1000,10000", sizes_baseline_1epoch="100000", sizes_ts="1000,10000", scale_epochs=2)
    full = dict(n_teacher=2000, n_naive=200, n_alignn=2000, alignn_fit=2000, alignn_epochs=10, n_train=2000,
                epochs=20, reps=5, n_crabnet=10000, n_predict=20000, crabnet_epochs=40, reps_crabnet=3,
                sizes_baseline="1000,10000,100000", sizes_baseline_1epoch="", sizes_ts="1000,10000,100000",
                scale_epochs=3)
    for key, value in (quick if args.quick else full).items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    for key in ("sizes_baseline", "sizes_baseline_1epoch", "sizes_ts"):
        setattr(args, key, [int(v) for v in str(getattr(args, key)).split(",") if v])

    import torch

    from matbench_ts.device import resolve_device

    device = str(resolve_device(args.device))
    results: dict = {
        "command": "python " + " ".join([os.path.relpath(__file__)] + (argv if argv is not None else sys.argv[1:])),
        "mode": "quick" if args.quick else "full",
        "machine": {"platform": platform.platform(), "cpu_count": os.cpu_count(), "torch": torch.__version__,
                    "torch_threads": torch.get_num_threads(), "device": device,
                    "gpu": torch.cuda.get_device_name(0) if device.startswith("cuda") else None},
        "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()
                     if k not in ("worker", "spec", "out")},
        "started": time.strftime("%Y-%m-%d %H:%M:%S"),
    }
    sections = args.sections.split(",")
    with tempfile.TemporaryDirectory(prefix="matbench_ts_speed_") as tmp:
        work = Path(tmp)
        warm_dir = None
        for section in sections:
            t0 = time.perf_counter()
            log(f"section {section}")
            if section == "teacher":
                results["teacher"] = bench_teacher(args, device, work)
                warm_dir = results["teacher"]["warm_cache_dir"]
            elif section == "train":
                results["train"] = bench_train(args, device, warm_dir, work)
            elif section == "crabnet":
                results["crabnet"] = bench_crabnet(args, device, work)
            elif section == "scaling":
                results["scaling"] = bench_scaling(args, device, work)
            else:
                parser.error(f"unknown section {section!r}")
            results.setdefault("section_seconds", {})[section] = time.perf_counter() - t0
            if args.out:  # write as we go: a long run keeps what it measured
                args.out.parent.mkdir(parents=True, exist_ok=True)
                args.out.write_text(json.dumps(results, indent=1, default=float))
    results["finished"] = time.strftime("%Y-%m-%d %H:%M:%S")
    text = json.dumps(results, indent=1, default=float)
    if args.out:
        args.out.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
