"""Validation and conversion of user input: compositions, structures and targets.

Every check here runs before any training or teacher work, and each error names
the offending row so a user can find it in a large table.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
from pymatgen.core import Composition, Element, Structure

#: Heaviest element the element-embedding tables of our students know (Og).
MAX_Z = 118


def as_1d_list(X: Any, name: str = "X") -> list:
    """Return ``X`` as a flat list; accepts lists, arrays, Series and one-column frames."""
    if X is None:
        raise ValueError(f"{name} is None; expected a sequence of compositions")
    if hasattr(X, "iloc") and getattr(X, "ndim", 1) == 2:  # one-column DataFrame
        if X.shape[1] != 1:
            raise ValueError(f"{name} must have one column of compositions, got {X.shape[1]}")
        X = X.iloc[:, 0]
    if isinstance(X, (str, Composition, Structure)):
        raise ValueError(f"{name} must be a sequence of compositions, not a single {type(X).__name__}")
    arr = np.asarray(X, dtype=object) if not isinstance(X, list) else None
    if arr is not None:
        if arr.ndim == 2 and arr.shape[1] == 1:
            arr = arr[:, 0]
        if arr.ndim != 1:
            raise ValueError(f"{name} must be one-dimensional, got shape {arr.shape}")
        X = arr.tolist()
    if len(X) == 0:
        raise ValueError(f"{name} is empty")
    return list(X)


def parse_composition(item: Any, row: int) -> Composition:
    """Convert a formula, Composition or Structure to a Composition, or raise ValueError."""
    if isinstance(item, Structure):
        comp = item.composition
    elif isinstance(item, Composition):
        comp = item
    elif isinstance(item, str):
        try:
            comp = Composition(item)
        except Exception as exc:  # pymatgen raises several types for bad formulas
            raise ValueError(f"row {row}: cannot parse formula {item!r}: {exc}") from None
    else:
        raise ValueError(f"row {row}: expected a formula, Composition or Structure, got {type(item).__name__}")
    if len(comp) == 0 or comp.num_atoms <= 0:
        raise ValueError(f"row {row}: empty composition {item!r}")
    comp = without_oxidation_states(comp)
    for el in comp.elements:
        if not isinstance(el, Element) or el.Z > MAX_Z or el.Z < 1:
            raise ValueError(f"row {row}: unknown element {getattr(el, 'symbol', el)} in {item!r}")  # Xx, not Xx0+
    for el, amt in comp.items():
        if not np.isfinite(amt) or amt < 0:
            raise ValueError(f"row {row}: invalid amount {amt} of {el} in {item!r}")
    return comp


def without_oxidation_states(comp: Composition) -> Composition:
    """Species (``Fe2+``, ``Lu0+``) as their elements: students and teachers know elements only."""
    if all(isinstance(el, Element) for el in comp.elements):
        return comp
    return comp.element_composition


def parse_compositions(X: Any) -> list[Composition]:
    """Parse every row of ``X`` to a Composition (see :func:`parse_composition`)."""
    return [parse_composition(item, i) for i, item in enumerate(as_1d_list(X))]


def parse_structure(item: Any, row: int) -> Structure | None:
    """Convert a Structure, CIF string or None; raise ValueError naming the row otherwise."""
    if item is None or (isinstance(item, float) and np.isnan(item)):
        return None
    if isinstance(item, Structure):
        return item
    if isinstance(item, str):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # pymatgen's CIF rounding notices, one per file
                # check_cif only warns (silenced here) yet costs over half the parse of larger structures;
                # check_structures_match does the composition check that matters
                return Structure.from_str(item, fmt="cif", check_cif=False)
        except Exception as exc:
            raise ValueError(f"row {row}: cannot parse structure CIF: {exc}") from None
    if isinstance(item, dict):
        return Structure.from_dict(item)
    raise ValueError(f"row {row}: expected a pymatgen Structure, CIF string or None, got {type(item).__name__}")


def parse_structures(structures: Any, n_rows: int | None = None, name: str = "structures") -> list[Structure | None]:
    """Parse a sequence of structures; check its length against ``n_rows`` when given."""
    items = as_1d_list(structures, name)
    if n_rows is not None and len(items) != n_rows:
        raise ValueError(f"{name} has {len(items)} rows but X has {n_rows}")
    try:
        return [parse_structure(item, i) for i, item in enumerate(items)]
    except ValueError as exc:
        raise ValueError(f"{name}: {exc}") from None


def check_structures_match(compositions: Sequence[Composition], structures: Sequence[Structure | None]) -> None:
    """Raise ValueError for the first structure whose reduced composition differs from its row's."""
    for i, (comp, struct) in enumerate(zip(compositions, structures)):
        if struct is None:
            continue
        struct_comp = without_oxidation_states(struct.composition)
        if not struct_comp.reduced_composition.almost_equals(without_oxidation_states(comp).reduced_composition,
                                                             rtol=1e-3):
            raise ValueError(
                f"row {i}: structure composition {struct_comp.reduced_formula} "
                f"differs from the row's composition {comp.reduced_formula}"
            )


def target_column(y: Any, n_rows: int, dtype: Any = None, needs: str = "a target") -> np.ndarray:
    """``y`` as a 1-d array of ``n_rows`` (a one-column 2-d ``y`` is flattened); ValueError otherwise."""
    if y is None:
        raise ValueError(f"y is None; {needs} is needed for every row")
    arr = np.asarray(y, dtype=dtype)
    if arr.ndim == 2 and arr.shape[1] == 1:
        arr = arr[:, 0]
    if arr.ndim != 1:
        raise ValueError(f"y must be one-dimensional, got shape {arr.shape}")
    if len(arr) != n_rows:
        raise ValueError(f"y has {len(arr)} rows but X has {n_rows}")
    return arr


def check_targets(y: Any, n_rows: int) -> np.ndarray:
    """Return ``y`` as a float array; raise ValueError on length mismatch or non-finite values."""
    arr = target_column(y, n_rows, float)
    bad = np.flatnonzero(~np.isfinite(arr))
    if len(bad):
        raise ValueError(f"y has non-finite value {arr[bad[0]]} at row {bad[0]} ({len(bad)} such rows)")
    return arr


def split_inputs(X: Any) -> tuple[list[Composition], list[Structure | None] | None]:
    """Compositions of ``X``; when ``X`` holds Structures they are returned too, for the teacher."""
    items = as_1d_list(X)
    comps = [parse_composition(item, i) for i, item in enumerate(items)]
    if any(isinstance(item, Structure) for item in items):
        return comps, [item if isinstance(item, Structure) else None for item in items]
    return comps, None
