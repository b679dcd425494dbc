"""The trainer: one owner per fit, from the hyperparameters to the fitted state (`Trainer`).

These follow scikit-learn's MLP solvers step for step — same random draws, learning-rate
schedules, stopping rules and warnings — so a fit with the same starting weights follows
scikit-learn's trajectory. The epochs run compiled, as many per backend call as fit in
about CALL_SECONDS (measured as the fit runs; at most MAX_CHUNK_EPOCHS, the stopping rule
inside the call), so the progress bar, verbose lines and signals see every epoch at a human
pace; Python runs between calls, or once per epoch where a validation score is needed
(early stopping).

Ctrl-C (fastmlp.interrupts) ends a backend call after the minibatch under way and undoes
that epoch; the trainer records the epochs that completed, so the weights, the optimizer's
moments and every fitted attribute describe the last completed epoch, and a warm-start fit
continues from exactly there.

A `Trainer` reads the estimator's hyperparameters (a `get_params()` dict) and a `Task` (what
differs between classifier and regressor, as pure functions: it never calls back into the
estimator), builds the optimizer, learning-rate schedule and stopping rule, drives a
`Network` — fastmlp.model.MLP in one process, distributed._DistributedNet on Dask — and
records what the fit did in a `TrainingState`, which the estimator applies to its fitted
attributes, also when the fit ends in an error.
"""
import copy
import dataclasses
import functools
import numbers
import time
from typing import Callable, NamedTuple, Optional, Protocol

import numpy as np
import scipy.optimize
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import train_test_split

from . import _warnings, interrupts, optim
from .model import DivergenceError
from .stopping import Plateau


class Network(Protocol):
    """What the trainer drives: fastmlp.model.MLP, or distributed._DistributedNet on Dask.

    Both are tested against this contract (tests/test_network_contract.py)."""

    arch: object          # the Architecture
    dtype: np.dtype
    theta: np.ndarray     # the flat parameter vector, updated in place

    def reset_optimizer(self) -> None:
        """Forget the optimizer's moments (a new fit starts a new optimizer)."""

    def training_job(self, X, Y, sample_weight, batch_size, opt):
        """The fit's epochs on checked data, prepared once: an object whose
        run(orders, learning_rates, plateau=None, stop=None, time_budget=inf) trains epoch
        e at learning_rates[e] with its rows in orders[e] (one row: every epoch; None: rows
        in order), `plateau` (a stopping.Plateau) updated after each, no epoch started after
        time_budget seconds, and returns (terms, event): terms (k, 2), each completed
        epoch's (mean data loss, mean L2 penalty); event "completed", "plateau", "diverged"
        — an epoch made the loss or θ non-finite — or "interrupted" — the stop flag
        (int64[1]) was raised during an epoch; either epoch was undone: θ, the moments and
        t are as after the last completed epoch."""

    def loss_and_gradient(self, X, Y, sample_weight, grad) -> float:
        """Summed loss over checked rows; the summed gradient written into grad."""

    def output(self, X) -> np.ndarray:
        """Output activations of checked rows (early stopping scores them)."""


class Task(NamedTuple):
    """What the trainer needs of the estimator beyond its hyperparameters: values and pure
    functions of the problem (the estimator's label encoding, its score), no estimator."""
    loss_scale: float               # the reported loss is data term / this + L2 term
    stratify: bool                  # stratify the early-stopping validation split
    decode: Callable                # encoded targets -> labels (the validation set's)
    predict: Callable               # the network's outputs -> predictions (labels, values)
    score: Callable                 # score(y, predictions, sample_weight=) -> float
    progress: object                # .update(loss) per epoch, .close()


@dataclasses.dataclass
class TrainingState:
    """scikit-learn's fitted training attributes, owned by the trainer during a fit."""
    n_iter: int = 0
    t: int = 0
    loss: Optional[float] = None
    loss_curve: Optional[list] = None
    best_loss: Optional[float] = None
    no_improvement_count: int = 0
    validation_scores: Optional[list] = None
    best_validation_score: Optional[float] = None
    best_theta: Optional[np.ndarray] = None
    schedule: Optional["LearningRate"] = None

try:
    from ._shuffle import shuffled_orders
except ImportError:  # extensions not built: the same draws, in Python
    shuffled_orders = None


class LearningRate:
    """scikit-learn's SGD learning-rate schedule (constant / invscaling / adaptive)."""

    def __init__(self, init, schedule, power_t):
        self.init, self.schedule, self.power_t = float(init), schedule, power_t
        self.value = float(init)

    def epoch_ends(self, samples_seen):
        if self.schedule == "invscaling":
            self.value = self.init / (samples_seen + 1) ** self.power_t

    def upcoming(self, n_epochs, samples_seen, n_samples):
        """The rates of the next n_epochs epochs of n_samples each (state unchanged)."""
        rates, schedule = [], copy.copy(self)
        for _ in range(n_epochs):
            rates.append(schedule.value)
            samples_seen += n_samples
            schedule.epoch_ends(samples_seen)
        return rates

    def on_plateau(self, msg, say):
        """True when training should stop; 'adaptive' divides the rate by 5 instead. `say`
        prints a line (None: silent)."""
        say = say or (lambda line: None)
        if self.schedule != "adaptive":
            say(msg + " Stopping.")
            return True
        if self.value <= 1e-6:
            say(msg + " Learning rate too small. Stopping.")
            return True
        self.value /= 5.0
        say(msg + " Setting learning rate to %f" % self.value)
        return False


def _shuffled(sample_idx, rng):
    """What sklearn.utils.shuffle(sample_idx, random_state=rng) returns — the same draws, the
    same permutation — without its parameter validation (run once per epoch here)."""
    permutation = np.arange(sample_idx.shape[0])
    rng.shuffle(permutation)
    return sample_idx[permutation]


@functools.lru_cache(maxsize=16)
def _fresh_permutation(seed, n):
    """The permutation of n rows a fresh RandomState(seed) draws first: what each partial_fit
    call of scikit-learn's draws (it seeds a new generator every call), remembered — making
    the generator costs more than a small call's epoch."""
    permutation = np.arange(n)
    np.random.RandomState(seed).shuffle(permutation)
    permutation.flags.writeable = False
    return permutation


#: Below this many row positions drawn in a call, numpy's shuffle is cheaper than reading and
#: writing the generator's state for the native draws.
NATIVE_DRAWS = 4096


def _draw_orders(sample_idx, rng, n_epochs):
    """n_epochs successive _shuffled(sample_idx, rng), as rows of an (n_epochs, n) array:
    natively (fastmlp._shuffle, the same draws) when the extension is built and the draws
    are many. rng may be an int: the seed of a fresh RandomState no one else draws from (a
    partial_fit's). Fewer than two rows draw nothing (rng may then be None)."""
    orders = np.empty((n_epochs, sample_idx.shape[0]), np.int64)
    if sample_idx.shape[0] < 2:  # Fisher-Yates swaps nothing: no draws, as numpy's shuffle
        orders[:] = sample_idx
        return orders
    if isinstance(rng, numbers.Integral):  # the seed of a fresh RandomState (a partial_fit's)
        if n_epochs == 1 and sample_idx.shape[0] <= NATIVE_DRAWS:
            orders[0] = sample_idx[_fresh_permutation(int(rng), sample_idx.shape[0])]
            return orders
        rng = np.random.RandomState(rng)
    if (shuffled_orders is not None and type(rng) is np.random.RandomState
            and n_epochs * sample_idx.shape[0] >= NATIVE_DRAWS):
        shuffled_orders(rng, np.ascontiguousarray(sample_idx, dtype=np.int64), orders)
        return orders
    for e in range(n_epochs):
        sample_idx = orders[e] = _shuffled(sample_idx, rng)
    return orders


#: A fit whose sample weights are all zero has nothing to learn from (scikit-learn divides by
#: their sum: ZeroDivisionError). One minibatch whose weights are all zero makes no step.
ZERO_WEIGHTS = ("sample_weight sums to zero or less (after class_weight): the mean loss "
                "would have no minimum to fit; give the samples a positive total weight")


#: scikit-learn's wording (its tests match on it), then what happened and what was kept.
NON_FINITE = ("Solver produced non-finite parameter weights. The input data may contain large "
              "values and need to be preprocessed.")


def diverged_error(epoch):
    return DivergenceError(
        f"{NON_FINITE} Training diverged at epoch {epoch}: the loss or the weights became NaN "
        "or inf. An estimator fitted before keeps the model it had; a first fit keeps the "
        "weights after the last finite epoch. Lower the learning rate or scale the input data."
    )


def validation_score(task, net, X, y, sample_weight):
    """The early-stopping score (accuracy or R²) of the network on checked rows; NaN when
    its outputs are not finite."""
    pred = task.predict(net.output(X))
    if np.issubdtype(np.asarray(pred).dtype, np.floating) and not np.isfinite(pred).all():
        return np.nan
    return task.score(y, pred, sample_weight=sample_weight)


class Trainer:
    """One fit's owner. From the hyperparameters (a `get_params()` dict) and the Task it
    builds the optimizer, the learning-rate schedule and the stopping rule, runs
    scikit-learn's sgd/adam loop (epochs inside the backend's calls, sized by time) or
    L-BFGS on a Network, and records what the fit did in a TrainingState — as it goes, so
    a fit that raises leaves the state of its last completed epoch."""

    def __init__(self, params, task):
        self.params, self.task = params, task

    def fit(self, net, X, Y, sample_weight, rng, incremental, state):
        """Train `net` on checked X, Y, sample_weight (rows the network reads; a Dask
        network reads its shards' and takes row-count stand-ins), from `state` (updated in
        place, and returned). rng: the fit's RandomState, or an int seed / None where
        _draw_orders allows one (a partial_fit's). incremental: one partial_fit epoch."""
        if self.params["solver"] == "lbfgs":
            _fit_lbfgs(self.params, self.task, state, net, X, Y, sample_weight)
        else:
            _fit_stochastic(self.params, self.task, state, net, X, Y, sample_weight, rng,
                            incremental)
        return state


def _fit_stochastic(params, task, state, net, X, Y, sample_weight, rng, incremental):
    """sgd/adam: scikit-learn's _fit_stochastic with the epochs inside the backend's calls.
    Updates `state` as the epochs run."""
    early_stopping = params["early_stopping"]
    if early_stopping and incremental:
        raise ValueError("partial_fit does not support early_stopping=True")
    if early_stopping:
        stratify = Y.astype(bool) if task.stratify else None  # scikit-learn's labels
        arrays = (X, Y) if sample_weight is None else (X, Y, sample_weight)
        parts = train_test_split(*arrays, random_state=rng,
                                 test_size=params["validation_fraction"], stratify=stratify)
        X_train, X_val, Y_train, Y_val = parts[:4]
        sw_train, sw_val = (parts[4], parts[5]) if sample_weight is not None else (None, None)
        if X_val.shape[0] < 2:
            raise ValueError("The validation set is too small. Increase 'validation_fraction' "
                             "or the size of your dataset.")
        validation = (X_val, task.decode(Y_val), sw_val)
    else:
        X_train, Y_train, sw_train = X, Y, sample_weight
        validation = None

    n_samples = X_train.shape[0]
    if params["batch_size"] == "auto":
        batch_size = min(200, n_samples)
    else:
        if params["batch_size"] > n_samples:
            _warnings.warn("Got `batch_size` less than 1 or larger than sample size. It is "
                           "going to be clipped")
        batch_size = int(np.clip(params["batch_size"], 1, n_samples))

    if not incremental or state.schedule is None:
        state.schedule = LearningRate(params["learning_rate_init"], params["learning_rate"],
                                      params["power_t"])
    opt = optim.Optimizer.from_params(params)
    state.n_iter = 0  # scikit-learn counts the epochs of this call (a warm start too)
    if early_stopping and (state.best_theta is None or state.best_validation_score is None):
        # the best weights are kept only where early stopping needs them (a warm start may
        # turn it on): a copy of θ is as big as the network
        state.best_theta = net.theta.copy()
        state.best_validation_score = -np.inf
        state.validation_scores = state.validation_scores or []
    try:
        with interrupts.deferred() as stop:
            epochs = _Epochs(params, task, state, net, X_train, Y_train, sw_train, batch_size,
                             opt, stop)
            if early_stopping or incremental:
                epochs.one_by_one(rng, incremental, validation)
            else:
                epochs.in_chunks(rng)
    except KeyboardInterrupt:  # the state describes the last completed epoch
        _warnings.warn("Training interrupted by user.")
    finally:
        task.progress.close()
    if early_stopping:
        net.theta[...] = state.best_theta


#: A chunked fit's backend calls are sized to about CALL_SECONDS of work each, from the
#: pace measured so far; a call also ends after the epoch that passes CALL_BUDGET (a slower
#: machine than the last call saw). At most MAX_CHUNK_EPOCHS epochs per call, and their row
#: orders (int64) at most ~8 MB.
CALL_SECONDS = 0.15
CALL_BUDGET = 0.25
MAX_CHUNK_EPOCHS = 64
CHUNK_ORDER_ELEMENTS = 1 << 20


def _patience(params):
    """n_iter_no_change as the kernels' int64 (np.inf: a count no fit reaches)."""
    return int(min(params["n_iter_no_change"], 1 << 62))


class _Epochs:
    """The stochastic loop of one fit: the network, its data and the state it updates."""

    def __init__(self, params, task, state, net, X, Y, sample_weight, batch_size, opt, stop):
        self.params, self.task, self.state, self.net = params, task, state, net
        self.X, self.Y, self.sample_weight = X, Y, sample_weight
        self.batch_size, self.opt, self.stop = batch_size, opt, stop
        self.job = net.training_job(X, Y, sample_weight, batch_size, opt)  # once per fit
        self.seconds_per_epoch = None  # measured by the calls so far

    def _rates(self, k):
        if self.params["solver"] == "sgd":
            return self.state.schedule.upcoming(k, self.state.t, self.X.shape[0])
        return [self.params["learning_rate_init"]] * k

    def _run(self, orders, rates, plateau=None, time_budget=float("inf")):
        started = time.perf_counter()
        terms, event = self.job.run(orders, rates, plateau, stop=self.stop.flag,
                                    time_budget=time_budget)
        if len(terms):
            self.seconds_per_epoch = (time.perf_counter() - started) / len(terms)
        return terms, event

    def _epochs_per_call(self):
        """As many epochs as take about CALL_SECONDS at the pace of the last call (one when
        nothing is measured yet)."""
        if self.seconds_per_epoch is None:
            return 1
        return max(1, int(CALL_SECONDS / max(self.seconds_per_epoch, 1e-9)))

    def _say(self):
        """How verbose lines are printed (beside the progress bar), or None when quiet."""
        return self.task.progress.write if self.params["verbose"] else None

    def one_by_one(self, rng, incremental, validation):
        """One backend call per epoch, Python's stopping checks after each: for early
        stopping (a validation score per epoch) and partial_fit (one epoch)."""
        params, state = self.params, self.state
        sample_idx = np.arange(self.X.shape[0])
        for _ in range(params["max_iter"]):
            if params["shuffle"]:
                sample_idx = _draw_orders(sample_idx, rng, 1)[0]
            terms, event = self._run(sample_idx if params["shuffle"] else None, self._rates(1))
            if event == "interrupted":  # the net undid the epoch under way
                self.stop.check()
            if event == "diverged":  # the net already put back the last finite weights
                if validation is None:
                    raise diverged_error(state.n_iter + 1)
                self._diverged_with_validation()
                break
            self._record(*terms[0])
            self._update_no_improvement_count(validation)
            if state.no_improvement_count > params["n_iter_no_change"] and self._plateau_stops():
                break
            if incremental:
                break
            self._warn_if_last()
            self.stop.check()

    def in_chunks(self, rng):
        """The same epochs as one_by_one, several per backend call (_epochs_per_call): the
        permutations and learning rates are drawn ahead, the loss plateau rule runs inside the
        call (stopping.Plateau), and the bookkeeping replays the epochs afterwards. For the
        compiled backends that is one compiled call per chunk instead of Python between every
        two epochs; the random draws stay those of an epoch-by-epoch fit (a call that ends
        early hands back the draws of the epochs it did not run)."""
        params, state = self.params, self.state
        n = self.X.shape[0]
        sample_idx = np.arange(n)
        plateau = Plateau(params["tol"], _patience(params), state.best_loss,
                          state.no_improvement_count, self.task.loss_scale)
        remaining = params["max_iter"]  # epochs in this fit (a warm start continues n_iter)
        while remaining > 0:
            k = min(remaining, self._epochs_per_call(), MAX_CHUNK_EPOCHS,
                    max(1, CHUNK_ORDER_ELEMENTS // n))
            orders = None
            if params["shuffle"]:
                rng_state, start_idx = rng.get_state(), sample_idx
                orders = _draw_orders(sample_idx, rng, k)
                sample_idx = orders[-1]
            terms, event = self._run(orders, self._rates(k), plateau, CALL_BUDGET)
            done = len(terms)
            remaining -= done
            drawn = done + (event == "diverged")  # an epoch-by-epoch fit shuffles before each
            if params["shuffle"] and drawn < k:
                rng.set_state(rng_state)
                sample_idx = _draw_orders(start_idx, rng, drawn)[-1] if drawn else start_idx
            for data_term, penalty_term in terms:
                self._record(data_term, penalty_term)
            state.best_loss, state.no_improvement_count = plateau.best, plateau.count
            if event == "interrupted":  # the net undid the epoch under way
                self.stop.check()
            if event == "diverged":
                raise diverged_error(state.n_iter + 1)
            if event == "plateau":
                if self._plateau_stops():
                    break
                plateau.count = 0
            self._warn_if_last(done)
            self.stop.check()

    def _record(self, data_term, penalty_term):
        """scikit-learn's per-epoch bookkeeping: loss, counters, the invscaling schedule."""
        state = self.state
        state.n_iter += 1
        state.loss = float(data_term / self.task.loss_scale + penalty_term)
        state.t += self.X.shape[0]
        state.loss_curve.append(state.loss)
        self.task.progress.update(state.loss)
        if self.params["verbose"]:
            self._say()("Iteration %d, loss = %.8f" % (state.n_iter, state.loss))
        if self.params["solver"] == "sgd":
            state.schedule.epoch_ends(state.t)

    def _diverged_with_validation(self):
        """Early stopping keeps the best weights by validation score, so a diverging epoch
        ends the fit as scikit-learn's does, without an error: the epoch is recorded with a
        NaN loss and validation score. Every later epoch would be NaN too: the fit stops."""
        state = self.state
        state.n_iter += 1
        state.loss = float("nan")
        state.t += self.X.shape[0]
        state.loss_curve.append(state.loss)
        state.validation_scores.append(float("nan"))
        self.task.progress.update(state.loss)
        _warnings.warn(f"Training diverged at epoch {state.n_iter}: the loss became NaN or inf. "
                       "The weights with the best validation score were kept. Lower the "
                       "learning rate or scale the input data.", ConvergenceWarning)

    def _plateau_stops(self):
        """No improvement for n_iter_no_change epochs: stop, or ('adaptive') lower the rate."""
        params = self.params
        what = "Validation score" if params["early_stopping"] else "Training loss"
        msg = (f"{what} did not improve more than tol={params['tol']:f} for "
               f"{params['n_iter_no_change']} consecutive epochs.")
        if params["solver"] == "sgd":
            stop = self.state.schedule.on_plateau(msg, self._say())
        else:
            stop = True
            if params["verbose"]:
                self._say()(msg + " Stopping.")
        if not stop:
            self.state.no_improvement_count = 0
        return stop

    def _warn_if_last(self, epochs=1):
        """scikit-learn warns after the epoch that makes n_iter == max_iter (once per fit)."""
        max_iter, n_iter = self.params["max_iter"], self.state.n_iter
        if n_iter - epochs < max_iter <= n_iter:
            _warnings.warn("Stochastic Optimizer: Maximum iterations (%d) reached and the "
                           "optimization hasn't converged yet." % max_iter, ConvergenceWarning)

    def _update_no_improvement_count(self, validation):
        params, state = self.params, self.state
        if validation is not None:
            score = validation_score(self.task, self.net, *validation)
            state.validation_scores.append(score)
            if params["verbose"]:
                self._say()("Validation score: %f" % score)
            if score < state.best_validation_score + params["tol"]:
                state.no_improvement_count += 1
            else:
                state.no_improvement_count = 0
            if score > state.best_validation_score:
                state.best_validation_score = score
                state.best_theta = self.net.theta.copy()
        else:  # the training-loss rule, as the chunked fit applies it inside the backend
            rule = Plateau(params["tol"], _patience(params), state.best_loss,
                           state.no_improvement_count)
            rule.update(state.loss_curve[-1])
            state.best_loss, state.no_improvement_count = rule.best, rule.count


def _fit_lbfgs(params, task, state, net, X, Y, sample_weight):
    """L-BFGS-B on the flat parameter vector with the network's full-batch gradients."""
    weight_sum = X.shape[0] if sample_weight is None else float(sample_weight.sum())
    mask = net.arch.coef_mask(dtype=net.dtype)
    grad = np.empty_like(net.theta)
    alpha = params["alpha"]
    start = net.theta.copy()

    def objective(theta):
        """(mean loss + L2 term, its gradient): the function L-BFGS minimises, and its parts."""
        net.theta[...] = theta
        data = net.loss_and_gradient(X, Y, sample_weight, grad)
        penalty = 0.5 * alpha * float(np.dot(net.theta * mask, net.theta))
        grad_total = (grad + alpha * mask * net.theta) / weight_sum
        return data / weight_sum, penalty / weight_sum, grad_total.astype(np.float64)

    def loss_and_grad(theta):
        data, penalty, g = objective(theta)
        if accepted[0][2] is None:  # the first evaluation is the starting point's
            accepted[0] = (start, 0, data + penalty)
        last[0] = (data + penalty, data, penalty)
        return data + penalty, g

    def reported_loss(theta, value):
        """scikit-learn's loss_ from the objective's value at θ (data term rescaled)."""
        penalty = 0.5 * alpha * float(np.dot(theta * mask, theta)) / weight_sum
        return float((value - penalty) / task.loss_scale + penalty)

    # the last iterate L-BFGS accepted, its number and its objective value: one tuple, so
    # Ctrl-C finds it whole
    accepted = [(start, 0, None)]
    last = [(None, None, None)]  # the last evaluation: its value and parts

    def iteration_ends(intermediate_result):
        accepted[0] = (intermediate_result.x.copy(), accepted[0][1] + 1,
                       float(intermediate_result.fun))

    try:
        result = scipy.optimize.minimize(
            loss_and_grad, net.theta.astype(np.float64), method="L-BFGS-B", jac=True,
            callback=iteration_ends,
            options={"maxfun": params["max_fun"], "maxiter": params["max_iter"],
                     "gtol": params["tol"]})
    except KeyboardInterrupt:
        # scikit-learn lets Ctrl-C end an lbfgs fit with KeyboardInterrupt; the model is left
        # at the last accepted iterate, not at a line-search trial point
        theta, state.n_iter, value = accepted[0]
        if value is None:  # interrupted in the first evaluation
            data, penalty, _ = objective(theta)
            value = data + penalty
        net.theta[...] = theta
        state.loss = reported_loss(np.asarray(theta, np.float64), value)
        raise
    state.n_iter = int(min(result.nit, params["max_iter"]))
    if result.status != 0:
        _warnings.warn(f"lbfgs failed to converge after {state.n_iter} iteration(s) "
                       f"(status={result.status}):\n{result.message}\n\nIncrease the number "
                       "of iterations to improve the convergence "
                       f"(max_iter={params['max_iter']}).", ConvergenceWarning)
    if not (np.all(np.isfinite(result.x)) and np.isfinite(result.fun)):
        net.theta[...] = start
        raise DivergenceError(f"{NON_FINITE} lbfgs diverged: the loss or the weights became "
                              "NaN or inf; the "
                              "weights were restored to those before this fit. Scale the "
                              "input data or raise alpha.")
    data, penalty, _ = objective(result.x)  # leaves net.theta = result.x
    if data + penalty != result.fun and last[0][0] == result.fun:
        # a line search that fails returns the last iterate with the last trial's value, and
        # scikit-learn reports that value as loss_: so does fastmlp
        _, data, penalty = last[0]
    state.loss = float(data / task.loss_scale + penalty)
