"""Device choice and seeding that leaves the global random state alone."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch


def resolve_device(device: str | torch.device | None) -> torch.device:
    """``None`` or ``"auto"`` -> CUDA when present, else CPU."""
    if device is None or device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


@contextlib.contextmanager
def seeded_torch(random_state: int | None, device: torch.device) -> Iterator[None]:
    """Seed torch inside a forked RNG, so weight init and dropout are reproducible
    without touching the caller's global random state (``random_state=None``: unseeded)."""
    devices = [device.index or 0] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        if random_state is not None:
            torch.manual_seed(random_state)
        yield
