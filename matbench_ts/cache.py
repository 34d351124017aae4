"""On-disk cache of teacher work, keyed by structure content and teacher identity."""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import sqlite3
import tempfile
import uuid
import warnings
import zlib
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import diskcache
import joblib
import numpy as np
from pymatgen.core import Structure


def default_cache_dir() -> Path:
    """``$MATBENCH_TS_CACHE``, else ``~/.cache/matbench_ts``."""
    return Path(os.environ.get("MATBENCH_TS_CACHE", Path.home() / ".cache" / "matbench_ts"))


def structure_key(structure: Structure) -> str:
    """Content hash of a structure: lattice, species and fractional coordinates (1e-5 precision)."""
    digest = hashlib.sha256()
    digest.update(np.round(structure.lattice.matrix, 5).astype(np.float64).tobytes())
    digest.update(np.asarray(structure.atomic_numbers, dtype=np.int64).tobytes())
    digest.update(np.round(np.mod(structure.frac_coords, 1.0), 5).astype(np.float64).tobytes())
    return digest.hexdigest()[:32]


def text_key(text: str) -> str:
    """Key of a structure given as text (a CIF): the hash of the text itself, no parsing."""
    return "text/" + hashlib.sha256(text.encode()).hexdigest()[:32]


def _is_corruption(exc: sqlite3.DatabaseError) -> bool:
    """A damaged database file, not a busy or locked one (those are OperationalErrors)."""
    return type(exc) is sqlite3.DatabaseError or getattr(exc, "sqlite_errorname", "") in (
        "SQLITE_CORRUPT", "SQLITE_NOTADB")


def _checksum(row: np.ndarray) -> int:
    return zlib.crc32(row.tobytes())


def checked_embeddings(embeddings: Any, structures: Sequence[Structure], teacher_id: str) -> np.ndarray:
    """``embeddings`` as float32 ``(len(structures), d)``; a ValueError names the teacher otherwise."""
    try:
        arr = np.asarray(embeddings, dtype=np.float32)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"teacher {teacher_id}: transform did not return an array of numbers: {exc}") from None
    if arr.ndim != 2 or len(arr) != len(structures):
        raise ValueError(f"teacher {teacher_id}: transform returned shape {arr.shape} for {len(structures)} "
                         f"structures; expected ({len(structures)}, n_features)")
    bad = np.flatnonzero(~np.isfinite(arr).all(axis=1))
    if len(bad):
        raise ValueError(f"teacher {teacher_id}: non-finite embedding of structure "
                         f"{structures[bad[0]].composition.reduced_formula} ({len(bad)} such structures)")
    return arr


class TeacherCache:
    """Embeddings (one entry per structure) and fitted teachers, in ``directory``.

    Everything here can be recomputed: a damaged embedding store or fitted-teacher file is
    rebuilt with a warning naming it, and each embedding is stored with a checksum, so an
    entry changed on disk is recomputed instead of silently used.
    """

    def __init__(self, directory: str | Path | None = None, chunk_size: int = 2048) -> None:
        self.chunk_size = chunk_size  # structures per teacher call; each chunk is stored when done
        self.directory = Path(directory) if directory is not None else default_cache_dir()
        self._store = self._open_store()
        self._damaged = 0  # entries found damaged by the current embeddings() call
        self.computed = 0  # structures embedded by the teacher since creation (for tests and reports)

    def _open_store(self) -> diskcache.Cache:
        path = self.directory / "embeddings"
        try:
            return diskcache.Cache(str(path), size_limit=2**36)
        except sqlite3.DatabaseError as exc:
            if not _is_corruption(exc):
                raise
            self._discard_store(exc)
            return diskcache.Cache(str(path), size_limit=2**36)

    def _discard_store(self, exc: Exception) -> None:
        """Move the damaged store aside (atomic: concurrent processes see the old or no store) and delete it."""
        path = self.directory / "embeddings"
        aside = path.with_name(f"embeddings.damaged-{uuid.uuid4().hex[:8]}")
        with contextlib.suppress(FileNotFoundError):  # another process may have moved it first
            os.replace(path, aside)
        shutil.rmtree(aside, ignore_errors=True)
        warnings.warn(f"teacher cache {path / 'cache.db'} was damaged ({exc}) and has been rebuilt empty: "
                      "its embeddings are computed again", RuntimeWarning, stacklevel=3)

    def _read(self, key: str) -> np.ndarray | None:
        """The stored embedding, or None when absent or damaged (bad pickle, checksum mismatch)."""
        try:
            value = self._store.get(key)
        except sqlite3.DatabaseError:
            raise
        except Exception:  # an entry that no longer unpickles
            self._damaged += 1
            return None
        if isinstance(value, tuple):
            row, checksum = value
            if _checksum(row) != checksum:
                self._damaged += 1
                return None
            return row
        return value  # written before checksums were stored

    def embeddings(
        self,
        teacher_id: str,
        structures: Sequence[Structure],
        compute: Callable[[list[Structure]], np.ndarray],
    ) -> np.ndarray:
        """Embeddings of ``structures``; only those missing from the cache go to ``compute``."""
        try:
            return self._embeddings(teacher_id, structures, compute)
        except sqlite3.DatabaseError as exc:
            if not _is_corruption(exc):
                raise
            self._store.close()
            self._discard_store(exc)
            self._store = self._open_store()
            return self._embeddings(teacher_id, structures, compute)

    def _embeddings(
        self,
        teacher_id: str,
        structures: Sequence[Structure],
        compute: Callable[[list[Structure]], np.ndarray],
    ) -> np.ndarray:
        keys = [f"{teacher_id}/{structure_key(s)}" for s in structures]
        self._damaged = 0
        found = {k: self._read(k) for k in dict.fromkeys(keys)}
        if self._damaged:
            warnings.warn(f"teacher cache {Path(self._store.directory) / 'cache.db'}: {self._damaged} damaged embedding(s) of "
                          f"{teacher_id}, computed again", RuntimeWarning, stacklevel=3)
        missing = [k for k, v in found.items() if v is None]
        first = {k: i for i, k in reversed(list(enumerate(keys)))}
        # Stored chunk by chunk: an interrupted call keeps what it computed.
        for start in range(0, len(missing), self.chunk_size):
            chunk = missing[start : start + self.chunk_size]
            todo = [structures[first[k]] for k in chunk]
            new = checked_embeddings(compute(todo), todo, teacher_id)
            self.computed += len(chunk)
            with self._store.transact():
                for key, row in zip(chunk, new):
                    self._store.set(key, (row, _checksum(row)))
                    found[key] = row
        return np.stack([found[k] for k in keys])

    def known_texts(self, teacher_id: str, items: Sequence[Any]) -> list[tuple[np.ndarray, str] | None]:
        """For each item that is a text :meth:`remember_texts` saw, whose structure this teacher has
        embedded: that embedding and the structure's composition formula, read without parsing the
        text (parsing is most of a pass over a library already embedded); None for any other item."""
        found: list[tuple[np.ndarray, str] | None] = []
        try:
            for item in items:
                entry = self._text_entry(item)
                row = None if entry is None else self._read(f"{teacher_id}/{entry[0]}")
                found.append(None if row is None else (row, entry[1]))
        except sqlite3.DatabaseError:  # the embeddings() call that parses them handles a damaged store
            return [None] * len(items)
        return found

    def _text_entry(self, item: Any) -> tuple[str, str] | None:
        if not isinstance(item, str):
            return None
        try:
            entry = self._store.get(text_key(item))
        except sqlite3.DatabaseError:
            raise
        except Exception:  # an entry that no longer unpickles: parse the text again
            return None
        ok = isinstance(entry, tuple) and len(entry) == 2 and all(isinstance(e, str) for e in entry)
        return entry if ok else None

    def remember_texts(self, items: Sequence[Any], structures: Sequence[Structure]) -> None:
        """Record the structure each text item parsed to (content key, composition formula), so that
        :meth:`known_texts` finds its embedding without parsing it again; other items are skipped."""
        pairs = [(text_key(item), (structure_key(s), s.composition.formula))
                 for item, s in zip(items, structures) if isinstance(item, str)]
        with contextlib.suppress(sqlite3.DatabaseError), self._store.transact():  # only a shortcut: parse next time
            for key, entry in pairs:
                self._store.set(key, entry)

    def add(self, keys: Sequence[str], rows: np.ndarray) -> None:
        """Store embeddings computed elsewhere (``keys`` as ``f"{teacher_id}/{structure_key(s)}"``)."""
        rows = np.asarray(rows, dtype=np.float32)
        if len(keys) != len(rows):
            raise ValueError(f"{len(keys)} keys for {len(rows)} embeddings")
        with self._store.transact():
            for key, row in zip(keys, rows):
                self._store.set(key, (row, _checksum(row)))

    def close(self) -> None:
        self._store.close()

    def __enter__(self) -> TeacherCache:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def fitted_teacher(self, key: str, fit: Callable[[], Any]) -> Any:
        """A teacher fitted by ``fit()``, or the one stored under ``key`` by an earlier call."""
        path = self.directory / "teachers" / f"{key}.joblib"
        if path.exists():
            try:
                return joblib.load(path)
            except Exception as exc:  # truncated or garbled pickle: the teacher can be fitted again
                warnings.warn(f"fitted teacher {path} is damaged ({type(exc).__name__}: {exc}); fitting it again",
                              RuntimeWarning, stacklevel=2)
        teacher = fit()
        atomic_dump(teacher, path)
        return teacher


def atomic_write(path: Path, write: Callable[[Any], None], mode: int | None = None) -> None:
    """``write(fh)`` into a temporary file of this writer only, then an atomic rename: concurrent
    writers of one path never share a file, and a reader sees no file or a whole one. ``mode``
    sets the permissions (the temporary file is private to its owner)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            write(fh)
        if mode is not None:
            os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def atomic_dump(obj: Any, path: Path) -> None:
    """``joblib.dump`` through :func:`atomic_write`."""
    atomic_write(path, lambda fh: joblib.dump(obj, fh))
