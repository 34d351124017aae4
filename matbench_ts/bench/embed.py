"""Teacher embeddings computed ahead of a grid (``matbench-ts embed``), so that parallel runs
find them in the cache instead of computing the same structures side by side."""

from __future__ import annotations

import time
from typing import Any

from ..cache import TeacherCache
from ..teachers import check_teacher_elements, frozen_cache_id, make_teacher
from .data import load_task, task_name_of


def embed_tasks(
    tasks: list[str],
    teacher: str = "chgnet",
    teacher_params: dict[str, Any] | None = None,
    data_dir: str | None = None,
    source: str = "auto",
    structure_library: str | None = None,
    cache_dir: str | None = None,
    chunk_size: int = 2048,
) -> dict[str, dict[str, Any]]:
    """Embed every structure of ``tasks`` with a frozen ``teacher`` into the cache.

    Returns per task: structures embedded, how many the teacher computed (0 when warm), seconds.
    A teacher that learns from the fit data (ALIGNN trained per fold) cannot be embedded ahead.
    """
    model = make_teacher(teacher, teacher_params)
    teacher_id = frozen_cache_id(model)
    if teacher_id is None:
        raise ValueError(f"teacher {teacher!r} learns from each training fold: its embeddings cannot be computed "
                         "ahead of the runs")
    model.fit([], None)
    loaded = {name: load_task(name, data_dir, source, structure_library) for name in tasks}
    for task in loaded.values():  # before any embedding
        check_teacher_elements(model, task.structures(range(len(task.frame))), f"task {task.name}")
    done = {}
    with TeacherCache(cache_dir, chunk_size=chunk_size) as cache:
        for name, task in loaded.items():
            start, before = time.perf_counter(), cache.computed
            structures = [s for s in task.structures(range(len(task.frame))) if s is not None]
            if structures:
                cache.embeddings(teacher_id, structures, model.transform)
            done[task_name_of(name)] = {"teacher_id": teacher_id, "n_structures": len(structures),
                                        "n_computed": cache.computed - before,
                                        "seconds": round(time.perf_counter() - start, 1)}
    return done
