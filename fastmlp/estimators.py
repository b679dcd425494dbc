"""MLPClassifier and MLPRegressor: scikit-learn's estimators, trained by fastmlp's backends.

Same parameters, defaults and fitted attributes as scikit-learn 1.9's, so switching is one
import. Beyond scikit-learn: `backend`, `n_threads`, `leaky_slope` (with
activation="leaky_relu") and `class_weight` on the classifier; float32 input trains in float32.
Sparse X (any scipy.sparse format) trains and predicts as CSR, never densified: the first
layer's products run over its rows' non-zeros. What still differs, on purpose, is listed in
docs/estimators.md ("What differs from scikit-learn"): a divergence raises at its epoch
and keeps the last finite weights, a failed fit keeps the model it had, lbfgs minimises the
loss it reports the gradient of, Poisson targets are validated.
"""
from __future__ import annotations

import copy
import functools
import operator
import sys
from numbers import Integral, Real
from typing import NamedTuple

import numpy as np
from numpy.typing import ArrayLike
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin
from sklearn.exceptions import ConvergenceWarning
from sklearn.metrics import accuracy_score, r2_score
from sklearn.neural_network._multilayer_perceptron import BaseMultilayerPerceptron
from sklearn.preprocessing import LabelBinarizer
from sklearn.utils import check_random_state, column_or_1d
from sklearn.utils.class_weight import compute_sample_weight
from sklearn.utils.metaestimators import available_if
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.multiclass import _check_partial_fit_first_call, type_of_target, unique_labels
from sklearn.utils.validation import _check_sample_weight, check_is_fitted, validate_data

from . import _memory, _warnings, training
from ._threads import check_n_threads, thread_limit
from .activations import HIDDEN_ACTIVATIONS
from .backends import Backend
from .backends._checks import is_sparse, sparse_input
from .model import MLP
from .settings import BACKEND_NAMES

#: Input dtypes a prediction takes as they are (validate_data would cast a float16 to
#: float64 first: the same values; a longer float would round twice).
_READY_DTYPES = (np.dtype(np.float16), np.dtype(np.float32), np.dtype(np.float64))


class _Progress:
    """tqdm bar with the running loss when `bar` (settings.progress_bar), nothing otherwise."""

    def __init__(self, bar, total, desc):
        self.bar = None
        if bar:
            from tqdm import tqdm

            self.bar = tqdm(total=total, desc=desc, unit="epoch", leave=False)

    def update(self, loss):
        # refresh=False: the bar redraws at tqdm's own pace (mininterval), not once per epoch
        # (a redraw per epoch is a visible share of a short fit and a line per epoch in logs)
        if self.bar is not None:
            self.bar.set_postfix(loss=f"{loss:.6f}", refresh=False)
            self.bar.update()

    def write(self, line):
        """A verbose line on stdout, on a line of its own beside the bar."""
        if self.bar is not None:
            self.bar.write(line, file=sys.stdout)
        else:
            print(line)

    def close(self):
        if self.bar is not None:
            self.bar.refresh()  # the last loss
            self.bar.close()


def _is_stochastic(estimator):
    """partial_fit exists for sgd, adam and adamw (hasattr is False for lbfgs, as
    scikit-learn's)."""
    if estimator.solver not in ("sgd", "adam", "adamw"):
        raise AttributeError(f"partial_fit is only available for stochastic optimizers. "
                             f"{estimator.solver} is not stochastic.")
    return True


_PARAMETERS = """    hidden_layer_sizes : array-like of shape (n_layers - 2,), default=(100,)
        The number of units in each hidden layer.
    activation : {"identity", "logistic", "tanh", "relu", "leaky_relu"}, default="relu"
        The hidden layers' activation (`leaky_relu`: fastmlp's own, see `leaky_slope`).
    solver : {"lbfgs", "sgd", "adam", "adamw"}, default="adam"
        The weight optimizer; "adamw" is fastmlp's own: Adam with decoupled weight decay
        (`weight_decay`), as ``torch.optim.AdamW``.
    alpha : float, default=0.0001
        Strength of the L2 penalty, divided by the sample count in the loss.
    batch_size : int or "auto", default="auto"
        Minibatch size for sgd and adam; "auto" is min(200, n_samples).
    learning_rate : {"constant", "invscaling", "adaptive"}, default="constant"
        The sgd step schedule.
    learning_rate_init : float, default=0.001
        The initial step size (sgd, adam).
    power_t : float, default=0.5
        The exponent of the "invscaling" schedule.
    max_iter : int, default=200
        The most epochs (sgd, adam) or iterations (lbfgs).
    shuffle : bool, default=True
        Whether rows are shuffled every epoch (sgd, adam).
    random_state : int, RandomState instance or None, default=None
        Seeds the weights, the shuffles and the early-stopping split.
    tol : float, default=1e-4
        The least improvement of loss or score that counts, over `n_iter_no_change`
        epochs.
    verbose : bool or int, default=False
        Print scikit-learn's ``Iteration N, loss = ...`` line after each epoch, and show a
        progress bar with the loss (``fastmlp.set_config(progress_bar=...)`` shows the bar
        with or without verbose lines).
    warm_start : bool, default=False
        Whether `fit` continues from the current weights.
    momentum : float, default=0.9
        The sgd momentum.
    nesterovs_momentum : bool, default=True
        Nesterov's momentum for sgd.
    early_stopping : bool, default=False
        Hold out `validation_fraction` of the rows and stop when their score stalls.
    validation_fraction : float, default=0.1
        The held-out fraction for early stopping.
    beta_1 : float, default=0.9
        Adam's (and adamw's) decay rate of the first moment.
    beta_2 : float, default=0.999
        Adam's (and adamw's) decay rate of the second moment.
    epsilon : float, default=1e-8
        Adam's (and adamw's) numerical stability term.
    n_iter_no_change : int, default=10
        Epochs without `tol` improvement before stopping (sgd, adam).
    max_fun : int, default=15000
        The most loss evaluations of lbfgs.
"""

_OWN_PARAMETERS = """    leaky_slope : float in (0, 1), default=0.01
        Slope of `activation="leaky_relu"` for negative inputs.
    weight_decay : float >= 0, default=0.0
        `solver="adamw"`'s decoupled weight decay λ: every step multiplies the weights and
        biases by 1 - learning_rate_init·λ apart from the gradient (``torch.optim.AdamW``'s
        `weight_decay`; `alpha`'s L2 penalty still adds to the gradient). Read by adamw only.
    backend : {"auto", "cython", "numba", "numpy"}, default="auto"
        Which kernels train the network; "auto" the fastest available (or what
        `fastmlp.set_config(backend=...)` chose); `backend_` says which ran.
    n_threads : int or None, default=None
        Threads for BLAS and the compiled kernels. None: the library defaults, adapted to
        the machine's load (`fastmlp.set_config(adaptive_threads=...)`). Negative counts back
        from the CPUs this process may use, as scikit-learn's n_jobs: -1 all of them, -2
        all but one. Capped at those CPUs (the affinity mask and the cgroup quota); 0 is an
        error. A child forked after its parent trained with several threads trains on one.
"""

_ATTRIBUTES = """    loss_ : float
        The loss at the end of the fit.
    best_loss_ : float or None
        The least loss reached (None with early stopping).
    loss_curve_ : list of float
        The loss after each epoch (sgd, adam).
    validation_scores_ : list of float or None
        The held-out score after each epoch, with early stopping.
    best_validation_score_ : float or None
        The best held-out score, with early stopping.
    t_ : int
        The samples seen by the solver.
    coefs_ : list of ndarray of shape (n_in, n_out)
        The weight matrices, layer by layer.
    intercepts_ : list of ndarray of shape (n_out,)
        The bias vectors, layer by layer.
    n_features_in_ : int
        The input width seen in `fit`.
    feature_names_in_ : ndarray of shape (n_features,)
        The input's column names, when it had string column names.
    n_iter_ : int
        The epochs (or lbfgs iterations) run.
    n_layers_ : int
        The layer count, input and output included.
    n_outputs_ : int
        The output width.
    out_activation_ : str
        The output layer's activation.
    backend_ : str
        The backend that trained the network.
"""


class _BaseMLP(BaseEstimator):
    _loss = None  # set by the subclasses

    def __init__(self, hidden_layer_sizes=(100,), activation="relu", *, solver="adam",
                 alpha=0.0001, batch_size="auto", learning_rate="constant",
                 learning_rate_init=0.001, power_t=0.5, max_iter=200, shuffle=True,
                 random_state=None, tol=1e-4, verbose=False, warm_start=False, momentum=0.9,
                 nesterovs_momentum=True, early_stopping=False, validation_fraction=0.1,
                 beta_1=0.9, beta_2=0.999, epsilon=1e-8, n_iter_no_change=10, max_fun=15000,
                 leaky_slope=0.01, weight_decay=0.0, backend="auto", n_threads=None):
        self.hidden_layer_sizes = hidden_layer_sizes
        self.activation = activation
        self.solver = solver
        self.alpha = alpha
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.learning_rate_init = learning_rate_init
        self.power_t = power_t
        self.max_iter = max_iter
        self.shuffle = shuffle
        self.random_state = random_state
        self.tol = tol
        self.verbose = verbose
        self.warm_start = warm_start
        self.momentum = momentum
        self.nesterovs_momentum = nesterovs_momentum
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.beta_1 = beta_1
        self.beta_2 = beta_2
        self.epsilon = epsilon
        self.n_iter_no_change = n_iter_no_change
        self.max_fun = max_fun
        self.leaky_slope = leaky_slope
        self.weight_decay = weight_decay
        self.backend = backend
        self.n_threads = n_threads

    # -- parameters ---------------------------------------------------------------------
    def _hidden_sizes(self):
        sizes = self.hidden_layer_sizes
        sizes = list(sizes) if hasattr(sizes, "__iter__") else [sizes]
        if any(not isinstance(s, Integral) or isinstance(s, bool) or s <= 0 for s in sizes):
            raise ValueError(f"hidden_layer_sizes must be > 0, got {sizes}.")
        return [int(s) for s in sizes]

    #: scikit-learn's constraints, its own parameters' and fastmlp's: every bad value is
    #: scikit-learn's InvalidParameterError, in its wording.
    _parameter_constraints: dict = {
        **BaseMultilayerPerceptron._parameter_constraints,
        "activation": [StrOptions(set(HIDDEN_ACTIVATIONS))],
        "solver": [StrOptions({"lbfgs", "sgd", "adam", "adamw"})],
        "leaky_slope": [Interval(Real, 0, 1, closed="neither")],
        "weight_decay": [Interval(Real, 0, None, closed="left")],
        "backend": [StrOptions({"auto", *BACKEND_NAMES}), Backend],
        "n_threads": [None, Interval(Integral, 1, None, closed="left"),
                      Interval(Integral, None, -1, closed="right")],
    }

    def _check_params(self):
        """scikit-learn's parameter validation, then what its fit checks; returns
        get_params(). A run of partial_fit calls validates once: values that are the very
        objects validated last are not validated again."""
        values = [getattr(self, name) for name in self._parameter_constraints]
        validated = vars(self).get("_validated_params")
        if validated is None or any(a is not b for a, b in zip(values, validated)):
            self._validate_params()
            check_n_threads(self.n_threads)  # an int, not a bool (an Interval takes True)
            self._hidden_sizes()
            self._validated_params = values
            self._params = self.get_params()
        return self._params

    # -- fitting --------------------------------------------------------------------------
    def fit(self, X: ArrayLike, y: ArrayLike, sample_weight: ArrayLike | None = None) -> _BaseMLP:
        """Fit the model to data matrix X and target(s) y.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
            The input data; a sparse matrix is used as CSR, never densified.
        y : array-like of shape (n_samples,) or (n_samples, n_outputs)
            The targets: class labels (or a label indicator matrix), or numbers.
        sample_weight : array-like of shape (n_samples,), default=None
            Weights of the rows in the loss; None weighs them equally.

        Returns
        -------
        self : object
            The fitted estimator.

        Notes
        -----
        Ctrl-C (SIGINT in the main thread) ends a sgd/adam fit within a minibatch, as
        scikit-learn's: a "Training interrupted by user." warning and a usable model. The
        epoch under way is rolled back, so the weights, the optimizer's moments, `n_iter_`,
        `t_`, `loss_curve_` and the stopping counters all describe the last completed epoch,
        and a warm-start `fit` or a `partial_fit` continues exactly from there. An lbfgs fit
        raises KeyboardInterrupt, as scikit-learn's does, leaving the last iterate L-BFGS
        accepted (its `n_iter_` and `loss_`).

        A fit that raises — bad input, a divergence, MemoryError, Ctrl-C in lbfgs — leaves
        an estimator that was fitted before exactly as it was (weights, optimizer state and
        every fitted attribute); on a first fit the weights are the last finite ones.
        """
        return self._fit(X, y, sample_weight, incremental=False)

    #: Private fitted state, restored with the public `*_` attributes when a refit fails.
    _FITTED_PRIVATE = ("_net", "_best_theta", "_schedule", "_label_binarizer",
                       "_no_improvement_count")

    def _fit(self, X, y, sample_weight, incremental):
        return self._fit_from(_InMemory(self, X, y, sample_weight), incremental)

    def _fit_from(self, source, incremental):
        """The one way a fit runs, whatever holds its data (`source`: rows in this process,
        _InMemory, or Dask's): one fit of this estimator at a time, a failed refit undone."""
        if vars(self).get("_fitting"):
            raise RuntimeError(f"this {type(self).__name__} is being fitted in another thread; "
                               "fit one estimator in one thread at a time")
        self._fitting = True  # before anything changes: a prediction under way will see it
        try:
            if self.warm_start or incremental:  # a fresh fit draws new weights, as sklearn's
                self._adopt_parameters()
            kept = self._fitted_state()
            try:
                return self._train(source, incremental)
            except BaseException:
                if kept is not None:
                    self._restore_fitted_state(kept)
                raise
        finally:
            self._fits_done = vars(self).get("_fits_done", 0) + 1
            self._fitting = False

    def _fitted_state(self):
        """What a failed refit puts back (None before the first fit): the fitted attributes,
        and copies of what training changes in place — θ, the optimizer's moments, the best
        weights and the learning-rate schedule."""
        if "_net" not in vars(self):
            return None
        attributes = {name: value for name, value in vars(self).items()
                      if name.endswith("_") and not name.startswith("__")
                      or name in self._FITTED_PRIVATE}
        attributes["_best_theta"] = copy.copy(self._best_theta)  # an array, or None
        attributes["_schedule"] = copy.copy(getattr(self, "_schedule", None))  # scalars
        return attributes, self._net, self._net.snapshot()

    def _restore_fitted_state(self, kept):
        attributes, net, snapshot = kept
        for name in [n for n in vars(self) if n.endswith("_") and not n.startswith("__")
                     or n in self._FITTED_PRIVATE]:
            if name not in attributes:
                delattr(self, name)
        vars(self).update(attributes)
        net.restore(snapshot)
        self._sync_attributes()

    def _train(self, source, incremental):
        """Check the parameters, have the source validate and encode its data, draw or check
        the network, run the Trainer, and record what it did in the fitted attributes (also
        when it raises: the last finite weights stay usable)."""
        params = self._check_params()
        hidden = self._hidden_sizes()
        first_pass = not hasattr(self, "coefs_") or (not self.warm_start and not incremental)
        data = source.prepare(first_pass, incremental)
        # A partial_fit epoch of one row (or unshuffled) draws nothing, and one whose seed is
        # an int draws what a fresh RandomState(seed) draws first: no generator is made for
        # either (making one costs more than a small epoch)
        if incremental and not first_pass:
            rng = None if not (self.shuffle and data.n_rows > 1) else (
                self.random_state if isinstance(self.random_state, Integral)
                else check_random_state(self.random_state))
        else:
            rng = check_random_state(self.random_state)
        layer_units = [data.n_features, *hidden, data.n_outputs]
        source.check_memory(layer_units, first_pass)
        if first_pass:
            self._initialize(layer_units, data.dtype, rng)
        elif self._net.arch.layer_sizes != tuple(layer_units):
            raise ValueError(f"the network has layers {list(self._net.arch.layer_sizes)}, but "
                             f"these data and hidden_layer_sizes need {layer_units}")
        net = self._net
        if self.n_threads != net.n_threads:
            net.n_threads = self.n_threads
        if not incremental:
            net.reset_optimizer()  # a new fit starts a new optimizer, as scikit-learn does
        state = self._training_state()
        trainer = training.Trainer(params, self._task())
        try:
            with thread_limit(self.n_threads):  # once per fit
                network, X, Y, sample_weight = source.network(net)
                trainer.fit(network, X, Y, sample_weight, rng, incremental, state)
        finally:  # also after a divergence error: the last finite weights stay usable
            self._apply_training_state(state)
            self._sync_attributes()
            source.finish(net, incremental)
        if self.early_stopping and self.solver != "lbfgs" and not incremental:
            self._warn_if_the_kept_weights_overflow(net, X)
        return self

    def _task(self):
        """What the trainer needs of this estimator, as values and pure functions."""
        return training.Task(self._loss_scale(), self._stratify_validation(), self._decoder(),
                             self._predictor(), self._score_function, self._progress())

    def _warn_if_the_kept_weights_overflow(self, net, X):
        """Early stopping keeps the weights with the best validation score, which no epoch
        applied to the training rows: say so at fit if they overflow on them (unscaled data),
        rather than at the first predict."""
        _, _, overflow = net.predictions(X)
        if overflow >= 0:
            _warnings.warn(f"The weights early stopping kept (the best validation score) do "
                           f"not predict the training data: {net.overflow_error(X, overflow)}",
                           ConvergenceWarning)

    def _check_memory(self, layer_units, X, first_pass):
        """MemoryError before anything is allocated when the fit cannot have its memory."""
        need, rows = self._memory_needed(layer_units, X, first_pass)
        _memory.check(need, f"this fit (layers {layer_units}, {rows} rows a step)")

    def _memory_needed(self, layer_units, X, first_pass):
        """(bytes a fit on X allocates at least, rows a step works on): _memory.fit_bytes,
        and a new network's when the fit draws one (the model it replaces is kept until the
        fit succeeds)."""
        n = X.shape[0]
        if self.solver == "lbfgs":
            rows = n
        else:
            batch = min(200, n) if self.batch_size == "auto" else min(self.batch_size, n)
            train = n - int(self.validation_fraction * n) if self.early_stopping else n
            rows = max(1, min(batch, train))
        need = _memory.fit_bytes(layer_units, X.dtype.itemsize, solver=self.solver, rows=rows,
                                 early_stopping=self.early_stopping and self.solver != "lbfgs",
                                 refit=hasattr(self, "_net"))
        if first_pass:
            need += _memory.network_bytes(layer_units, X.dtype.itemsize)
        return need, rows

    def _initialize(self, layer_units, dtype, rng):
        out_activation = self._output_activation()
        # The draws come from `rng` in scikit-learn's order, so the same random_state gives
        # scikit-learn's starting weights.
        self._net = self._new_net(layer_units, out_activation, dtype, rng)
        self._start_training_attributes(layer_units, out_activation, overwrite=True)

    def _new_net(self, layer_units, out_activation, dtype, rng):
        return MLP(layer_units, self.activation, out_activation,
                   self._network_loss(out_activation), leaky_slope=self.leaky_slope,
                   dtype=dtype, backend=self.backend, random_state=rng,
                   n_threads=self.n_threads)

    def _start_training_attributes(self, layer_units, out_activation, overwrite):
        """scikit-learn's fitted attributes of a network no epoch has trained; overwrite=False
        keeps those already set (assigned by the user before a partial_fit, say)."""
        values = {"n_iter_": 0, "t_": 0, "n_outputs_": layer_units[-1],
                  "n_layers_": len(layer_units), "out_activation_": out_activation}
        if self.solver != "lbfgs":
            values.update(loss_curve_=[], _no_improvement_count=0)
            if self.early_stopping:
                values.update(validation_scores_=[], best_validation_score_=-np.inf,
                              best_loss_=None)
            else:
                values.update(best_loss_=np.inf, validation_scores_=None,
                              best_validation_score_=None)
        for name, value in values.items():
            if overwrite or not hasattr(self, name):
                setattr(self, name, value)
        # early stopping's best weights so far (a copy of θ: kept only where it is needed)
        self._best_theta = self._net.theta.copy() if self.early_stopping else None
        self._schedule = None

    # -- the public attributes are the model -------------------------------------------
    def _adopt_parameters(self):
        """coefs_ and intercepts_ as they are now become the network's weights, as in
        scikit-learn, whose model *is* those attributes: arrays assigned to them (or to their
        items) are copied into θ, checked first — count, shapes, dtype, finite — and the
        attributes are θ's views again. An estimator given them before any fit gets a
        network built around them."""
        coefs, intercepts = vars(self).get("coefs_"), vars(self).get("intercepts_")
        if coefs is None and intercepts is None:
            return
        if "_net" not in vars(self):
            self._net_from_attributes(coefs, intercepts)
        else:
            seen_coefs, seen_intercepts, seen_arrays = self._views
            if (coefs is seen_coefs and intercepts is seen_intercepts
                    and len(coefs) + len(intercepts) == len(seen_arrays)
                    and all(map(operator.is_, (*coefs, *intercepts), seen_arrays))):
                return  # as the last fit left them (changed in place, if at all)
            self._net.set_parameters(coefs, intercepts)
        self._sync_attributes()

    def _net_from_attributes(self, coefs, intercepts):
        """A network for an unfitted estimator whose coefs_ and intercepts_ were assigned,
        with scikit-learn's other fitted attributes defaulted where they were not."""
        if coefs is None or intercepts is None or not hasattr(coefs, "__len__"):
            raise ValueError("assign both coefs_ and intercepts_ (lists of arrays, one per "
                             "layer) to give an unfitted estimator its weights")
        shapes = [np.shape(W) for W in coefs]
        if not shapes or any(len(shape) != 2 for shape in shapes) or any(
                a[1] != b[0] for a, b in zip(shapes, shapes[1:])):
            raise ValueError(f"coefs_ must be 2-D arrays of chained shapes (n_in, n_out), "
                             f"one per layer; got shapes {shapes}")
        if hasattr(self, "classes_") and not hasattr(self, "_label_binarizer"):
            self._label_binarizer = LabelBinarizer().fit(self.classes_)
        elif not self._has_targets():
            raise ValueError("an MLPClassifier given coefs_ and intercepts_ before any fit "
                             "needs its classes: assign classes_, or call partial_fit with "
                             "classes=")
        layer_units = [shapes[0][0], *(shape[1] for shape in shapes)]
        dtype = np.asarray(coefs[0]).dtype
        dtype = dtype if dtype in (np.float32, np.float64) else np.float64
        out_activation = getattr(self, "out_activation_", None) or self._output_activation()
        self._net = self._new_net(layer_units, out_activation, dtype, rng=0)
        self._net.set_parameters(coefs, intercepts)
        self._start_training_attributes(layer_units, out_activation, overwrite=False)
        if not hasattr(self, "n_features_in_"):
            self.n_features_in_ = layer_units[0]

    def _training_state(self):
        """The trainer's starting point: this estimator's training attributes (a copy)."""
        return training.TrainingState(
            n_iter=self.n_iter_, t=self.t_, loss=getattr(self, "loss_", None),
            loss_curve=list(getattr(self, "loss_curve_", None) or []),
            best_loss=getattr(self, "best_loss_", None),
            no_improvement_count=getattr(self, "_no_improvement_count", 0),
            validation_scores=(None if getattr(self, "validation_scores_", None) is None
                               else list(self.validation_scores_)),
            best_validation_score=getattr(self, "best_validation_score_", None),
            best_theta=self._best_theta, schedule=getattr(self, "_schedule", None))

    def _apply_training_state(self, state):
        """The trainer's record of the fit, as scikit-learn's fitted attributes."""
        self.n_iter_, self.t_ = state.n_iter, state.t
        if state.loss is not None:
            self.loss_ = state.loss
        self._best_theta, self._schedule = state.best_theta, state.schedule
        if self.solver != "lbfgs":
            self.loss_curve_ = state.loss_curve
            self.best_loss_ = state.best_loss
            self._no_improvement_count = state.no_improvement_count
            self.validation_scores_ = state.validation_scores
            self.best_validation_score_ = state.best_validation_score

    def _sync_attributes(self):
        coefs, intercepts = self._net.coefs_, self._net.intercepts_  # views into θ
        self.coefs_, self.intercepts_ = coefs, intercepts
        self._views = (coefs, intercepts, (*coefs, *intercepts))  # to see an assignment
        self.backend_ = self._net.backend.name

    def _progress(self):
        from .settings import progress_bar

        return _Progress(progress_bar(self.verbose), self.max_iter, type(self).__name__)

    def _loss_scale(self):
        """scikit-learn's reported loss is the data term / this (+ the L2 term)."""
        return 1.0

    def _class_weighted(self, sample_weight, y, dtype):
        return sample_weight

    def _stratify_validation(self):
        return False

    # -- prediction ---------------------------------------------------------------------
    def _forward(self, X, labels="output_only"):
        """net.predictions(X, labels)'s output and labels, for an X checked as
        scikit-learn's validate_data checks it, with its errors and warnings. A ready
        ndarray — 2-D, of a float dtype, any layout, this model's width — gets
        validate_data's feature-names warning here and its finiteness test in the kernels,
        which report a NaN or an inf before computing anything: X then goes through
        validate_data, for its error. Anything else goes through validate_data first. An
        overflow is an OverflowError naming the layer.

        Any number of threads may predict at once. A prediction that overlaps a fit of this
        estimator in another thread raises RuntimeError rather than return a mixture of two
        models (the fit marks itself before it changes anything, and counts itself when it
        ends; the prediction reads both before and after)."""
        state = vars(self)
        fits_done = state.get("_fits_done", 0)
        self._check_not_fitting()
        try:
            net = state.get("_net")
            if net is None or not self._ready_input(X):
                return self._forward_validated(X, labels)
            self._adopt_parameters()
            net = state["_net"]
            out, found, overflow = net.predictions(X, labels)
            if overflow == -2:  # a NaN or inf in X: validate_data's warning and error for it
                return self._forward_validated(X, labels)
            if hasattr(self, "feature_names_in_"):  # validate_data's warning for an ndarray
                _warnings.warn(f"X does not have valid feature names, but "
                               f"{type(self).__name__} was fitted with feature names",
                               UserWarning, like=_warnings.SKLEARN_VALIDATION)
            if overflow >= 0:
                raise net.overflow_error(X, overflow)
            return out, found
        finally:  # also after an error: one of a model changing under us is this one
            self._check_not_fitting(fits_done)

    def _check_not_fitting(self, fits_done=None):
        """RuntimeError if a fit of this estimator runs, or (given the count read when a
        prediction began) ran since."""
        state = vars(self)
        if state.get("_fitting") or fits_done is not None and state.get(
                "_fits_done", 0) != fits_done:
            raise RuntimeError(f"this {type(self).__name__} was being fitted in another thread "
                               "while it predicted; predict after the fit returns")

    def _ready_input(self, X):
        """True if validate_data would pass X through as it is but for its dtype and layout
        (and its feature-names warning), unless it holds a NaN or an inf (the kernels test
        that)."""
        return (type(X) is np.ndarray and X.ndim == 2 and X.dtype in _READY_DTYPES
                and X.shape[0] > 0 and X.shape[1] == self.n_features_in_)

    def _ready_training_input(self, X, y):
        """(X, Y, y) for a partial_fit on ready arrays, without validate_data: what it would
        return for them. None for anything else — lists, frames, sparse, another dtype than
        the network's, a model fitted with feature names, a NaN or inf, a new class — which
        the full validation then checks, with scikit-learn's errors and warnings."""
        net = vars(self).get("_net")
        if (net is None or not self._ready_input(X) or X.dtype != net.dtype
                or type(y) is not np.ndarray or y.shape[:1] != X.shape[:1]
                or hasattr(self, "feature_names_in_")):
            return None
        with np.errstate(over="ignore", invalid="ignore"):
            if not np.isfinite(X.sum()):  # finite sum: every value finite (sklearn's test)
                return None
        Y = self._ready_targets(y, X.dtype)
        return None if Y is None else (X, Y, y)

    def _forward_validated(self, X, labels):
        check_is_fitted(self)
        self._adopt_parameters()
        with np.errstate(invalid="ignore", over="ignore"):  # as scikit-learn's MLP checks it
            X = validate_data(self, X, accept_sparse=["csr", "csc"], reset=False)
        net = self._net
        X = _network_input(X, net.dtype)
        out, found, overflow = net.predictions(X, labels)
        if overflow >= 0:
            raise net.overflow_error(X, overflow)
        return out, found

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.sparse = True
        return tags

    def __getstate__(self):
        self._adopt_parameters()
        state = dict(super().__getstate__())  # (may be the live __dict__ itself)
        if "_net" in state:  # views into θ, which _net holds: made again when unpickled
            for name in ("coefs_", "intercepts_", "_views"):
                state.pop(name, None)
        state.pop("_fitting", None)  # a copy is not being fitted, whatever this one does
        state.pop("_validated_params", None)  # identities: meaningless in another process
        state.pop("_params", None)
        return state

    def __setstate__(self, state):
        super().__setstate__(state)
        if "_net" in state:  # views into the restored parameter vector, not stale copies
            self._sync_attributes()


def _classes_of(binarizer, out):
    """The classes an output layer's activations predict (scikit-learn's decisions): also
    the labels of encoded targets."""
    return binarizer.inverse_transform(out.ravel() if out.shape[1] == 1 else out)


def _values_of(out):
    """A regressor's predictions of its output layer (or its encoded targets)."""
    return out.ravel() if out.shape[1] == 1 else out


def _network_input(X, dtype):
    """Validated X as the network takes it: C-contiguous in its dtype, or (sparse) CSR in its
    dtype (_checks.sparse_input) — never densified."""
    if is_sparse(X):
        return sparse_input(X, "X", X.shape[1], dtype)
    return np.ascontiguousarray(X, dtype=dtype)


def _binarized(binarizer, y, dtype, known_only=False):
    """binarizer.transform(y) as `dtype`. Binary and multiclass labels (the usual cases) are
    encoded here directly: LabelBinarizer builds a sparse matrix first, a measurable share of
    a short fit (`python -m bench.label_encoding`). known_only: None unless every label is a
    known class of this kind (a partial_fit's ready targets)."""
    classes = binarizer.classes_
    if (binarizer.y_type_ in ("binary", "multiclass") and y.ndim == 1
            and y.dtype.kind in "biuf" and classes.dtype.kind in "biuf"):
        index = np.searchsorted(classes, y)
        np.minimum(index, len(classes) - 1, out=index)
        if np.array_equal(classes[index], y):  # every label is a known class
            if binarizer.y_type_ == "binary":
                return index.astype(dtype).reshape(-1, 1)
            Y = np.zeros((y.shape[0], len(classes)), dtype)
            Y[np.arange(y.shape[0]), index] = 1
            return Y
    if known_only:
        return None
    return binarizer.transform(y).astype(dtype)


class FitData(NamedTuple):
    """What a fit's data source tells the estimator after validating and encoding it."""
    n_rows: int
    n_features: int
    n_outputs: int
    dtype: np.dtype


class _InMemory:
    """A fit's data in this process: validated as scikit-learn's MLP validates it (a
    partial_fit's ready arrays through the fast path), encoded, weighted by class_weight,
    handed to the trainer as the network reads it (C-contiguous or CSR, its dtype).
    fastmlp.distributed has the Dask counterpart; both are what _BaseMLP._train asks of a
    source: prepare, check_memory, network, finish."""

    def __init__(self, estimator, X, y, sample_weight):
        self.estimator, self.X, self.y, self.sample_weight = estimator, X, y, sample_weight

    def prepare(self, first_pass, incremental):
        est, X, y, sample_weight = self.estimator, self.X, self.y, self.sample_weight
        ready = None
        if incremental and not first_pass and sample_weight is None:
            ready = est._ready_training_input(X, y)
        if ready is not None:
            X, Y, y = ready
        else:
            with np.errstate(invalid="ignore", over="ignore"):  # sklearn's inf-inf sum test
                X, Y, y = est._validate_input(X, y, incremental, reset=first_pass)
        if sample_weight is not None:
            sample_weight = _check_sample_weight(sample_weight, X, dtype=X.dtype)
            if not np.any(sample_weight):  # scikit-learn >= 1.7's check, for every version
                raise ValueError("Sample weights must contain at least one non-zero number.")
        sample_weight = est._class_weighted(sample_weight, y, X.dtype)
        if sample_weight is not None and not np.sum(sample_weight, dtype=np.float64) > 0:
            raise ValueError(training.ZERO_WEIGHTS)
        self.X, self.Y, self.sample_weight = X, Y, sample_weight
        return FitData(X.shape[0], X.shape[1], Y.shape[1], X.dtype)

    def check_memory(self, layer_units, first_pass):
        self.estimator._check_memory(layer_units, self.X, first_pass)

    def network(self, net):
        """(the trainer's Network, X, Y, sample_weight as it reads them)."""
        sample_weight = self.sample_weight
        if sample_weight is not None:
            sample_weight = np.ascontiguousarray(sample_weight, dtype=net.dtype)
        return (net, _network_input(self.X, net.dtype),
                np.ascontiguousarray(self.Y, dtype=net.dtype), sample_weight)

    def finish(self, net, incremental):
        if not incremental:  # partial_fit calls come in a row: they keep their workspace
            net.release_workspace()


def fit_from(estimator, source):
    """Fit `estimator` on a data source other than arrays in this process (Dask's): the
    estimator's own fit — parameters, encoding, network, trainer, fitted attributes, a
    failed refit undone — around the source's data (_InMemory says what a source does)."""
    return estimator._fit_from(source, incremental=False)


def target_encoder(estimator, labels, first_pass):
    """For a source that encodes its targets itself, block by block: a classifier's label
    encoding fitted on `labels` (every class, or a sample holding each class), checked
    against the classes of the fit before on a warm start; returns (encode, width), encode
    mapping a block of labels to its encoded targets in a dtype. A regressor's targets are
    their own encoding: None."""
    if not isinstance(estimator, MLPClassifier):
        return None
    labels = np.asarray(labels)
    if first_pass or not hasattr(estimator, "classes_"):
        binarizer = LabelBinarizer().fit(labels)
        estimator._label_binarizer, estimator.classes_ = binarizer, binarizer.classes_
    elif set(unique_labels(labels)) != set(estimator.classes_):
        raise ValueError("warm_start can only be used where `y` has the same classes as in the "
                         f"previous call to fit. Previously got {estimator.classes_}, `y` has "
                         f"{unique_labels(labels)}")
    binarizer = estimator._label_binarizer
    width = 1 if binarizer.y_type_ == "binary" else len(binarizer.classes_)
    return functools.partial(_binarized, binarizer), width


def network_of(estimator):
    """A fitted estimator's network (fastmlp.model.MLP): its coefs_ and intercepts_, as
    assigned, are the model (copied into θ and checked first)."""
    check_is_fitted(estimator)
    estimator._adopt_parameters()
    return estimator._net


def file_state(estimator):
    """What fastmlp.save writes of a fitted estimator besides its parameters and public
    attributes: (its network, the type of its label encoding — "binary", "multiclass",
    "multilabel-indicator" — or None for a regressor)."""
    binarizer = vars(estimator).get("_label_binarizer")
    return network_of(estimator), getattr(binarizer, "y_type_", None)


def from_file_state(Estimator, params, attributes, layer_sizes, theta, label_type):
    """The estimator fastmlp.load rebuilds from a file's parts, which it checked among
    themselves: the parameters, every fitted attribute (classes_ among them), the layer
    sizes, θ in the network's dtype and the label encoding's type. TypeError or ValueError
    when the parameters disagree with the rest (the file then is inconsistent)."""
    est = Estimator(**params)
    checked_params(est)
    expected = [attributes["n_features_in_"], *est._hidden_sizes(), attributes["n_outputs_"]]
    if list(layer_sizes) != expected:
        raise ValueError(f"layer_sizes {list(layer_sizes)}, but n_features_in_, "
                         f"hidden_layer_sizes and n_outputs_ make {expected}")
    if isinstance(est, MLPRegressor) and attributes["out_activation_"] != est._output_activation():
        raise ValueError(f"out_activation_ is {attributes['out_activation_']!r}, but "
                         f"loss={est.loss!r} needs {est._output_activation()!r}")
    for name, value in attributes.items():
        setattr(est, name, value)
    net = MLP(layer_sizes, est.activation, est.out_activation_,
              est._network_loss(est.out_activation_), leaky_slope=est.leaky_slope,
              dtype=theta.dtype, backend=est.backend, n_threads=est.n_threads)
    net.theta[...] = theta
    est._net = net
    est._best_theta = net.theta.copy() if est.early_stopping else None
    if "classes_" in attributes:
        binarizer = LabelBinarizer()
        if label_type == "multilabel-indicator":
            binarizer.fit(np.eye(len(est.classes_), dtype=int))
        else:
            binarizer.fit(est.classes_)
        est._label_binarizer = binarizer
    est._sync_attributes()
    return est


def checked_params(estimator):
    """The estimator's parameters, validated as its fit validates them (InvalidParameterError
    or ValueError, scikit-learn's wording): a get_params() dict."""
    params = estimator._check_params()
    estimator._hidden_sizes()
    return params


class MLPClassifier(ClassifierMixin, _BaseMLP):
    __doc__ = """Multi-layer perceptron classifier, scikit-learn's API, trained by a compiled backend.

    Binary and multilabel problems use a logistic output with binary cross-entropy,
    multiclass a softmax output with cross-entropy. The parameters, attributes and
    training trajectory are scikit-learn's MLPClassifier's; `class_weight`, `leaky_slope`,
    `backend` and `n_threads` are fastmlp's own.

    Parameters
    ----------
""" + _PARAMETERS + """    class_weight : dict, "balanced" or None, default=None
        Weights per class, multiplied into `sample_weight`.
""" + _OWN_PARAMETERS + """
    Attributes
    ----------
    classes_ : ndarray of shape (n_classes,)
        The class labels.
""" + _ATTRIBUTES

    _loss = "log_loss"
    _score_function = staticmethod(accuracy_score)

    _parameter_constraints: dict = {
        **_BaseMLP._parameter_constraints,
        "class_weight": [dict, StrOptions({"balanced"}), None],
    }

    def __init__(self, hidden_layer_sizes=(100,), activation="relu", *, solver="adam",
                 alpha=0.0001, batch_size="auto", learning_rate="constant",
                 learning_rate_init=0.001, power_t=0.5, max_iter=200, shuffle=True,
                 random_state=None, tol=1e-4, verbose=False, warm_start=False, momentum=0.9,
                 nesterovs_momentum=True, early_stopping=False, validation_fraction=0.1,
                 beta_1=0.9, beta_2=0.999, epsilon=1e-8, n_iter_no_change=10, max_fun=15000,
                 class_weight=None, leaky_slope=0.01, weight_decay=0.0, backend="auto",
                 n_threads=None):
        super().__init__(
            hidden_layer_sizes, activation, solver=solver, alpha=alpha, batch_size=batch_size,
            learning_rate=learning_rate, learning_rate_init=learning_rate_init,
            power_t=power_t, max_iter=max_iter, shuffle=shuffle, random_state=random_state,
            tol=tol, verbose=verbose, warm_start=warm_start, momentum=momentum,
            nesterovs_momentum=nesterovs_momentum, early_stopping=early_stopping,
            validation_fraction=validation_fraction, beta_1=beta_1, beta_2=beta_2,
            epsilon=epsilon, n_iter_no_change=n_iter_no_change, max_fun=max_fun,
            leaky_slope=leaky_slope, weight_decay=weight_decay, backend=backend,
            n_threads=n_threads)
        self.class_weight = class_weight

    def _validate_input(self, X, y, incremental, reset):
        X, y = validate_data(self, X, y, multi_output=True, dtype=(np.float64, np.float32),
                             accept_sparse="csr",
                             reset=reset)
        if y.ndim == 2 and y.shape[1] == 1:
            y = column_or_1d(y, warn=True)
        if not hasattr(self, "classes_") or (not self.warm_start and not incremental):
            self._label_binarizer = LabelBinarizer()
            self._label_binarizer.fit(y)
            self.classes_ = self._label_binarizer.classes_
        else:
            classes = unique_labels(y)
            if self.warm_start:
                if set(classes) != set(self.classes_):
                    raise ValueError(
                        "warm_start can only be used where `y` has the same classes as in "
                        f"the previous call to fit. Previously got {self.classes_}, `y` has "
                        f"{classes}")
            elif len(np.setdiff1d(classes, self.classes_, assume_unique=True)):
                raise ValueError(f"`y` has classes not in `self.classes_`. `self.classes_` "
                                 f"has {self.classes_}. 'y' has {classes}.")
        return X, _binarized(self._label_binarizer, y, X.dtype), y

    def _ready_targets(self, y, dtype):
        """One-hot targets of 1-D numeric labels that are all known classes, else None."""
        binarizer = vars(self).get("_label_binarizer")
        if (y.ndim != 1 or binarizer is None or y.dtype.kind not in "biuf"
                or binarizer.y_type_ not in ("binary", "multiclass")):
            return None
        Y = _binarized(binarizer, y, dtype, known_only=True)
        return Y

    def _output_activation(self):
        return "softmax" if self._label_binarizer.y_type_ == "multiclass" else "logistic"

    def _network_loss(self, out_activation):
        return "cross_entropy" if out_activation == "softmax" else "binary_cross_entropy"

    def _has_targets(self):
        return hasattr(self, "_label_binarizer")

    def _stratify_validation(self):
        return self.n_outputs_ == 1  # as scikit-learn: binary only, not multiclass/multilabel

    def _class_weighted(self, sample_weight, y, dtype):
        if self.class_weight is None:
            return sample_weight
        weights = compute_sample_weight(self.class_weight, y).astype(dtype)
        return weights if sample_weight is None else sample_weight * weights

    def _decoder(self):
        return self._label_binarizer.inverse_transform

    def _predictor(self):
        return functools.partial(_classes_of, self._label_binarizer)

    def _predict_from_output(self, out):
        return _classes_of(self._label_binarizer, out)

    def _label_kind(self):
        """How predict derives classes from the output in the kernels, as scikit-learn's
        LabelBinarizer does: the first largest probability, or one above one half."""
        y_type = getattr(vars(self).get("_label_binarizer"), "y_type_", None)  # None: unfitted
        if y_type == "multiclass":
            return "argmax"
        return "threshold" if y_type == "binary" else "output_only"

    @available_if(_is_stochastic)
    def partial_fit(self, X: ArrayLike, y: ArrayLike, sample_weight: ArrayLike | None = None,
                    classes: ArrayLike | None = None) -> MLPClassifier:
        """Update the model with one epoch over (X, y) (sgd and adam; lbfgs has none).

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
            The input data.
        y : array-like of shape (n_samples,) or (n_samples, n_classes)
            The class labels.
        sample_weight : array-like of shape (n_samples,), default=None
            Weights of the rows in the loss.
        classes : array-like of shape (n_classes,), default=None
            Every class of the problem; required on the first call, ignored after.

        Returns
        -------
        self : object
            The updated estimator.
        """
        if _check_partial_fit_first_call(self, classes):
            self._label_binarizer = LabelBinarizer()
            self._label_binarizer.fit(y if type_of_target(y).startswith("multilabel")
                                      else classes)
        return self._fit(X, y, sample_weight, incremental=True)

    def predict(self, X: ArrayLike) -> np.ndarray:
        """Predict the classes of X.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
            The input data.

        Returns
        -------
        y : ndarray of shape (n_samples,) or (n_samples, n_classes)
            The predicted classes (a label indicator matrix for multilabel problems).
        """
        kind, classes = self._label_kind(), vars(self).get("classes_")  # the model predicting
        out, found = self._forward(X, kind)
        if kind == "output_only":  # multilabel: scikit-learn's decision, an indicator matrix
            return self._predict_from_output(out)
        return classes.take(found)

    def predict_proba(self, X: ArrayLike) -> np.ndarray:
        """Predict the probability of each class.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
            The input data.

        Returns
        -------
        proba : ndarray of shape (n_samples, n_classes)
            The probabilities, columns in the order of `classes_`.
        """
        out, _ = self._forward(X)
        if self.n_outputs_ == 1:
            p = out.ravel()
            return np.vstack([1 - p, p]).T
        return out

    def predict_log_proba(self, X: ArrayLike) -> np.ndarray:
        """Predict the logarithm of each class's probability.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
            The input data.

        Returns
        -------
        log_proba : ndarray of shape (n_samples, n_classes)
            The log-probabilities, columns in the order of `classes_`.
        """
        p = self.predict_proba(X)
        with np.errstate(divide="ignore"):
            return np.log(p, out=p)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.classifier_tags.multi_label = True
        return tags


class MLPRegressor(RegressorMixin, _BaseMLP):
    __doc__ = """Multi-layer perceptron regressor, scikit-learn's API, trained by a compiled backend.

    The parameters, attributes and training trajectory are scikit-learn's MLPRegressor's;
    `leaky_slope`, `backend` and `n_threads` are fastmlp's own.

    Parameters
    ----------
    loss : {"squared_error", "poisson"}, default="squared_error"
        Squared error with an identity output, or half the Poisson deviance with an exp
        output (a log link; y >= 0).
""" + _PARAMETERS + _OWN_PARAMETERS + """
    Attributes
    ----------
""" + _ATTRIBUTES

    _loss = "squared_error"
    _score_function = staticmethod(r2_score)

    def __init__(self, loss="squared_error", hidden_layer_sizes=(100,), activation="relu", *,
                 solver="adam", alpha=0.0001, batch_size="auto", learning_rate="constant",
                 learning_rate_init=0.001, power_t=0.5, max_iter=200, shuffle=True,
                 random_state=None, tol=1e-4, verbose=False, warm_start=False, momentum=0.9,
                 nesterovs_momentum=True, early_stopping=False, validation_fraction=0.1,
                 beta_1=0.9, beta_2=0.999, epsilon=1e-8, n_iter_no_change=10, max_fun=15000,
                 leaky_slope=0.01, weight_decay=0.0, backend="auto", n_threads=None):
        super().__init__(
            hidden_layer_sizes, activation, solver=solver, alpha=alpha, batch_size=batch_size,
            learning_rate=learning_rate, learning_rate_init=learning_rate_init,
            power_t=power_t, max_iter=max_iter, shuffle=shuffle, random_state=random_state,
            tol=tol, verbose=verbose, warm_start=warm_start, momentum=momentum,
            nesterovs_momentum=nesterovs_momentum, early_stopping=early_stopping,
            validation_fraction=validation_fraction, beta_1=beta_1, beta_2=beta_2,
            epsilon=epsilon, n_iter_no_change=n_iter_no_change, max_fun=max_fun,
            leaky_slope=leaky_slope, weight_decay=weight_decay, backend=backend,
            n_threads=n_threads)
        self.loss = loss

    _parameter_constraints: dict = {
        **_BaseMLP._parameter_constraints,
        "loss": [StrOptions({"squared_error", "poisson"})],
    }

    def _validate_input(self, X, y, incremental, reset):
        X, y = validate_data(self, X, y, multi_output=True, y_numeric=True, accept_sparse="csr",
                             dtype=(np.float64, np.float32), reset=reset)
        if y.ndim == 2 and y.shape[1] == 1:
            y = column_or_1d(y, warn=True)
        if self.loss == "poisson" and np.any(y < 0):  # scikit-learn's GLMs' wording
            raise ValueError("Some value(s) of y are out of the valid range of the loss "
                             "'HalfPoissonLoss'.")
        Y = y.reshape(-1, 1) if y.ndim == 1 else y
        return X, Y.astype(X.dtype), y

    def _ready_targets(self, y, dtype):
        """Finite float targets of the model's width (non-negative for Poisson), else None."""
        n_outputs = getattr(self, "n_outputs_", None)
        if (y.dtype.kind != "f" or not (y.ndim == 1 and n_outputs == 1
                                        or y.ndim == 2 and y.shape[1] == n_outputs != 1)):
            return None
        with np.errstate(over="ignore", invalid="ignore"):
            if not np.isfinite(y.sum()) or self.loss == "poisson" and y.min() < 0:
                return None
        return np.ascontiguousarray(y.reshape(y.shape[0], -1), dtype=dtype)

    def _output_activation(self):
        return "exp" if self.loss == "poisson" else "identity"  # poisson: a log link

    def _network_loss(self, out_activation):
        return "poisson" if out_activation == "exp" else "squared_error"

    def _has_targets(self):
        return True

    def _loss_scale(self):
        # scikit-learn reports ½ · mean over samples *and outputs* of the squared error
        # (the Poisson deviance: summed over outputs).
        return float(self.n_outputs_) if self.loss == "squared_error" else 1.0

    def _decoder(self):
        return _values_of

    def _predictor(self):
        return _values_of

    def _predict_from_output(self, out):
        return _values_of(out)

    @available_if(_is_stochastic)
    def partial_fit(self, X: ArrayLike, y: ArrayLike,
                    sample_weight: ArrayLike | None = None) -> MLPRegressor:
        """Update the model with one epoch over (X, y) (sgd and adam; lbfgs has none).

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
            The input data.
        y : array-like of shape (n_samples,) or (n_samples, n_outputs)
            The targets.
        sample_weight : array-like of shape (n_samples,), default=None
            Weights of the rows in the loss.

        Returns
        -------
        self : object
            The updated estimator.
        """
        return self._fit(X, y, sample_weight, incremental=True)

    def predict(self, X: ArrayLike) -> np.ndarray:
        """Predict the targets of X.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
            The input data.

        Returns
        -------
        y : ndarray of shape (n_samples,) or (n_samples, n_outputs)
            The predicted values.
        """
        return self._predict_from_output(self._forward(X)[0])
