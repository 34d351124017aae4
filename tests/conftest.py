"""Shared fixtures: the 300-row CI set from ../shared/data and tiny model settings."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import pytest
from pymatgen.core import Structure

DATA_DIR = Path(os.environ.get("MATBENCH_TS_DATA", Path(__file__).resolve().parents[1] / ".." / "shared" / "data"))
CI_SET = DATA_DIR / "ci" / "mp_e_form_300.jsonl.gz"

TINY_CRABNET = dict(d_model=32, N=1, heads=2, out_hidden=(64, 32), dim_feedforward=64, dropout=0.0)
TINY_ROOST = dict(elem_fea_len=32, n_graph=1, elem_heads=1, cry_heads=1, trunk_hidden=(64,), out_hidden=(64, 32))
TINY_ALIGNN = dict(alignn_layers=1, gcn_layers=1, hidden_features=32, embedding_features=32, epochs=4, random_state=0)


@pytest.fixture(scope="session")
def ci_data() -> dict:
    """Train on folds 1-4 of the CI set (240 rows), test on fold 0 (60 rows)."""
    if not CI_SET.exists():
        pytest.fail(f"CI data not found at {CI_SET}; set MATBENCH_TS_DATA to ../shared/data")
    df = pd.read_json(CI_SET, lines=True)
    df["structure"] = [Structure.from_str(cif, fmt="cif") for cif in df["structure"]]
    train, test = df[df.fold != 0].reset_index(drop=True), df[df.fold == 0].reset_index(drop=True)
    return {
        "X": train["composition"].tolist(),
        "y": train["target"].to_numpy(),
        "structures": train["structure"].tolist(),
        "X_test": test["composition"].tolist(),
        "y_test": test["target"].to_numpy(),
        "structures_test": test["structure"].tolist(),
    }


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory) -> str:
    """One teacher cache for the session, so CHGNet embeds each CI structure once."""
    return str(tmp_path_factory.mktemp("teacher_cache"))


@pytest.fixture
def tiny(cache_dir) -> dict:
    """TSRegressor settings for fast, deterministic fits (the plain recipe: a tiny CrabNet learns in
    40 epochs with AdamW; crabnet's Lamb needs more, see test_recipe.py)."""
    return dict(
        student="crabnet",
        student_params=TINY_CRABNET,
        recipe="plain",
        epochs=40,
        epochs_step1=20,
        learning_rate=2e-3,
        batch_size=64,
        patience=10,
        cache_dir=cache_dir,
        random_state=0,
        verbose=0,
    )


@pytest.fixture(scope="session")
def fitted_ts(ci_data, cache_dir):
    """A T-S CrabNet with the CHGNet teacher, fitted once for several tests."""
    from matbench_ts import TSRegressor

    model = TSRegressor(
        teacher="chgnet", student="crabnet", student_params=TINY_CRABNET, epochs=40, epochs_step1=20,
        recipe="plain", learning_rate=2e-3, batch_size=64, patience=10, cache_dir=cache_dir, random_state=0, verbose=0,
    )
    return model.fit(ci_data["X"], ci_data["y"], structures=ci_data["structures"])


def stop_fits_in_step2(monkeypatch, after_epochs: int = 5) -> Callable[[], None]:
    """Make fits with a ``resume_dir`` save their state every epoch and stop (KeyboardInterrupt, as a
    kill) once step 2 has saved ``after_epochs`` epochs; returns what lets them run through again."""
    import matbench_ts.resume as resume

    monkeypatch.setattr(resume, "SAVE_EVERY_S", 0.0)
    real_write, writes = resume.atomic_write, {"n": 0}

    def stop_in_step2(path, write):
        real_write(path, write)
        writes["n"] += path.name == "step2.pt"
        if writes["n"] == after_epochs:
            raise KeyboardInterrupt

    monkeypatch.setattr(resume, "atomic_write", stop_in_step2)
    return lambda: monkeypatch.setattr(resume, "atomic_write", real_write)
