"""``TSRegressor``: a scikit-learn regressor trained with a structure teacher, used with formulas only.

:class:`TeacherStudentEstimator` holds what regression and classification share (teacher, caching,
the two steps); :class:`TSRegressor` and :class:`~matbench_ts.classifier.TSClassifier` add their targets.
"""

from __future__ import annotations

import dataclasses
import numbers
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import torch
from pymatgen.core import Composition, Structure
from sklearn.base import BaseEstimator, RegressorMixin
from sklearn.model_selection import train_test_split
from sklearn.utils.validation import check_is_fitted

from .cache import TeacherCache, structure_key
from .device import resolve_device, seeded_torch
from .inputs import check_structures_match, check_targets, parse_structures, split_inputs
from .students import Student, make_student
from .recipe import Recipe, recipe_settings, resolve_recipe
from .resume import FitState, fit_key
from .pretrained import Checkpoint, check_student_matches
from .pretrained import load as load_checkpoint
from .teachers import check_teacher_elements, frozen_cache_id, make_teacher
from .training import Rows, StepConfig, StudentWithProjection, balancing_alpha, probe_head, train_step

#: The measured alpha rules; ``alpha="auto"`` means :data:`AUTO_ALPHA_RULE`.
ALPHA_RULES = ("auto-init", "auto-step2")
AUTO_ALPHA_RULE = "auto-step2"
#: The names ``alpha`` accepts besides a number.
ALPHA_NAMES = ("auto", *ALPHA_RULES)
#: What ``pretrained="auto"`` starts from, per student: the shipped student aligned to CHGNet on the full
#: library, for that student at default sizes taught by CHGNet (issue #11's item 5, decided on inner
#: validation for each student: docs/results.md).
AUTO_PRETRAINED = {"crabnet": "crabnet-chgnet-mp", "roost": "roost-chgnet-mp"}


def _is_integer(value: Any) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def _is_finite_number(value: Any, minimum: float = -np.inf) -> bool:
    """A real number (not a bool or a string), finite and >= ``minimum``."""
    return (isinstance(value, numbers.Real) and not isinstance(value, bool)
            and bool(np.isfinite(value)) and value >= minimum)


class TeacherStudentEstimator(BaseEstimator):
    """Composition-only model taught by a crystal-structure model (teacher-student); the shared part
    of :class:`TSRegressor` and :class:`~matbench_ts.classifier.TSClassifier`.

    Parameters
    ----------
    teacher : "chgnet", "alignn", None or transformer
        Structure model giving the embedding the student learns to reproduce. Any
        object with ``fit(structures, y)`` and ``transform(structures) -> (n, d)`` works.
        ``None`` trains the plain student (the baseline), through the same code.
    student : "crabnet", "roost" or Student
        Composition model; its embedding is the input of its final linear layer.
    teacher_params, student_params : dict, optional
        Keyword arguments of the teacher and student constructors (model sizes...).
    pretrained : "auto", str, path or None
        Start from a pretrained student (``matbench_ts.pretrained.available()`` names the shipped
        ones; a path reads a file made by ``matbench-ts pretrain``): its embedding is already
        aligned to a structure teacher on a library of structures, so step 1 is not run again.
        ``"auto"`` (``TSRegressor``'s default) is the student's entry of :data:`AUTO_PRETRAINED`
        (``crabnet-chgnet-mp``, ``roost-chgnet-mp``) when the student is named with default sizes
        (``student="crabnet"`` or ``"roost"``, no ``student_params``) and taught by CHGNet
        (``teacher="chgnet"``), and no checkpoint otherwise; ``None`` never starts from one.
        The student and its sizes come from the checkpoint (``student`` must name the same
        student; ``student_params`` may only repeat its sizes). With ``teacher=None`` the student
        is fine-tuned on the targets alone: no structure and no teacher is needed. With the
        checkpoint's teacher, step 2 guides with the checkpoint's projection and standardisation.
        After ``fit``, ``pretrained_id_`` names the checkpoint (``name@hash``).
    alpha : "auto", "auto-init", "auto-step2" or float
        Weight of the embedding loss in step 2; 0 skips it. A measured alpha makes
        ``alpha * L_emb == beta * L_target`` on the training rows: ``"auto-init"`` measures
        it on the untrained student (before step 1: both terms start comparable, alpha is
        near 1); ``"auto-step2"`` after step 1 (L_emb is then already small, so alpha comes
        out large, 5-30, and step 2 leans on the embedding). ``"auto"`` is the rule chosen on
        validation splits inside training folds (``AUTO_ALPHA_RULE``, see docs/results.md).
        A measured alpha is capped at ``training.MAX_ALPHA`` (100): with a few structures,
        step 1 fits them exactly and the balance would be unbounded. In step 2 each row with a
        structure weighs like a row of the target loss, so sparse structures guide little.
        After ``fit``, ``alpha_`` holds the value used and ``alpha_rule_`` the rule or number.
    beta : float
        Weight of the target loss in step 2 (the recipe's loss for regression, the binary
        cross-entropy for classification). 0 makes step 2 a second step 1 (embedding loss
        only, early-stopped on it): it needs a teacher, rows with structures and a number alpha > 0.
    epochs : int
        Maximum epochs of step 2 (knowledge guidance; the only step of the baseline).
    epochs_step1 : int
        Maximum epochs of step 1 (knowledge transfer: embedding loss only). 0 skips it.
    recipe : "auto", "crabnet", "roost", "plain" or dict
        How the student learns (loss, optimiser, learning-rate schedule, weight averaging, input
        noise): ``"auto"`` is the student's own published recipe (CrabNet: RobustL1 with a log-std
        head, Lamb + Lookahead, cyclic learning rate, stochastic weight averaging, fractional
        noise; Roost: RobustL1, AdamW); ``"plain"`` is AdamW with an L1 loss and early stopping.
        A dict overrides fields of a base: ``{"base": "crabnet", "swa": False}``. See
        :class:`matbench_ts.recipe.Recipe`; after ``fit``, ``recipe_`` holds the one used.
    learning_rate, batch_size, weight_decay : float, int, float or None
        Override the recipe's (for the cyclic schedule, ``learning_rate`` is its peak);
        ``None`` follows the recipe: CrabNet's batch grows with the number of rows, and its peak
        rate falls to ``finetune_learning_rate`` (2e-3) when a pretrained checkpoint is fine-tuned on
        the targets alone (no teacher) on more than ``finetune_large_rows`` (2,000) rows. After
        ``fit``, ``learning_rate_`` holds the rate used.
    validation_fraction : float
        Share of the training rows held out for early stopping and weight averaging (and of
        ``pretrain_structures`` in step 1).
    patience : int
        For a recipe without weight averaging and with ``early_stopping`` (``"plain"``): epochs
        without validation improvement before a step stops; the best epoch is kept. The published
        recipes (``"crabnet"``, ``"roost"``) run every epoch.
    cache_dir : str, optional
        Where teacher embeddings and fitted teachers are cached
        (default ``$MATBENCH_TS_CACHE`` or ``~/.cache/matbench_ts``).
    device : str, optional
        ``"cuda"``, ``"cpu"``...; default CUDA when present, else CPU.
    mixed_precision : bool
        Train the student under autocast (bfloat16, or float16 with gradient scaling on GPUs
        without bfloat16); weights, losses and predictions stay float32. For GPUs: on a CPU
        it is usually slower.
    random_state : int, optional
        Seeds the split, shuffling, weight init and dropout (without global seeding).
    verbose : int
        0 silences the progress bars.
    """

    def __init__(
        self,
        teacher: Any = "chgnet",
        student: str | Student = "crabnet",
        *,
        teacher_params: dict[str, Any] | None = None,
        student_params: dict[str, Any] | None = None,
        pretrained: str | None = "auto",
        alpha: float | str = "auto",
        beta: float = 1.0,
        epochs: int = 300,
        epochs_step1: int = 100,
        recipe: str | dict[str, Any] = "auto",
        learning_rate: float | None = None,
        batch_size: int | None = None,
        weight_decay: float | None = None,
        validation_fraction: float = 0.1,
        patience: int = 30,
        cache_dir: str | None = None,
        device: str | None = None,
        mixed_precision: bool = False,
        random_state: int | None = None,
        verbose: int = 1,
    ) -> None:
        self.teacher = teacher
        self.student = student
        self.teacher_params = teacher_params
        self.student_params = student_params
        self.pretrained = pretrained
        self.alpha = alpha
        self.beta = beta
        self.epochs = epochs
        self.epochs_step1 = epochs_step1
        self.recipe = recipe
        self.learning_rate = learning_rate
        self.batch_size = batch_size
        self.weight_decay = weight_decay
        self.validation_fraction = validation_fraction
        self.patience = patience
        self.cache_dir = cache_dir
        self.device = device
        self.mixed_precision = mixed_precision
        self.random_state = random_state
        self.verbose = verbose

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.string = True
        tags.input_tags.one_d_array = True
        tags.input_tags.two_d_array = False
        tags.target_tags.required = True
        return tags

    # ------------------------------------------------------------------ fit
    def _check_params(self) -> None:
        """Raise ValueError naming the first invalid setting, before any work."""
        measured = isinstance(self.alpha, str) and self.alpha in ALPHA_NAMES
        if not (measured or _is_finite_number(self.alpha, minimum=0)):
            raise ValueError(
                f"alpha must be {', '.join(map(repr, ALPHA_NAMES))} or a finite number >= 0, got {self.alpha!r}"
            )
        if not _is_finite_number(self.beta, minimum=0):
            raise ValueError(f"beta must be a finite number >= 0, got {self.beta!r}")
        if self.beta == 0:  # step 2 on the embedding loss alone: (alpha * L_emb) / alpha
            if self.teacher is None:
                raise ValueError("beta=0 leaves only the embedding loss, which needs a teacher; got teacher=None")
            if measured or self.alpha == 0:  # a measured alpha balances a target loss that beta=0 switches off
                raise ValueError(f"beta=0 (a second step 1) needs a number alpha > 0, got alpha={self.alpha!r}")
        for name, minimum in (("epochs", 1), ("epochs_step1", 0), ("patience", 0)):
            value = getattr(self, name)
            if not _is_integer(value) or value < minimum:
                raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
        if self.batch_size is not None and (not _is_integer(self.batch_size) or self.batch_size < 1):
            raise ValueError(f"batch_size must be None or an integer >= 1, got {self.batch_size!r}")
        if self.learning_rate is not None and not (_is_finite_number(self.learning_rate) and self.learning_rate > 0):
            raise ValueError(f"learning_rate must be None or a finite number > 0, got {self.learning_rate!r}")
        if self.weight_decay is not None and not _is_finite_number(self.weight_decay, minimum=0):
            raise ValueError(f"weight_decay must be None or a finite number >= 0, got {self.weight_decay!r}")
        self._recipe()
        self._checkpoint()
        if not _is_finite_number(self.validation_fraction, minimum=0) or self.validation_fraction >= 1:
            raise ValueError(f"validation_fraction must be in [0, 1), got {self.validation_fraction!r}")
        if not isinstance(self.verbose, (int, np.integer)):
            raise ValueError(f"verbose must be an integer, got {self.verbose!r}")
        if self.random_state is not None and not _is_integer(self.random_state):
            # torch generators are seeded from it, so a RandomState instance cannot stand in
            raise ValueError(f"random_state must be None or an integer, got {type(self.random_state).__name__}")

    def _pretrained_name(self, own_step1: bool = False) -> str | None:
        """``pretrained`` with ``"auto"`` resolved (``own_step1``: the fit brings ``pretrain_structures``)."""
        if self.pretrained != "auto":
            return self.pretrained
        default_student = isinstance(self.student, str) and self.student_params is None
        if not default_student or self.teacher != "chgnet" or own_step1:
            return None
        return AUTO_PRETRAINED.get(self.student)

    def _checkpoint(self, own_step1: bool = False) -> Checkpoint | None:
        """The pretrained checkpoint, checked against ``student``/``student_params`` (None without one)."""
        name = self._pretrained_name(own_step1)
        if name is None:
            return None
        checkpoint = load_checkpoint(name)
        check_student_matches(checkpoint, self.student, self.student_params)
        return checkpoint

    def _recipe(self) -> Recipe:
        """The recipe in force: ``recipe`` resolved for the student, with ``weight_decay`` applied."""
        recipe = resolve_recipe(self.recipe, self.student)
        if self.weight_decay is not None:
            recipe = dataclasses.replace(recipe, weight_decay=float(self.weight_decay))
        return recipe

    def fit(
        self,
        X: Sequence[str | Composition | Structure],
        y: Sequence[float],
        structures: Sequence[Structure | str | None] | None = None,
        pretrain_structures: Sequence[Structure | str] | None = None,
        resume_dir: str | Path | None = None,
    ) -> TeacherStudentEstimator:
        """Train the student; the teacher sees ``structures`` (one per row, or None).

        ``X`` holds formulas, Compositions or Structures (then they also feed the
        teacher unless ``structures`` is given). ``pretrain_structures`` (no targets)
        makes step 1 run on that set instead of the fit data. ``resume_dir`` (needs an integer
        ``random_state``) keeps the training state in that folder, at most a minute old: the
        same fit again, after an interruption, continues from there and ends as an
        uninterrupted fit would (see :mod:`matbench_ts.resume`); ``epochs_resumed_`` then
        says how many epochs of each step were loaded rather than trained, and
        ``seconds_resumed_`` how many seconds earlier calls spent training them (None for a
        state written before that was recorded).
        """
        self._check_params()
        if resume_dir is not None and not _is_integer(self.random_state):
            raise ValueError("resume_dir needs an integer random_state: a resumed fit must redo the same "
                             f"splits and initialisation, got random_state={self.random_state!r}")
        compositions, x_structures = split_inputs(X)
        n = len(compositions)
        y = self._encode_targets(y, n)
        if structures is not None:
            structs = parse_structures(structures, n)
        else:
            structs = x_structures or [None] * n
        check_structures_match(compositions, structs)
        if self.beta == 0 and all(s is None for s in structs):
            raise ValueError("beta=0 trains on the embedding loss only, but no row of X has a structure")
        pretrain = []
        checkpoint = self._checkpoint(own_step1=pretrain_structures is not None)
        if checkpoint is not None and pretrain_structures is not None:
            raise ValueError(f"pretrained={self.pretrained!r} already holds step 1: pretrain_structures cannot be "
                             "added; leave one of them out")
        if pretrain_structures is not None:
            pretrain = [s for s in parse_structures(pretrain_structures, name="pretrain_structures") if s is not None]
        device = resolve_device(self.device)
        teacher = None if self.teacher is None else make_teacher(self.teacher, self.teacher_params)
        check_teacher_elements(teacher, structs)
        check_teacher_elements(teacher, pretrain, "pretrain_structures")
        state = None
        if resume_dir is not None:
            params = {**self.get_params(deep=False), "pretrained": None if checkpoint is None else checkpoint.id,
                      "recipe": recipe_settings(self._recipe())}  # what "auto" resolves to today
            state = FitState(resume_dir, fit_key(params, compositions, y, structs, pretrain))  # another fit's: refused
        if hasattr(teacher, "get_params") and teacher.get_params().get("random_state", 0) is None:
            teacher.set_params(random_state=self.random_state)  # a trained teacher is reproducible too
        self.pretrained_id_ = None if checkpoint is None else checkpoint.id
        with seeded_torch(self.random_state, device):
            start = None if checkpoint is None else checkpoint.build()
            student = make_student(self.student, self.student_params) if start is None else start.student
            student.check_elements(compositions)
            try:
                student.check_elements([s.composition for s in pretrain])
            except ValueError as exc:
                raise ValueError(f"pretrain_structures: {exc}") from None
            train_idx, val_idx = self._split(n, has_structure=None if teacher is None else
                                             np.array([s is not None for s in structs]), labels=self._strata(y))
            scaling = None
            if checkpoint is not None and teacher is not None and frozen_cache_id(teacher) == checkpoint.teacher_id:
                scaling = checkpoint.teacher_scaling()  # the space the checkpoint's projection maps into
            else:
                start = None  # another teacher: a fresh projection onto its embedding
            with seeded_torch(None, device):  # teacher work must not shift the student's random stream
                teacher_emb, pretrain_emb = self._teacher_embeddings(teacher, structs, y, pretrain, train_idx, scaling)
            self._fit_student(student, compositions, y, teacher_emb, pretrain, pretrain_emb, train_idx, val_idx, device,
                              projection=None if start is None else start.projection,
                              step1=checkpoint is None, state=state)
        return self

    # hooks of the target type -----------------------------------------------------------
    def _encode_targets(self, y: Any, n_rows: int) -> np.ndarray:
        """``y`` checked and as numbers (labels encoded for classification)."""
        raise NotImplementedError

    def _scale_targets(self, y: np.ndarray, train_idx: np.ndarray) -> np.ndarray:
        """The float32 targets the student learns (regression: standardised on the training rows)."""
        raise NotImplementedError

    def _objective(self, recipe: Recipe) -> str:
        """The target loss (one of ``training.OBJECTIVES``)."""
        raise NotImplementedError

    def _pos_weight(self, y: np.ndarray, train_idx: np.ndarray) -> float | None:
        """Weight of the positive class in the classification loss (None: unweighted)."""
        return None

    def _strata(self, y: np.ndarray) -> np.ndarray | None:
        """Labels the validation split keeps in proportion (classification), or None."""
        return None

    def _split(
        self, n: int, has_structure: np.ndarray | None = None, labels: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        idx = np.arange(n)
        if self.validation_fraction == 0 or n < 10:
            return idx, idx
        try:
            train, val = train_test_split(idx, test_size=self.validation_fraction, random_state=self.random_state,
                                          stratify=labels)
        except ValueError:  # a class too rare to put on both sides
            train, val = train_test_split(idx, test_size=self.validation_fraction, random_state=self.random_state)
        if has_structure is not None and has_structure[train].any() != has_structure[val].any():
            # step 1 early-stops on the validation rows' embedding loss, and learns from the training rows':
            # both sides need rows with a structure
            try:
                train, val = train_test_split(idx, test_size=self.validation_fraction,
                                              random_state=self.random_state, stratify=has_structure)
            except ValueError:  # too few rows with a structure to put some on each side
                pass
        if has_structure is not None and has_structure[val].any() and not has_structure[train].any():
            # the teacher guides through training rows only: a lone structure that drew validation trains
            train, val = np.sort(np.concatenate([train, val[has_structure[val]]])), val[~has_structure[val]]
        return train, val

    def _teacher_embeddings(self, teacher, structs, y, pretrain, train_idx, scaling=None):
        """Fit the teacher (cached) and embed the structures (cached); standardise the embeddings."""
        self.teacher_, self.teacher_id_, self.n_teacher_computed_ = None, None, 0
        has = np.array([s is not None for s in structs])
        if teacher is None:
            return None, None
        if not (has.any() or pretrain):
            warnings.warn("a teacher is set but no row has a structure and no pretrain_structures were "
                          "given: training the plain student", UserWarning, stacklevel=3)
            return None, None
        with TeacherCache(self.cache_dir) as cache:
            return self._embed_with_cache(cache, teacher, structs, y, pretrain, train_idx, has, scaling)

    def _embed_with_cache(self, cache, teacher, structs, y, pretrain, train_idx, has, scaling=None):
        """Teacher fitting and embedding through ``cache``; returns embeddings standardised with
        ``scaling`` (mean, std) or else with the training rows' (or ``pretrain``'s) own."""
        rows = np.flatnonzero(has)
        frozen_id = frozen_cache_id(teacher)
        if frozen_id is not None:
            self.teacher_, self.teacher_id_ = teacher.fit([structs[i] for i in rows], y[rows]), frozen_id
        else:
            if not len(rows):
                raise ValueError("a teacher that learns from the fit data needs structures for some rows of X")
            params = teacher.get_params() if hasattr(teacher, "get_params") else joblib.hash(teacher)
            fit_key = joblib.hash((type(teacher).__qualname__, params, [structure_key(structs[i]) for i in rows], y[rows]))
            self.teacher_ = cache.fitted_teacher(fit_key, lambda: teacher.fit([structs[i] for i in rows], y[rows]))
            self.teacher_id_ = f"{type(teacher).__name__}-{fit_key}"
        transform = self.teacher_.transform
        fit_emb = cache.embeddings(self.teacher_id_, [structs[i] for i in rows], transform) if len(rows) else None
        pre_emb = cache.embeddings(self.teacher_id_, pretrain, transform) if pretrain else None
        self.n_teacher_computed_ = cache.computed
        dim = (fit_emb if fit_emb is not None else pre_emb).shape[1]
        teacher_emb = np.full((len(structs), dim), np.nan, dtype=np.float32)
        if fit_emb is not None:
            teacher_emb[rows] = fit_emb
        if scaling is not None:
            self.teacher_mean_, self.teacher_std_ = scaling
        else:
            in_train = np.intersect1d(rows, train_idx)
            reference = teacher_emb[in_train] if len(in_train) else pre_emb
            self.teacher_mean_ = reference.mean(axis=0)
            std = reference.std(axis=0)
            self.teacher_std_ = np.where(std > 1e-8, std, 1.0).astype(np.float32)
        scale = lambda e: None if e is None else ((e - self.teacher_mean_) / self.teacher_std_).astype(np.float32)  # noqa: E731
        return scale(teacher_emb), scale(pre_emb)

    def _fit_student(self, student, compositions, y, teacher_emb, pretrain, pretrain_emb, train_idx, val_idx, device,
                     projection=None, step1=True, state: FitState | None = None):
        y_scaled = self._scale_targets(y, train_idx)
        has_teacher_rows = teacher_emb is not None and not np.isnan(teacher_emb[train_idx, 0]).all()
        teacher_dim = None
        if teacher_emb is not None or pretrain_emb is not None:
            teacher_dim = (teacher_emb if teacher_emb is not None else pretrain_emb).shape[1]
        model = StudentWithProjection(student, teacher_dim)
        if projection is not None and teacher_dim is not None:
            model.projection = projection
        model = model.to(device)
        rows = Rows(student.encode(compositions), y_scaled, teacher_emb)
        rng = np.random.default_rng(self.random_state)
        recipe = self.recipe_ = self._recipe()
        objective = self._objective(recipe)
        guided = has_teacher_rows and self.alpha != 0
        self.learning_rate_ = float(self.learning_rate
                                    or recipe.learning_rate_for(len(y), from_checkpoint=not step1, guided=guided))
        step = dict(recipe=recipe, learning_rate=self.learning_rate_,
                    patience=self.patience, verbose=self.verbose, amp=bool(self.mixed_precision),
                    objective=objective, pos_weight=self._pos_weight(y, train_idx))
        batch_size = lambda n_rows: self.batch_size or recipe.batch_size_for(n_rows)  # noqa: E731
        self.history_, self.epochs_resumed_, self.seconds_resumed_ = [], {}, {}
        train, val = rows.subset(train_idx), rows.subset(val_idx)
        emb_val = val  # where the embedding loss of the fit rows is monitored (step 1, and step 2 with beta=0)
        monitors_emb = (self.epochs_step1 > 0 and pretrain_emb is None) or self.beta == 0
        if has_teacher_rows and monitors_emb and np.isnan(teacher_emb[val_idx, 0]).all():
            warnings.warn("no validation row has a structure: the embedding loss is monitored on the training "
                          "rows, so early stopping cannot catch overfitting", UserWarning, stacklevel=3)
            emb_val = train
        rule = self.alpha_rule_ = AUTO_ALPHA_RULE if self.alpha == "auto" else self.alpha
        if not has_teacher_rows:
            self.alpha_ = 0.0
        elif rule == "auto-init":  # measured on the untrained student (before step 1)
            self.alpha_ = balancing_alpha(model, train, self.beta, batch_size(len(train)) * 4, device, objective)
        elif rule != "auto-step2":
            self.alpha_ = float(rule)
        if teacher_dim is not None and self.epochs_step1 > 0 and step1:
            if pretrain_emb is not None:
                pre_rows = Rows(student.encode([s.composition for s in pretrain]), None, pretrain_emb)
                pre_train, pre_val = self._split(len(pre_rows))
                step1_train, step1_val = pre_rows.subset(pre_train), pre_rows.subset(pre_val)
            else:
                no_y = Rows(rows.items, None, teacher_emb)
                step1_train, step1_val = no_y.subset(train_idx), Rows(emb_val.items, None, emb_val.teacher)
            config = StepConfig("step 1", self.epochs_step1, 1.0, 0.0, batch_size=batch_size(len(step1_train)), **step)
            self.history_ += self._train_step(model, step1_train, step1_val, config, device, rng, state)
        if recipe.probe_head and not step1 and objective != "bce":  # before alpha: it balances this head's loss
            probe_head(model, train, batch_size(len(train)) * 4, device)
        if has_teacher_rows and rule == "auto-step2":  # measured after step 1
            self.alpha_ = balancing_alpha(model, train, self.beta, batch_size(len(train)) * 4, device, objective)
        config = StepConfig("step 2", self.epochs, self.alpha_, float(self.beta), batch_size=batch_size(len(train)), **step)
        self.history_ += self._train_step(model, train, val if self.beta > 0 else emb_val, config, device, rng, state)
        self.model_ = model.cpu().eval()

    def _train_step(self, model, train, val, config, device, rng, state: FitState | None):
        """``train_step``, saving to and resuming from ``state`` when there is one."""
        if state is None:
            return train_step(model, train, val, config, device, rng)
        resume = state.load(config.name)
        if resume is not None:  # this call's fit time then covers only the epochs trained in it
            self.epochs_resumed_[config.name] = resume["epoch"]
            self.seconds_resumed_[config.name] = resume.get("seconds")
        return train_step(model, train, val, config, device, rng, checkpoint=state.saver(config.name), resume=resume)

    # -------------------------------------------------------------- predict
    def _student_outputs(self, X) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(embedding, scaled prediction, log_std)`` of each row."""
        check_is_fitted(self, "model_")
        compositions, _ = split_inputs(X)
        student = self.model_.student
        student.check_elements(compositions)
        items = student.encode(compositions)
        device = resolve_device(self.device)
        model = self.model_.to(device).eval()
        outputs = []
        chunk = 1024
        try:
            with torch.no_grad():
                for start in range(0, len(items), chunk):
                    outputs.append([t.cpu() for t in student(student.collate(items[start : start + chunk], device))])
        finally:
            self.model_ = model.cpu()
        return tuple(torch.cat(parts).numpy() for parts in zip(*outputs))

    def transform(self, X: Sequence[str | Composition | Structure]) -> np.ndarray:
        """The student's embedding of each composition, ``(n, embedding_dim)``."""
        return self._student_outputs(X)[0]


class TSRegressor(RegressorMixin, TeacherStudentEstimator):
    __doc__ = (TeacherStudentEstimator.__doc__ or "").replace(
        """Composition-only model taught by a crystal-structure model (teacher-student); the shared part
    of :class:`TSRegressor` and :class:`~matbench_ts.classifier.TSClassifier`.""",
        """Composition-only regressor taught by a crystal-structure model (teacher-student).""")

    def _encode_targets(self, y: Any, n_rows: int) -> np.ndarray:
        return check_targets(y, n_rows)

    def _scale_targets(self, y: np.ndarray, train_idx: np.ndarray) -> np.ndarray:
        self.y_mean_ = float(y[train_idx].mean())
        self.y_std_ = float(y[train_idx].std()) or 1.0
        return ((y - self.y_mean_) / self.y_std_).astype(np.float32)

    def _objective(self, recipe: Recipe) -> str:
        return recipe.loss

    @property
    def predicts_std(self) -> bool:
        """Whether ``predict(X, return_std=True)`` works: the recipe trained the log-std output."""
        check_is_fitted(self, "model_")
        return self.recipe_.loss == "robust"

    def predict(
        self, X: Sequence[str | Composition | Structure], return_std: bool = False
    ) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
        """Predict from compositions alone (formulas, Compositions or Structures).

        With ``return_std=True``, also the predicted standard deviation of each row in target
        units (the robust loss's log-std head, as CrabNet and Roost report it): ``(mean, std)``.
        """
        _, pred, log_std = self._student_outputs(X)
        mean = pred.astype(np.float64) * self.y_std_ + self.y_mean_
        if not return_std:
            return mean
        if not self.predicts_std:
            raise ValueError(f"return_std needs a recipe with the robust loss; this model used loss={self.recipe_.loss!r}")
        return mean, np.exp(log_std.astype(np.float64)) * self.y_std_
