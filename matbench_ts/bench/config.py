"""The benchmark grid's settings: strategies, profiles (model sizes and training length), the
:class:`BenchConfig` of a grid, each run's estimator arguments, teacher provenance, and the
``config.json`` that binds an output directory to its settings (:func:`prepare_out`)."""

from __future__ import annotations

import dataclasses
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .data import DATA_ENV, task_name_of
from .store import atomic_write_json, to_jsonable

#: Strategy -> what it changes in the estimator (see :func:`estimator_kwargs`).
STRATEGIES: dict[str, str] = {
    "baseline": "student alone (teacher=None)",
    "ts": "teacher-student: step 1 (embedding) then step 2 (target + embedding, alpha='auto')",
    "ts-no-step1": "step 2 only (epochs_step1=0)",
    "step1-only": "step 1, then a target-only fine-tune (alpha=0)",
    "transfer": "step 1 on a structure library (pretrain_structures), then step 2",
    "transfer-fold": "step 1 on every structure of the training fold (targets of rows outside the fraction "
                     "unused), then step 2",
    "pretrained": "start from a pretrained student (--pretrained) and fine-tune on the targets: formulas only",
    "pretrained-ts": "start from a pretrained student, then step 2 guided by the task's structures",
}
#: Strategies that train without a teacher.
NO_TEACHER = ("baseline", "pretrained")
#: Strategies that start from the ``--pretrained`` checkpoint.
PRETRAINED = ("pretrained", "pretrained-ts")
#: Library structures that ``transfer`` runs step 1 on by default (0 in a config: all of them).
PRETRAIN_MAX = 5000
STUDENTS = ("crabnet", "roost")
TEACHERS = ("chgnet", "alignn")
#: Config fields that may differ between runs into the same directory.
HARMLESS_FIELDS = ("n_jobs", "scheduler", "threads", "verbose", "cache_dir", "device", "out")
#: Grid axes: each result is keyed by them, so a rerun may add values.
GRID_FIELDS = ("tasks", "fractions", "strategies", "folds", "seeds", "students", "teachers")

_TINY_CRABNET = dict(d_model=32, N=1, heads=2, out_hidden=(64, 32), dim_feedforward=64)
_TINY_ROOST = dict(elem_fea_len=16, n_graph=1, elem_heads=1, cry_heads=1, trunk_hidden=(64,), out_hidden=(32,))
#: Presets: student and teacher sizes and training length. "gpu" = the published sizes. The student
#: trains with its own published recipe (``recipe="auto"``), which also sets the batch size.
#: ``published_sizes_up_to``: runs with at most this many training rows use the published student
#: sizes (small data needs them: a CPU-sized CrabNet stays near the mean predictor on
#: matbench_steels, see docs/results.md, parity), larger runs the profile's own.
PROFILES: dict[str, dict[str, Any]] = {
    "tiny": {
        "student_params": {"crabnet": _TINY_CRABNET, "roost": _TINY_ROOST},
        "teacher_params": {
            "alignn": dict(alignn_layers=1, gcn_layers=1, hidden_features=32, embedding_features=16, epochs=5),
        },
        "estimator": dict(epochs=20, epochs_step1=10, batch_size=64, patience=10),
    },
    "cpu": {
        "student_params": {
            "crabnet": dict(d_model=128, N=2, heads=4, out_hidden=(256, 128, 64), dim_feedforward=256),
            "roost": dict(elem_fea_len=32, n_graph=2, trunk_hidden=(256,), out_hidden=(128, 64)),
        },
        "teacher_params": {
            "alignn": dict(alignn_layers=2, gcn_layers=2, hidden_features=64, embedding_features=32, epochs=30),
        },
        "estimator": dict(epochs=300, epochs_step1=100, patience=30),
        "published_sizes_up_to": 1000,
    },
    "gpu": {
        "student_params": {"crabnet": {}, "roost": {}},
        "teacher_params": {"alignn": dict(epochs=300)},
        "estimator": dict(epochs=300, epochs_step1=100, patience=30),
    },
}

#: Teacher provenance: what a pretrained teacher was trained on, and which tasks that leaks into.
TEACHER_PROVENANCE: dict[str, dict[str, Any]] = {
    "chgnet": {
        "pretrained_on": "Materials Project relaxation trajectories (MPtrj): energies, forces, stresses, magmoms",
        # MP-derived formation-energy tasks (matbench_mp_e_form, mp2018 e_form, the CI set...)
        "leaky_tasks": re.compile(r"(^|[_\-])mp\d*[_\-].*(e_?form|formation|energy)", re.IGNORECASE),
    },
}


class ConfigMismatchError(ValueError):
    """The output directory holds results of a different configuration."""


@dataclass
class BenchConfig:
    """Everything that defines a benchmark grid (saved as ``config.json`` in ``out``)."""

    out: str
    tasks: list[str]
    fractions: list[float] = field(default_factory=lambda: [1.0])
    strategies: list[str] = field(default_factory=lambda: ["baseline", "ts"])
    folds: list[int] = field(default_factory=lambda: [0, 1, 2, 3, 4])
    seeds: list[int] = field(default_factory=lambda: [0])
    students: list[str] = field(default_factory=lambda: ["crabnet"])
    teachers: list[str] = field(default_factory=lambda: ["chgnet"])
    profile: str = "auto"
    student_params: dict[str, Any] | None = None  # overrides the preset (or {student: {...}})
    teacher_params: dict[str, Any] | None = None  # overrides the preset (or {teacher: {...}})
    estimator_params: dict[str, Any] = field(default_factory=dict)  # epochs, alpha, batch_size...
    data_dir: str | None = None
    source: str = "auto"
    structure_library: str | None = None  # formula look-up for rows without a structure
    pretrain_library: str | None = None  # step-1 data of "transfer" (default: structure_library)
    pretrain_max: int = PRETRAIN_MAX
    pretrained: str | None = None  # checkpoint of the "pretrained" strategies (shipped name or .pt path)
    save_predictions: bool = True
    n_embed: int = 500  # test rows whose student/teacher embeddings are saved (.npz)
    inner_validation: float = 0.0  # > 0: score on this share of each training fold, not on its test fold
    cache_dir: str | None = None
    device: str | None = None
    n_jobs: int = 1
    scheduler: str | None = None
    threads: int | None = None  # torch threads per run (None: leave torch's setting)
    verbose: int = 1

    def __post_init__(self) -> None:
        unknown = [s for s in self.strategies if s not in STRATEGIES]
        if unknown:
            raise ValueError(f"unknown strategies {unknown}; choose from {list(STRATEGIES)}")
        if self.profile == "auto":
            import torch

            self.profile = "gpu" if torch.cuda.is_available() else "cpu"
        if self.profile not in PROFILES:
            raise ValueError(f"unknown profile {self.profile!r}; choose from {list(PROFILES)}")
        for f in self.fractions:
            if not 0 < f <= 1:
                raise ValueError(f"fractions must be in (0, 1], got {f}")
        self.fractions = sorted({float(f) for f in self.fractions})
        self.folds, self.seeds = [int(f) for f in self.folds], [int(s) for s in self.seeds]
        self.teachers = [t for t in self.teachers if t and str(t).lower() != "none"]
        for kind, names, known in (("student", self.students, STUDENTS), ("teacher", self.teachers, TEACHERS)):
            if not names and kind == "student" or any(n not in known for n in names):
                raise ValueError(f"unknown {kind}(s) {names}; choose from {list(known)}")
        if any(s not in NO_TEACHER for s in self.strategies) and not self.teachers:
            raise ValueError(f"strategies {self.strategies} need a teacher")
        if any(s in PRETRAINED for s in self.strategies) and not self.pretrained:
            raise ValueError(f"strategies {[s for s in self.strategies if s in PRETRAINED]} need a checkpoint "
                             "(--pretrained NAME|PATH)")
        self.pretrain_library = self.pretrain_library or self.structure_library
        if not 0 <= self.inner_validation < 1:
            raise ValueError(f"inner_validation must be in [0, 1), got {self.inner_validation}")
        if "transfer" in self.strategies:
            if not self.pretrain_library:
                raise ValueError(
                    "strategy 'transfer' needs a structure library (--pretrain-library or --structure-library)"
                )

    def to_dict(self) -> dict[str, Any]:
        """JSON form, with the resolved estimator settings of every (student, teacher)."""
        d = dataclasses.asdict(self)
        d["resolved"] = {
            f"{student}__{teacher}": estimator_kwargs(self, student, teacher, "ts", seed=0, jsonable=True)
            for student in self.students for teacher in (self.teachers or [None])
        }
        return to_jsonable(d)


def params_for(params: dict[str, Any] | None, name: str) -> dict[str, Any]:
    """``params`` itself, or ``params[name]`` when keyed by model name."""
    params = dict(params or {})
    if params and all(isinstance(v, dict) for v in params.values()):
        return dict(params.get(name, {}))
    return params


def preset_student_params(profile: str, student: str, n_train: int | None = None) -> dict[str, Any]:
    """The profile's student sizes for a run with ``n_train`` rows (None: the profile's own)."""
    preset = PROFILES[profile]
    if n_train is not None and n_train <= preset.get("published_sizes_up_to", -1):
        return {}
    return dict(preset["student_params"].get(student, {}))


def estimator_kwargs(
    config: BenchConfig, student: str, teacher: str | None, strategy: str, seed: int, jsonable: bool = False,
    n_train: int | None = None,
) -> dict[str, Any]:
    """The :class:`~matbench_ts.TSRegressor` arguments of one run (strategy applied) with ``n_train``
    training rows (None: the profile's sizes for large data)."""
    preset = PROFILES[config.profile]
    kwargs: dict[str, Any] = dict(preset["estimator"])
    kwargs.update(config.estimator_params)
    student_params = {**preset_student_params(config.profile, student, n_train), **params_for(config.student_params, student)}
    kwargs.update(student=student, student_params=student_params or None, random_state=seed,
                  cache_dir=config.cache_dir, device=config.device, verbose=config.verbose)
    if strategy in PRETRAINED:  # the student and its sizes come from the checkpoint
        kwargs.update(pretrained=config.pretrained, student_params=None)
    else:  # a strategy means what it says, whatever the estimator's default
        kwargs["pretrained"] = None
    if strategy in NO_TEACHER or teacher is None:
        kwargs.update(teacher=None, teacher_params=None)
    else:
        teacher_params = {**preset["teacher_params"].get(teacher, {}), **params_for(config.teacher_params, teacher)}
        if teacher == "alignn":
            teacher_params.setdefault("random_state", seed)
            teacher_params.setdefault("device", config.device)
        kwargs.update(teacher=teacher, teacher_params=teacher_params or None)
    if strategy == "ts-no-step1":
        kwargs["epochs_step1"] = 0
    elif strategy == "step1-only":
        kwargs["alpha"] = 0.0
    if jsonable:
        for key in ("cache_dir", "device", "verbose", "random_state"):
            kwargs.pop(key)
        return to_jsonable(kwargs)
    return kwargs


def teacher_provenance(teacher: str | None, task: str, teacher_params: dict[str, Any] | None = None) -> dict[str, Any]:
    """Where the teacher's knowledge comes from, and whether it saw data outside the training fold."""
    if teacher is None:
        return {"teacher": None, "leaky": False, "leak_reason": "no teacher"}
    if teacher == "alignn":
        checkpoint = (teacher_params or {}).get("checkpoint")
        if checkpoint:
            return {"teacher": teacher, "pretrained_on": f"checkpoint {checkpoint}", "leaky": None,
                    "leak_reason": "unknown: pretrained checkpoint (check what it was trained on)"}
        return {"teacher": teacher, "pretrained_on": "training rows of the fold (trained inside fit)",
                "leaky": False, "leak_reason": "trained on the training fold only"}
    known = TEACHER_PROVENANCE.get(teacher)
    if known is None:
        return {"teacher": teacher, "pretrained_on": "unknown", "leaky": None, "leak_reason": "unknown teacher"}
    leaky = bool(known["leaky_tasks"].search(task_name_of(task)))
    reason = ("pretrained on Materials Project energies, which include this task's targets (test folds included)"
              if leaky else "pretrained targets differ from this task's target")
    return {"teacher": teacher, "pretrained_on": known["pretrained_on"], "leaky": leaky, "leak_reason": reason}


#: Config fields that override the profile's presets.
PARAMS_FIELDS = ("student_params", "teacher_params", "estimator_params")


def _setting(key: str, value: Any) -> Any:
    """A saved setting as it acts: ``data_dir`` None means ``$MATBENCH_TS_DATA``."""
    if key == "data_dir":
        value = value or os.environ.get(DATA_ENV)
        return str(Path(value).resolve()) if value else None
    return value


def _effective_params(saved: dict[str, Any], key: str, other: dict[str, Any]) -> Any:
    """``saved[key]`` applied to the presets of ``saved``'s profile, for the models of both configs."""
    preset = PROFILES.get(saved.get("profile"), {})
    if key == "estimator_params":
        value = {**preset.get("estimator", {}), **(saved.get(key) or {})}
    else:
        kind = "students" if key == "student_params" else "teachers"
        names = dict.fromkeys([*saved.get(kind, []), *other.get(kind, [])])
        value = {n: {**preset.get(key, {}).get(n, {}), **params_for(saved.get(key), n)} for n in names}
    return json.loads(json.dumps(to_jsonable(value)))


def _other_checkpoints(out: Path, pretrained: str | None) -> list[str]:
    """Ids of the checkpoints that finished runs in ``out`` recorded and ``pretrained`` is not (by content)."""
    recorded = set()
    for path in (out / "runs").rglob("*.json"):
        checkpoint = json.loads(path.read_text()).get("pretrained") or {}
        if checkpoint.get("id"):
            recorded.add(checkpoint["id"])
    if not recorded:  # runs without a checkpoint do not bind one
        return []
    if not pretrained:
        return sorted(recorded)
    from ..pretrained import content_hash, load

    now = content_hash(load(pretrained).id)
    return sorted(i for i in recorded if content_hash(i) != now)


def prepare_out(config: BenchConfig) -> dict[str, Any]:
    """Create ``out`` and its ``config.json``; refuse a mismatching existing one.

    Returns the saved configuration (grid axes merged with the previous ones).
    """
    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / "config.json"
    new = json.loads(json.dumps(config.to_dict()))
    # settings bind an --out only once a run finished under them (a typo must not lock it)
    if path.exists() and any((out / "runs").rglob("*.json")):
        # A field missing from the saved file was added to BenchConfig later: its runs used the default.
        defaults = {f.name: f.default for f in dataclasses.fields(BenchConfig) if f.default is not dataclasses.MISSING}
        old = {**to_jsonable(defaults), **json.loads(path.read_text())}
        ignored = set(HARMLESS_FIELDS) | set(GRID_FIELDS) | set(PARAMS_FIELDS) | {"matbench_ts_version", "resolved"}
        diffs = {k: (old.get(k), new.get(k)) for k in sorted(set(old) | set(new))
                 if k not in ignored and _setting(k, old.get(k)) != _setting(k, new.get(k))}
        # a checkpoint is the same setting when its content is: compared with what the finished runs recorded,
        # wherever the file lies now (a rebuilt file at the old path is another checkpoint)
        diffs.pop("pretrained", None)
        # runs record a checkpoint only under a config that names one: otherwise no run file need be read
        named = old.get("pretrained") is not None or new.get("pretrained") is not None
        changed = _other_checkpoints(out, new.get("pretrained")) if named else []
        if changed:
            diffs["pretrained"] = (f"{old.get('pretrained')} ({', '.join(changed)})", new.get("pretrained"))
        for key in PARAMS_FIELDS:  # compared as the settings they give with the profile's presets
            a, b = _effective_params(old, key, new), _effective_params(new, key, old)
            if a != b:
                diffs[key] = (old.get(key), new.get(key))
        old_resolved, new_resolved = old.get("resolved", {}), new["resolved"]
        for pair in sorted(set(old_resolved) & set(new_resolved)):  # settings each model pair resolves to
            a, b = old_resolved[pair], new_resolved[pair]
            for key in sorted(set(a) | set(b)):
                if a.get(key) != b.get(key):
                    diffs[f"{pair}.{key}"] = (a.get(key), b.get(key))
        if diffs:
            lines = "\n".join(f"  {k}: saved {a!r}, now {b!r}" for k, (a, b) in diffs.items())
            raise ConfigMismatchError(
                f"{out} holds results of another configuration ({path}):\n{lines}\n"
                f"Use a new --out directory, or rerun with the saved settings. Only {', '.join(HARMLESS_FIELDS)} "
                f"may change, and the grid ({', '.join(GRID_FIELDS)}) may be extended."
            )
        for key in GRID_FIELDS:
            new[key] = list(dict.fromkeys([*old.get(key, []), *new[key]]))
        new["resolved"] = {**old_resolved, **new_resolved}
    from .. import __version__

    new["matbench_ts_version"] = __version__
    atomic_write_json(path, new)
    return new
