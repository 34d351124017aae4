"""Frozen pretrained CHGNet (weights ship in the ``chgnet`` wheel) as a teacher."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from pymatgen.core import Structure
from sklearn.base import BaseEstimator, TransformerMixin

from ..device import resolve_device


class CHGNetTeacher(TransformerMixin, BaseEstimator):
    """Embedding = mean over atoms of CHGNet's final atom features, the input of its readout.

    ``layer="atom"`` (default) takes the atom features that enter CHGNet's energy readout MLP;
    ``layer="readout"`` the input of that MLP's last linear layer (the literal "vector before
    the final linear layer"; the readout is linear after it, so the atom mean is exact). On
    Matbench perovskites (5% of fold 0's training rows, ridge probe on the embedding) the atom
    features predict the target better (MAE 0.178 vs 0.268 eV/cell) and teach CrabNet better.

    CHGNet is frozen, so ``fit`` does nothing and the embedding of a structure
    depends only on the structure: the cache reuses it across folds and tasks.
    CHGNet was trained on Materials Project energies: as a teacher of MP-derived
    formation-energy tasks it has seen test-set targets (a leaky teacher).
    """

    def __init__(
        self, model_name: str = "0.3.0", layer: str = "atom", batch_size: int = 64, device: str | None = None
    ) -> None:
        self.model_name = model_name
        self.layer = layer
        self.batch_size = batch_size
        self.device = device

    def cache_id(self) -> str:
        """Identity of the embedding function, independent of any training data."""
        return f"chgnet-{self.model_name}-{self.layer}"

    def fit(self, structures: Sequence[Structure], y: np.ndarray | None = None) -> CHGNetTeacher:
        return self

    def _model(self):
        """The pretrained CHGNet, loaded once per teacher object (and not pickled with it)."""
        if getattr(self, "_chgnet", None) is None:
            from chgnet.model import CHGNet

            model = CHGNet.load(model_name=self.model_name, use_device="cpu", verbose=False)
            self._chgnet = model.to(resolve_device(self.device)).eval()
        return self._chgnet

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state.pop("_chgnet", None)  # the weights ship with the chgnet wheel: reload, don't pickle
        return state

    def transform(self, structures: Sequence[Structure]) -> np.ndarray:
        if self.layer not in ("readout", "atom"):
            raise ValueError(f"layer must be 'readout' or 'atom', got {self.layer!r}")
        model = self._model()
        device = next(model.parameters()).device
        captured: list[torch.Tensor] = []
        final_linear = model.mlp.layers[-1]
        hook = final_linear.register_forward_hook(lambda _m, inputs, _o: captured.append(inputs[0]))
        rows: list[np.ndarray] = []
        try:
            with torch.no_grad():
                for start in range(0, len(structures), self.batch_size):
                    chunk = structures[start : start + self.batch_size]
                    captured.clear()
                    pred = model([self._graph(model, s, start + k).to(device) for k, s in enumerate(chunk)],
                                 task="e", return_atom_feas=True)
                    per_atom = captured[0] if self.layer == "readout" else torch.cat(pred["atom_fea"])
                    sizes = [len(s) for s in chunk]
                    rows += [atoms.mean(dim=0).cpu().numpy() for atoms in torch.split(per_atom, sizes)]
        finally:
            hook.remove()
        return np.stack(rows).astype(np.float32)

    @staticmethod
    def _graph(model, structure: Structure, row: int):
        try:
            return model.graph_converter(structure)
        except Exception as exc:
            raise ValueError(
                f"CHGNet cannot build a graph for structure {row} ({structure.composition.reduced_formula}): {exc}"
            ) from None
