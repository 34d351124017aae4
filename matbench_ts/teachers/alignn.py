"""ALIGNN teacher: the ``alignn`` package's pure-torch model, trained inside ``fit``."""

from __future__ import annotations

import copy
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from pymatgen.core import Structure
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.model_selection import train_test_split
from tqdm.auto import tqdm

from ..device import resolve_device, seeded_torch


def structure_graph(structure: Structure, cutoff: float, max_neighbors: int):
    """ALIGNN's atom graph and line graph of one structure (no DGL)."""
    from alignn.torch_graph_builder import build_pure_torch_graph
    from jarvis.core.atoms import pmg_to_atoms

    return build_pure_torch_graph(
        pmg_to_atoms(structure),
        two_body_cutoff=cutoff,
        max_neighbors=max_neighbors,
        atom_features="cgcnn",
    )


class ALIGNNTeacher(TransformerMixin, BaseEstimator):
    """Embedding = ALIGNN's mean-pooled node features, the input of its last linear layer.

    With ``checkpoint=None`` the model is trained in ``fit`` on the given structures
    and targets only, so it never sees data outside the training set (leak-free).
    With a checkpoint path (a file written by :meth:`save`) ``fit`` loads it instead.
    """

    #: The CGCNN atom features cover H to Fm (jarvis substitutes another element beyond).
    max_z = 100

    def __init__(
        self,
        checkpoint: str | None = None,
        alignn_layers: int = 4,
        gcn_layers: int = 4,
        hidden_features: int = 256,
        embedding_features: int = 64,
        cutoff: float = 8.0,
        max_neighbors: int = 12,
        epochs: int = 100,
        batch_size: int = 32,
        learning_rate: float = 1e-3,
        validation_fraction: float = 0.1,
        random_state: int | None = None,
        device: str | None = None,
        verbose: int = 0,
    ) -> None:
        self.checkpoint = checkpoint
        self.alignn_layers = alignn_layers
        self.gcn_layers = gcn_layers
        self.hidden_features = hidden_features
        self.embedding_features = embedding_features
        self.cutoff = cutoff
        self.max_neighbors = max_neighbors
        self.epochs = epochs
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.validation_fraction = validation_fraction
        self.random_state = random_state
        self.device = device
        self.verbose = verbose

    def _config(self):
        from alignn.models.alignn_atomwise_pure import ALIGNNAtomWisePureConfig

        return ALIGNNAtomWisePureConfig(
            name="alignn_atomwise_pure",
            atom_input_features=92,  # cgcnn atom features
            alignn_layers=self.alignn_layers,
            gcn_layers=self.gcn_layers,
            hidden_features=self.hidden_features,
            embedding_features=self.embedding_features,
            calculate_gradient=False,
            gradwise_weight=0.0,
            energy_mult_natoms=False,
            use_penalty=False,
        )

    def _graphs(self, structures: Sequence[Structure]) -> list:
        graphs = []
        for i, struct in enumerate(tqdm(structures, desc="ALIGNN graphs", disable=not self.verbose)):
            try:
                graphs.append(structure_graph(struct, self.cutoff, self.max_neighbors))
            except Exception as exc:
                raise ValueError(
                    f"ALIGNN cannot build a graph for structure {i} ({struct.composition.reduced_formula}): {exc}"
                ) from None
        return graphs

    @staticmethod
    def _batch(graphs: list, device: torch.device):
        from alignn.torch_graph_builder import batch_torch_graph_pairs

        g, lg = batch_torch_graph_pairs(graphs)
        return g.to(device), lg.to(device)

    def fit(self, structures: Sequence[Structure], y: np.ndarray | None = None) -> ALIGNNTeacher:
        from alignn.models.alignn_atomwise_pure import ALIGNNAtomWisePure

        if self.checkpoint is not None:
            state = torch.load(Path(self.checkpoint), map_location="cpu", weights_only=False)
            self.set_params(**{k: v for k, v in state["params"].items() if k != "checkpoint"})
            self.model_ = ALIGNNAtomWisePure(self._config())
            self.model_.load_state_dict(state["state_dict"])
            self.y_mean_, self.y_std_ = state["y_mean"], state["y_std"]
            self.embedding_dim_ = self.hidden_features
            return self
        if y is None:
            raise ValueError("ALIGNNTeacher without a checkpoint needs targets to train on")
        y = np.asarray(y, dtype=np.float32)
        self.y_mean_, self.y_std_ = float(y.mean()), float(y.std() or 1.0)
        y_scaled = torch.as_tensor((y - self.y_mean_) / self.y_std_)
        graphs = self._graphs(structures)
        device = resolve_device(self.device)
        with seeded_torch(self.random_state, device):
            model = ALIGNNAtomWisePure(self._config()).to(device)
            idx = np.arange(len(graphs))
            train_idx, val_idx = train_test_split(
                idx, test_size=self.validation_fraction, random_state=self.random_state
            ) if len(idx) >= 10 else (idx, idx)
            optimizer = torch.optim.AdamW(model.parameters(), lr=self.learning_rate)
            rng = np.random.default_rng(self.random_state)
            best_loss, best_state = np.inf, None
            for _ in tqdm(range(self.epochs), desc="ALIGNN teacher", disable=not self.verbose):
                model.train()
                order = rng.permutation(train_idx)
                for start in range(0, len(order), self.batch_size):
                    batch = order[start : start + self.batch_size]
                    pred = model(self._batch([graphs[i] for i in batch], device) + (None,))["out"]
                    loss = torch.nn.functional.l1_loss(pred.view(-1), y_scaled[batch].to(device))
                    optimizer.zero_grad()
                    loss.backward()
                    optimizer.step()
                val_pred = self._forward_all(model, [graphs[i] for i in val_idx], device)[1]
                val_loss = float(np.mean(np.abs(val_pred - y_scaled[val_idx].numpy())))
                if val_loss < best_loss:
                    best_loss, best_state = val_loss, copy.deepcopy(model.state_dict())
            model.load_state_dict(best_state)
        self.model_ = model.cpu().eval()
        self.embedding_dim_ = self.hidden_features
        return self

    def _forward_all(self, model, graphs: list, device: torch.device) -> tuple[np.ndarray, np.ndarray]:
        """Pooled embeddings and scaled predictions of every graph, in batches."""
        captured = []
        hook = model.fc.register_forward_hook(lambda _m, inputs, _o: captured.append(inputs[0].detach()))
        preds = []
        model.eval()
        try:
            with torch.no_grad():
                for start in range(0, len(graphs), self.batch_size):
                    out = model(self._batch(graphs[start : start + self.batch_size], device) + (None,))["out"]
                    preds.append(out.view(-1).cpu())
        finally:
            hook.remove()
        return torch.cat(captured).cpu().numpy(), torch.cat(preds).numpy()

    def transform(self, structures: Sequence[Structure]) -> np.ndarray:
        device = resolve_device(self.device)
        model = self.model_.to(device)
        emb, _ = self._forward_all(model, self._graphs(structures), device)
        self.model_ = model.cpu()
        return emb.astype(np.float32)

    def predict(self, structures: Sequence[Structure]) -> np.ndarray:
        """The teacher's own target predictions (for reporting the teacher's MAE)."""
        device = resolve_device(self.device)
        _, pred = self._forward_all(self.model_.to(device), self._graphs(structures), device)
        self.model_.cpu()
        return pred * self.y_std_ + self.y_mean_

    def save(self, path: str | Path) -> None:
        """Write a checkpoint that ``ALIGNNTeacher(checkpoint=path)`` loads."""
        torch.save(
            {"params": self.get_params(), "state_dict": self.model_.state_dict(),
             "y_mean": self.y_mean_, "y_std": self.y_std_},
            Path(path),
        )
