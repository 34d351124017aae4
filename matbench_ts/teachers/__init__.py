"""Structure teachers: ``"chgnet"``, ``"alignn"``, or any scikit-learn style transformer.

A teacher is any object with ``fit(structures, y)`` and ``transform(structures)``
returning an ``(n, d)`` array. A teacher may define ``cache_id()`` returning a
string when its embeddings do not depend on the data it is fitted on (a frozen
pretrained model); its embeddings are then shared across folds and tasks.
"""

from __future__ import annotations

from typing import Any

from sklearn.base import clone


def make_teacher(teacher: Any, params: dict[str, Any] | None = None) -> Any:
    """A fresh, unfitted teacher from a name or a transformer-like object."""
    params = dict(params or {})
    if isinstance(teacher, str):
        if teacher == "chgnet":
            from .chgnet import CHGNetTeacher

            return CHGNetTeacher(**params)
        if teacher == "alignn":
            from .alignn import ALIGNNTeacher

            return ALIGNNTeacher(**params)
        raise ValueError(f"unknown teacher {teacher!r}; use 'chgnet', 'alignn', None or a transformer")
    if not (hasattr(teacher, "fit") and hasattr(teacher, "transform")):
        raise ValueError(f"teacher {teacher!r} needs fit(structures, y) and transform(structures) methods")
    try:
        teacher = clone(teacher)
    except TypeError:  # not a scikit-learn estimator: use as given
        pass
    if params:
        teacher.set_params(**params)
    return teacher


def frozen_cache_id(teacher: Any) -> str | None:
    """The teacher's data-independent identity, or None when it learns from the fit data."""
    cache_id = getattr(teacher, "cache_id", None)
    return cache_id() if callable(cache_id) else None


__all__ = ["make_teacher", "frozen_cache_id"]
