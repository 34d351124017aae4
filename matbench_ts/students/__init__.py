"""Composition students: ``"crabnet"`` and ``"roost"``, or any :class:`Student`."""

from __future__ import annotations

from typing import Any

from .base import Student


def make_student(student: str | Student, params: dict[str, Any] | None = None) -> Student:
    """Build a fresh student from its name and size parameters."""
    params = dict(params or {})
    if isinstance(student, Student):
        if params:
            raise ValueError("student_params only apply to students given by name")
        return student
    if student == "crabnet":
        from .crabnet import CrabNetStudent

        return CrabNetStudent(**params)
    if student == "roost":
        from .roost import RoostStudent

        return RoostStudent(**params)
    raise ValueError(f"unknown student {student!r}; use 'crabnet', 'roost' or a Student instance")


__all__ = ["Student", "make_student"]
