"""Structure teachers: ``"chgnet"``, ``"alignn"``, or any scikit-learn style transformer.

A teacher is any object with ``fit(structures, y)`` and ``transform(structures)``
returning an ``(n, d)`` array. A teacher may define ``cache_id()`` returning a
string when its embeddings do not depend on the data it is fitted on (a frozen
pretrained model); its embeddings are then shared across folds and tasks. A teacher
whose element table ends early may set ``max_z``: structures with heavier elements are
refused before any work.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from pymatgen.core import Element, Structure
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


def embeddable_mask(teacher: Any, structures: Sequence[Structure]) -> np.ndarray:
    """Which structures the teacher can embed (its ``embeddable`` check, else all of them)."""
    check = getattr(teacher, "embeddable", None)
    return np.asarray(check(structures), dtype=bool) if callable(check) else np.ones(len(structures), dtype=bool)


def unembeddable_element(teacher: Any, structure: Structure) -> Element | None:
    """The heaviest element of ``structure`` beyond the teacher's ``max_z``, else None."""
    max_z = getattr(teacher, "max_z", None)
    if max_z is None:
        return None
    z = max(structure.atomic_numbers)
    return Element.from_Z(z) if z > max_z else None


def check_teacher_elements(teacher: Any, structures: Sequence[Structure | None], name: str = "structures") -> None:
    """Raise ValueError naming the first row whose structure holds an element the teacher cannot embed."""
    for row, structure in enumerate(structures):
        element = None if structure is None else unembeddable_element(teacher, structure)
        if element is not None:
            raise ValueError(
                f"{name}: row {row}: element {element} (Z={element.Z}) in {structure.composition.reduced_formula} "
                f"cannot be embedded by {type(teacher).__name__} (elements up to Z={teacher.max_z})"
            )


__all__ = ["make_teacher", "frozen_cache_id", "check_teacher_elements", "unembeddable_element"]
