"""Pretrained students: composition models whose embedding was aligned to a structure teacher's
(step 1) on a library of Materials Project structures, once, and saved as a checkpoint.

``available()`` lists the checkpoints shipped in the package; :func:`load` reads one by name or
path. ``TSRegressor(pretrained=...)`` starts from one, and :class:`PretrainedFeaturizer` turns
one into a composition featurizer for scikit-learn and matminer pipelines.
"""

from __future__ import annotations

import hashlib
import inspect
import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import cached_property, lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import torch
from matminer.featurizers.base import BaseFeaturizer
from pymatgen.core import Composition

from .inputs import parse_compositions, split_inputs
from .students import Student, make_student
from .training import StudentWithProjection

#: Format tag written into every checkpoint; :func:`load` refuses others.
FORMAT = "matbench_ts.pretrained/1"
#: The package folder of the shipped checkpoints.
SHIPPED_PACKAGE = "matbench_ts.checkpoints"
SUFFIX = ".pt"


def _shipped_dir() -> Path:
    return Path(str(resources.files(SHIPPED_PACKAGE)))


def available() -> list[str]:
    """Names of the checkpoints shipped with the package (``TSRegressor(pretrained=NAME)``)."""
    return sorted(p.name[: -len(SUFFIX)] for p in _shipped_dir().glob(f"*{SUFFIX}"))


def full_student_params(student: str, params: dict[str, Any] | None) -> dict[str, Any]:
    """``params`` completed with the student class's defaults: the sizes that rebuild it."""
    cls = type(make_student(student, params))
    defaults = {name: p.default for name, p in inspect.signature(cls.__init__).parameters.items()
                if p.default is not inspect.Parameter.empty}
    merged = {**defaults, **(params or {})}
    return {k: list(v) if isinstance(v, tuple) else v for k, v in merged.items()}


def pack_formulas(formulas: Iterable[str]) -> torch.Tensor:
    """Sorted unique formulas, zlib-compressed, as a uint8 tensor (loadable with ``weights_only``)."""
    data = zlib.compress("\n".join(sorted(set(formulas))).encode(), 9)
    return torch.frombuffer(bytearray(data), dtype=torch.uint8).clone()


def content_hash(checkpoint_id: str) -> str:
    """The file-content part of a checkpoint id (``name@hash``, see :attr:`Checkpoint.id`): the same
    for a copy moved or renamed, another for a rebuilt file."""
    return checkpoint_id.rpartition("@")[2]


@dataclass(frozen=True)
class Checkpoint:
    """A pretrained student as stored: see ``matbench-ts pretrain`` for how one is made.

    ``data`` holds the student (name, full sizes, weights), the projection head onto the
    teacher's standardised embedding, the teacher's id and the standardisation, the library's
    hash and size, the reduced formulas it saw, epochs, validation loss and package versions.
    """

    name: str
    path: str
    data: dict[str, Any]

    @cached_property
    def id(self) -> str:
        """``name@hash``: the checkpoint's name and the first 12 hex digits of its file's SHA-256."""
        return f"{self.name}@{hashlib.sha256(Path(self.path).read_bytes()).hexdigest()[:12]}"

    @property
    def student_name(self) -> str:
        return self.data["student"]

    @property
    def student_params(self) -> dict[str, Any]:
        return dict(self.data["student_params"])

    @property
    def teacher_id(self) -> str:
        return self.data["teacher_id"]

    @cached_property
    def formulas(self) -> frozenset[str]:
        """The reduced formulas of the library structures the student was aligned on."""
        raw = zlib.decompress(self.data["formulas"].numpy().tobytes()).decode()
        return frozenset(raw.split("\n")) if raw else frozenset()

    def n_seen(self, compositions: Iterable[Any]) -> int:
        """How many of ``compositions`` have a reduced formula the checkpoint's library held."""
        seen = self.formulas
        return sum(Composition(c).reduced_formula in seen for c in compositions)

    def teacher_scaling(self) -> tuple[np.ndarray, np.ndarray]:
        """Mean and standard deviation that standardised the teacher's embeddings in pretraining."""
        return self.data["teacher_mean"].numpy(), self.data["teacher_std"].numpy()

    def build(self) -> StudentWithProjection:
        """The pretrained student with its projection head, weights loaded, on the CPU."""
        student = make_student(self.student_name, self.student_params)
        model = StudentWithProjection(student, int(self.data["teacher_mean"].shape[0]))
        model.student.load_state_dict({k: v.float() for k, v in self.data["student_state"].items()})
        model.projection.load_state_dict({k: v.float() for k, v in self.data["projection_state"].items()})
        return model

    def summary(self) -> dict[str, Any]:
        """What a report needs: id, student, teacher, library size and hash, epochs, validation loss."""
        keys = ("student", "student_params", "teacher", "teacher_id", "library", "epochs", "val_loss", "versions")
        return {"id": self.id, **{k: self.data.get(k) for k in keys}}


def resolve(name_or_path: str | Path) -> Path:
    """The file of a shipped checkpoint name, or the given path."""
    path = Path(name_or_path)
    if path.suffix == SUFFIX and path.exists():
        return path
    shipped = _shipped_dir() / f"{name_or_path}{SUFFIX}"
    if shipped.exists():
        return shipped
    raise ValueError(f"no pretrained checkpoint {str(name_or_path)!r}: not a {SUFFIX} file and not one of the "
                     f"shipped {available()}")


def load(name_or_path: str | Path | Checkpoint) -> Checkpoint:
    """Read a checkpoint by shipped name or file path (nothing is downloaded)."""
    if isinstance(name_or_path, Checkpoint):
        return name_or_path
    path = resolve(name_or_path).resolve()
    stat = path.stat()
    return _load_file(str(path), stat.st_mtime_ns, stat.st_size)


@lru_cache(maxsize=8)
def _load_file(path: str, mtime_ns: int, size: int) -> Checkpoint:
    """One read per file version: ``fit`` checks it, builds from it and the harness counts its
    formulas without reading and hashing the same megabytes again (a rewritten file is read anew)."""
    data = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise ValueError(f"{path} is not a matbench-ts pretrained checkpoint (format {FORMAT})")
    return Checkpoint(Path(path).name[: -len(SUFFIX)], path, data)


def check_student_matches(checkpoint: Checkpoint, student: str | Student, student_params: dict[str, Any] | None) -> None:
    """ValueError when ``student``/``student_params`` clash with the checkpoint's student."""
    if not isinstance(student, str) or student != checkpoint.student_name:
        raise ValueError(f"pretrained checkpoint {checkpoint.name} holds a {checkpoint.student_name!r} student, "
                         f"but student={student!r}")
    saved = checkpoint.student_params
    clashes = {k: v for k, v in (student_params or {}).items()
               if k not in saved or (list(v) if isinstance(v, tuple) else v) != saved[k]}
    if clashes:
        raise ValueError(f"student_params {clashes} clash with pretrained checkpoint {checkpoint.name}, whose sizes "
                         f"are {saved}: leave student_params out (the sizes come from the checkpoint)")


class PretrainedFeaturizer(BaseFeaturizer):
    """A pretrained student's embedding as composition features (no fitting, no structures).

    A matminer featurizer (``featurize``, ``featurize_dataframe``, ``feature_labels``) and a
    scikit-learn transformer (``fit`` is a no-op; ``transform`` takes formulas or Compositions).

    Parameters
    ----------
    pretrained : str or path
        A shipped checkpoint name (``available()``) or a checkpoint file.
    batch_size : int
        Compositions per forward pass.
    """

    def __init__(self, pretrained: str = "crabnet-chgnet-mp", batch_size: int = 1024) -> None:
        self.pretrained = pretrained
        self.batch_size = batch_size

    @cached_property
    def _model(self) -> StudentWithProjection:
        return load(self.pretrained).build().eval()

    def __getstate__(self) -> dict[str, Any]:  # the weights reload from the checkpoint
        return {k: v for k, v in self.__dict__.items() if k != "_model"}

    def fit(self, X: Any = None, y: Any = None, **fit_kwargs: Any) -> PretrainedFeaturizer:
        return self

    def transform(self, X: Sequence[Any]) -> np.ndarray:
        """``(n, embedding_dim)`` embeddings of formulas, Compositions or Structures."""
        compositions, _ = split_inputs(X)
        student = self._model.student
        student.check_elements(compositions)
        items = student.encode(compositions)
        out = []
        with torch.no_grad():
            for start in range(0, len(items), self.batch_size):
                batch = student.collate(items[start : start + self.batch_size], torch.device("cpu"))
                out.append(student.embed(batch).numpy())
        return np.concatenate(out) if out else np.zeros((0, student.embedding_dim), dtype=np.float32)

    def featurize(self, comp: Any) -> list[float]:
        return self.transform([comp])[0].tolist()

    def featurize_many(self, entries: Sequence[Any], ignore_errors: bool = False, return_errors: bool = False,
                       pbar: bool = True) -> list[list[float]]:
        """Batched (matminer's default featurizes one entry per process call)."""
        rows = [e[0] if isinstance(e, (tuple, list, np.ndarray)) else e for e in entries]
        return self.transform(parse_compositions(rows)).tolist()

    def feature_labels(self) -> list[str]:
        return [f"{self.pretrained}_emb_{i}" for i in range(self._model.student.embedding_dim)]

    def citations(self) -> list[str]:
        return []  # cite the student's and the teacher's papers (CrabNet or Roost; CHGNet)

    def implementors(self) -> list[str]:
        return ["matbench-ts"]
