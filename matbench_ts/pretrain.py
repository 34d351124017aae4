"""``matbench-ts pretrain``: align a student's embedding to a frozen teacher's (step 1) on a
structure library, once, and save it as a checkpoint (:mod:`matbench_ts.pretrained`).

Resumable: the library's teacher embeddings go through the teacher cache chunk by chunk and
are then kept beside the output (``<out>.work/``), and training saves its full state there
(:class:`~matbench_ts.resume.FitState`), so a second call with the same arguments goes on where
the first stopped.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import torch
from pymatgen.core import Composition
from tqdm.auto import tqdm

from .bench.data import find_data_file, read_table, reduced_formula
from .cache import TeacherCache, atomic_write
from .device import resolve_device, seeded_torch
from .inputs import parse_structure
from .pretrained import FORMAT, full_student_params, pack_formulas
from .recipe import recipe_settings, resolve_recipe
from .resume import FitState
from .students import make_student
from .teachers import embeddable_mask, frozen_cache_id, make_teacher, unembeddable_element
from .training import Rows, StepConfig, StudentWithProjection, evaluate, train_step

#: The default library: every Materials Project structure in the offline data, de-duplicated by id.
DEFAULT_LIBRARY = ("matbench_mp_e_form.jsonl.gz", "mp2018_eform_gap.jsonl.gz")
ID_COLUMNS = ("mp_id", "id")
#: The training step's name (in the history and the state file's name).
STEP = "pretrain"
VERSIONED = ("matbench-ts", "torch", "crabnet", "aviary-models", "chgnet", "pymatgen")


@dataclass
class Library:
    """Library rows kept for pretraining: ids, reduced formulas and CIFs, and what was left out."""

    paths: list[str]
    ids: list[str]
    formulas: list[str]
    structures: list[Any]  # CIF strings or Structures
    n_duplicates: int
    n_excluded: int
    #: the content hash of the rows as read from the files, kept when their structures are parsed
    hash: str | None = None

    def sample(self, n: int, seed: int) -> Library:
        """At most ``n`` rows, drawn with ``seed`` (file order kept)."""
        if len(self.ids) <= n:
            return self
        keep = np.sort(np.random.default_rng([seed, 104729]).choice(len(self.ids), size=n, replace=False))
        return self.take(keep)

    def take(self, rows: Sequence[int]) -> Library:
        """The rows at these positions, in the order given (the hash is then that of the rows taken)."""
        pick = lambda values: [values[i] for i in rows]  # noqa: E731
        return dataclasses.replace(self, ids=pick(self.ids), formulas=pick(self.formulas),
                                   structures=pick(self.structures), hash=None)

    def without(self, formulas: Iterable[str]) -> Library:
        """The rows whose reduced formula is not in ``formulas``: the same rows, hash and counts as
        :func:`read_library` with those formulas excluded, without reading the files again."""
        if self.hash is not None:
            raise ValueError("exclude formulas before replacing the structures (the hash is of the file rows)")
        excluded = set(formulas)
        keep = [i for i, f in enumerate(self.formulas) if f not in excluded]
        return dataclasses.replace(self.take(keep), n_excluded=self.n_excluded + len(self.ids) - len(keep))

    def with_structures(self, structures: Sequence[Any]) -> Library:
        """The same rows with ``structures`` (e.g. parsed elsewhere, in parallel) in place of the
        file's; the content hash stays that of the rows as read, so a checkpoint records the same
        library whichever way its structures were parsed."""
        if len(structures) != len(self.ids):
            raise ValueError(f"{len(structures)} structures for a library of {len(self.ids)} rows")
        return dataclasses.replace(self, structures=list(structures), hash=self.content_hash())

    def content_hash(self) -> str:
        if self.hash is not None:
            return self.hash
        digest = hashlib.sha256()
        for row_id, structure in zip(self.ids, self.structures):
            digest.update(f"{row_id}\0{structure}\0".encode())
        return digest.hexdigest()[:16]


def read_library(paths: Sequence[str | Path], exclude_formulas: Iterable[str] = (), data_dir: str | None = None) -> Library:
    """Rows of the structure files (the first file wins on a repeated id), without the excluded
    reduced formulas."""
    excluded = set(exclude_formulas)
    ids, formulas, structures, seen, n_dup, n_excl, found = [], [], [], set(), 0, 0, []
    for path in paths:
        path = find_data_file(path, data_dir, "structure library")
        found.append(str(path))
        frame = read_table(path)
        if "structure" not in frame.columns:
            raise ValueError(f"structure library {path} has no 'structure' column")
        id_column = next((c for c in ID_COLUMNS if c in frame.columns), None)
        row_ids = frame[id_column].astype(str).tolist() if id_column else [f"{path.name}:{i}" for i in range(len(frame))]
        comps = frame["composition"].tolist() if "composition" in frame.columns else [None] * len(frame)
        for row_id, comp, structure in zip(row_ids, comps, frame["structure"]):
            if row_id in seen:
                n_dup += 1
                continue
            seen.add(row_id)
            formula = reduced_formula(comp) if comp is not None else parse_structure(structure, len(ids)).composition.reduced_formula
            if formula in excluded:
                n_excl += 1
                continue
            ids.append(row_id)
            formulas.append(formula)
            structures.append(structure)
    if not ids:
        raise ValueError(f"structure library {found}: no rows left after excluding {len(excluded)} formulas")
    return Library(found, ids, formulas, structures, n_dup, n_excl)


def exclusion_formulas(spec: str | None, data_dir: str | None = None) -> tuple[set[str], list[str]]:
    """Reduced formulas to leave out: from a text file (one formula per line) or from every row of
    comma-separated task names; also returns what they came from."""
    if not spec:
        return set(), []
    path = Path(spec)
    if path.is_file() and path.suffix in ("", ".txt", ".csv"):
        lines = [line.split(",")[0].strip() for line in path.read_text().splitlines()]
        return {reduced_formula(f) for f in lines if f and not f.startswith("#")} - {None}, [str(path)]
    from .bench.data import load_task

    names = [n.strip() for n in spec.split(",") if n.strip()]
    formulas = set()
    for name in names:
        task = load_task(name, data_dir)
        formulas |= {reduced_formula(c) for c in task.frame["composition"]}
    return formulas - {None}, names


def embed_library(library: Library, teacher: Any, teacher_id: str, work: Path, cache_dir: str | None,
                  chunk_size: int = 2048, verbose: int = 1) -> dict[str, Any]:
    """Teacher embeddings of the library (parsed and embedded chunk by chunk through the cache),
    kept in ``work/library.npz`` for the next call; structures the teacher cannot embed (an element
    beyond its table, a cell it cannot graph) are left out and listed in ``unembeddable``."""
    key = f"{teacher_id}/{library.content_hash()}"
    saved = work / "library.npz"
    if saved.exists():
        with np.load(saved, allow_pickle=False) as z:
            if str(z["key"]) == key:
                return {k: z[k] for k in z.files}
    emb, compositions, formulas, unembeddable = [], [], [], []
    bar = tqdm(total=len(library.ids), desc="teacher embeddings", unit="structure", disable=verbose < 1)
    with TeacherCache(cache_dir, chunk_size=chunk_size) as cache:
        for start in range(0, len(library.ids), chunk_size):
            rows = range(start, min(start + chunk_size, len(library.ids)))
            # texts embedded before (by any library) are read back unparsed; the others are parsed here
            known = dict(zip(rows, cache.known_texts(teacher_id, [library.structures[i] for i in rows])))
            fresh = [i for i in rows if known[i] is None]
            structures = [parse_structure(library.structures[i], i) for i in fresh]
            # a library is not the user's rows: structures the teacher cannot take are left out and counted
            mask = np.array([unembeddable_element(teacher, s) is None for s in structures], dtype=bool)
            mask[mask] = embeddable_mask(teacher, [s for s, ok in zip(structures, mask) if ok])
            kept = [s for s, ok in zip(structures, mask) if ok]
            kept_rows = [i for i, ok in zip(fresh, mask) if ok]
            unembeddable += [library.ids[i] for i, ok in zip(fresh, mask) if not ok]
            if kept:
                new = cache.embeddings(teacher_id, kept, teacher.transform)
                cache.remember_texts([library.structures[i] for i in kept_rows], kept)
                known.update({i: (row, s.composition.formula) for i, row, s in zip(kept_rows, new, kept)})
            for i in rows:  # file order, as if every row had been parsed
                if known[i] is not None:
                    emb.append(known[i][0])
                    compositions.append(known[i][1])
                    formulas.append(library.formulas[i])
            bar.update(len(rows))
    bar.close()
    if not emb:
        raise ValueError(f"structure library {library.paths}: the teacher {teacher_id} can embed none of its "
                         f"{len(library.ids)} structures")
    out = {"key": np.array(key), "embeddings": np.stack(emb).astype(np.float32),
           "compositions": np.array(compositions), "formulas": np.array(formulas),
           "unembeddable": np.array(unembeddable, dtype=str)}
    atomic_write(saved, lambda fh: np.savez(fh, **out))
    return out


def _versions() -> dict[str, str]:
    from . import __version__

    versions = {"matbench-ts": __version__}  # also when run from a source tree that is not installed
    for name in VERSIONED:
        with contextlib.suppress(metadata.PackageNotFoundError):
            versions[name] = metadata.version(name)
    return versions


def pretrain(
    out: str | Path,
    library: Sequence[str | Path] | Library = DEFAULT_LIBRARY,
    *,
    student: str = "crabnet",
    student_params: dict[str, Any] | None = None,
    teacher: str = "chgnet",
    teacher_params: dict[str, Any] | None = None,
    exclude_formulas: Iterable[str] = (),
    exclude_source: Sequence[str] = (),
    max_structures: int | None = None,
    epochs: int = 200,
    recipe: str | dict[str, Any] = "auto",
    learning_rate: float | None = None,
    batch_size: int | None = None,
    validation_fraction: float = 0.05,
    patience: int = 10,
    data_dir: str | None = None,
    cache_dir: str | None = None,
    device: str | None = None,
    random_state: int = 0,
    verbose: int = 1,
) -> Path:
    """Pretrain ``student`` on the teacher's embeddings of ``library`` and write the checkpoint ``out``.

    Returns the checkpoint's path. ``library`` is a list of structure files, or a
    :class:`Library` already read (:func:`read_library`). ``exclude_formulas`` are reduced
    formulas left out of the files (a benchmark's tasks: a leak-safe checkpoint); ``max_structures`` keeps a seeded
    sample of the rest (``random_state``). Calling again with the same arguments
    resumes from ``<out>.work/``; a finished checkpoint is not trained again.
    """
    out = Path(out)
    if out.suffix != ".pt":
        raise ValueError(f"the checkpoint file must end in .pt, got {out}")
    if not isinstance(epochs, int) or epochs < 1:
        raise ValueError(f"epochs must be an integer >= 1, got {epochs!r}")
    if not 0 < validation_fraction < 1:
        raise ValueError(f"validation_fraction must be in (0, 1), got {validation_fraction!r}")
    params = full_student_params(student, student_params)
    recipe_used = resolve_recipe(recipe, student)
    model_teacher = make_teacher(teacher, teacher_params)
    teacher_id = frozen_cache_id(model_teacher)
    if teacher_id is None:
        raise ValueError(f"teacher {teacher!r} learns from its fit data; pretraining needs a frozen teacher")
    model_teacher.fit([], None)
    if isinstance(library, Library):
        if exclude_formulas:
            raise ValueError("exclude_formulas applies when the files are read: pass them to read_library")
        rows = library
    else:
        rows = read_library(library, exclude_formulas, data_dir)
    if max_structures is not None:
        if not isinstance(max_structures, int) or max_structures < 10:
            raise ValueError(f"max_structures must be an integer >= 10, got {max_structures!r}")
        rows = rows.sample(max_structures, random_state)
    try:  # bad elements before the long teacher pass
        make_student(student, params).check_elements([Composition(f) for f in rows.formulas])
    except ValueError as exc:
        raise ValueError(f"library: {exc}") from None
    work = out.with_name(out.name + ".work")
    lib = embed_library(rows, model_teacher, teacher_id, work, cache_dir, verbose=verbose)
    emb = lib["embeddings"]
    n = len(emb)
    rng = np.random.default_rng(random_state)
    order = rng.permutation(n)
    n_val = max(1, int(round(validation_fraction * n)))
    val_idx, train_idx = np.sort(order[:n_val]), np.sort(order[n_val:])
    mean = emb[train_idx].mean(axis=0)
    std = emb[train_idx].std(axis=0)
    std = np.where(std > 1e-8, std, 1.0).astype(np.float32)
    scaled = ((emb - mean) / std).astype(np.float32)
    settings = _settings(epochs, recipe_used, learning_rate, batch_size, patience, lib["key"], random_state, params)
    try:
        state = FitState(work, joblib.hash(settings))
    except ValueError:
        raise ValueError(f"{work} holds the state of a pretraining with other settings: "
                         "delete it to start afresh") from None
    resume = state.load(STEP)
    if resume is not None and resume["done"] and out.exists() and out.stat().st_mtime >= state.path(STEP).stat().st_mtime:
        return out  # finished and written: the same call again leaves the file (and its hash) as it is
    dev = resolve_device(device)
    with seeded_torch(random_state, dev):
        model = StudentWithProjection(make_student(student, params), emb.shape[1]).to(dev)
        items = model.student.encode([Composition(c) for c in lib["compositions"]])
        all_rows = Rows(items, None, scaled)
        config = StepConfig(STEP, epochs, 1.0, 0.0, recipe=recipe_used,
                            learning_rate=float(learning_rate or recipe_used.learning_rate),
                            batch_size=batch_size or recipe_used.batch_size_for(len(train_idx)), patience=patience,
                            verbose=verbose)
        history = train_step(model, all_rows.subset(train_idx), all_rows.subset(val_idx), config, dev, rng,
                             checkpoint=state.saver(STEP), resume=resume)
    model = model.cpu().eval()
    val_loss = evaluate(model, all_rows.subset(val_idx), 4096, torch.device("cpu")).emb
    checkpoint = {
        "format": FORMAT,
        "student": student,
        "student_params": params,
        "student_state": model.student.state_dict(),
        "projection_state": model.projection.state_dict(),
        "teacher": teacher,
        "teacher_params": dict(teacher_params or {}),
        "teacher_id": teacher_id,
        "teacher_mean": torch.as_tensor(mean),
        "teacher_std": torch.as_tensor(std),
        "library": {"paths": [Path(p).name for p in rows.paths], "hash": str(lib["key"]).split("/")[-1],
                    "size": n, "max_structures": max_structures, "n_duplicates": rows.n_duplicates,
                    "n_excluded": rows.n_excluded,
                    "n_unembeddable": int(len(lib["unembeddable"])), "excluded_from": list(exclude_source)},
        "formulas": pack_formulas(lib["formulas"].tolist()),
        "recipe": recipe_settings(recipe_used),
        "epochs": len(history),
        "max_epochs": epochs,
        "val_loss": float(val_loss),
        "history": [{k: float(v) if isinstance(v, (float, np.floating)) else v for k, v in h.items()} for h in history],
        "random_state": random_state,
        "versions": _versions(),
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }
    atomic_write(out, lambda fh: torch.save(checkpoint, fh), mode=0o644)  # readable by all: shared and shipped
    return out


def _settings(epochs, recipe, learning_rate, batch_size, patience, key, random_state, params) -> dict[str, Any]:
    """What a resumed run must share with the run that wrote the state."""
    return {"epochs": epochs, "recipe": recipe_settings(recipe), "learning_rate": learning_rate,
            "batch_size": batch_size, "patience": patience, "library": str(key), "random_state": random_state,
            "student_params": params}
