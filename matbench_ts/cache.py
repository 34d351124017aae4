"""On-disk cache of teacher work, keyed by structure content and teacher identity."""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
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


class TeacherCache:
    """Embeddings (one entry per structure) and fitted teachers, in ``directory``."""

    def __init__(self, directory: str | Path | None = None, chunk_size: int = 2048) -> None:
        self.chunk_size = chunk_size  # structures per teacher call; each chunk is stored when done
        self.directory = Path(directory) if directory is not None else default_cache_dir()
        self._store = diskcache.Cache(str(self.directory / "embeddings"), size_limit=2**36)
        self.computed = 0  # structures embedded by the teacher since creation (for tests and reports)

    def embeddings(
        self,
        teacher_id: str,
        structures: Sequence[Structure],
        compute: Callable[[list[Structure]], np.ndarray],
    ) -> np.ndarray:
        """Embeddings of ``structures``; only those missing from the cache go to ``compute``."""
        keys = [f"{teacher_id}/{structure_key(s)}" for s in structures]
        found = {k: self._store.get(k) for k in dict.fromkeys(keys)}
        missing = [k for k, v in found.items() if v is None]
        first = {k: i for i, k in reversed(list(enumerate(keys)))}
        # Stored chunk by chunk: an interrupted call keeps what it computed.
        for start in range(0, len(missing), self.chunk_size):
            chunk = missing[start : start + self.chunk_size]
            new = compute([structures[first[k]] for k in chunk])
            self.computed += len(chunk)
            with self._store.transact():
                for key, row in zip(chunk, np.asarray(new, dtype=np.float32)):
                    self._store.set(key, row)
                    found[key] = row
        return np.stack([found[k] for k in keys])

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
            return joblib.load(path)
        teacher = fit()
        atomic_dump(teacher, path)
        return teacher


def atomic_dump(obj: Any, path: Path) -> None:
    """``joblib.dump`` to a temporary file of this writer only, then an atomic rename: concurrent
    writers of one key never share a file, and a reader sees no file or a whole one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            joblib.dump(obj, fh)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
