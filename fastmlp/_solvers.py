"""The estimators' training loops: stochastic (sgd/adam, one backend call per epoch) and lbfgs.

These follow scikit-learn's MLP solvers step for step — same random draws, learning-rate
schedules, stopping rules and warnings — so a fit with the same starting weights follows
scikit-learn's trajectory. The epochs run compiled, up to MAX_CHUNK_EPOCHS per backend call
(the stopping rule inside it); Python runs between calls, or once per epoch where a
validation score is needed (early stopping).
"""
import copy
import warnings

import numpy as np
import scipy.optimize
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import train_test_split

from .model import DivergenceError
from .stopping import Plateau

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

    def on_plateau(self, msg, verbose):
        """True when training should stop; 'adaptive' divides the rate by 5 instead."""
        if self.schedule != "adaptive":
            if verbose:
                print(msg + " Stopping.")
            return True
        if self.value <= 1e-6:
            if verbose:
                print(msg + " Learning rate too small. Stopping.")
            return True
        self.value /= 5.0
        if verbose:
            print(msg + " Setting learning rate to %f" % self.value)
        return False


def _shuffled(sample_idx, rng):
    """What sklearn.utils.shuffle(sample_idx, random_state=rng) returns — the same draws, the
    same permutation — without its parameter validation (run once per epoch here)."""
    permutation = np.arange(sample_idx.shape[0])
    rng.shuffle(permutation)
    return sample_idx[permutation]


def _draw_orders(sample_idx, rng, n_epochs):
    """n_epochs successive _shuffled(sample_idx, rng), as rows of an (n_epochs, n) array:
    natively (fastmlp._shuffle, the same draws) when the extension is built."""
    orders = np.empty((n_epochs, sample_idx.shape[0]), np.int64)
    if shuffled_orders is not None and type(rng) is np.random.RandomState:
        shuffled_orders(rng, np.ascontiguousarray(sample_idx, dtype=np.int64), orders)
        return orders
    for e in range(n_epochs):
        sample_idx = orders[e] = _shuffled(sample_idx, rng)
    return orders


def diverged_error(epoch):
    return DivergenceError(
        f"training diverged at epoch {epoch}: the loss or the weights became NaN or inf. "
        "The weights were restored to those after the last finite epoch. Lower the learning "
        "rate or scale the input data."
    )


def fit_stochastic(est, net, X, Y, sample_weight, rng, incremental):
    """sgd/adam: scikit-learn's _fit_stochastic with the epochs inside the backend's calls."""
    early_stopping = est.early_stopping
    if early_stopping and incremental:
        raise ValueError("partial_fit does not support early_stopping=True")
    if early_stopping:
        stratify = Y if est._stratify_validation() else None
        arrays = (X, Y) if sample_weight is None else (X, Y, sample_weight)
        parts = train_test_split(*arrays, random_state=rng, test_size=est.validation_fraction,
                                 stratify=stratify)
        X_train, X_val, Y_train, Y_val = parts[:4]
        sw_train, sw_val = (parts[4], parts[5]) if sample_weight is not None else (None, None)
        if X_val.shape[0] < 2:
            raise ValueError("The validation set is too small. Increase 'validation_fraction' "
                             "or the size of your dataset.")
        y_val = est._decode(Y_val)
    else:
        X_train, Y_train, sw_train = X, Y, sample_weight
        X_val = y_val = sw_val = None

    n_samples = X_train.shape[0]
    if est.batch_size == "auto":
        batch_size = min(200, n_samples)
    else:
        if est.batch_size > n_samples:
            warnings.warn("Got `batch_size` less than 1 or larger than sample size. It is "
                          "going to be clipped")
        batch_size = int(np.clip(est.batch_size, 1, n_samples))

    if not incremental or not hasattr(est, "_lr"):
        est._lr = LearningRate(est.learning_rate_init, est.learning_rate, est.power_t)
    opt = dict(optimizer=est.solver, momentum=est.momentum, nesterov=est.nesterovs_momentum,
               l2=est.alpha, beta_1=est.beta_1, beta_2=est.beta_2, epsilon=est.epsilon,
               batch_size=batch_size, sample_weight=sw_train, check_input=False)
    progress = est._progress()
    try:
        if early_stopping or incremental or not hasattr(net, "train_epochs"):
            _epoch_by_epoch(est, net, X_train, Y_train, rng, incremental, opt, progress,
                            (X_val, y_val, sw_val))
        else:
            _epochs_in_chunks(est, net, X_train, Y_train, rng, opt, progress)
    except KeyboardInterrupt:
        warnings.warn("Training interrupted by user.")
    finally:
        progress.close()
    if early_stopping:
        net.theta[...] = est._best_theta


def _epoch_by_epoch(est, net, X, Y, rng, incremental, opt, progress, validation):
    """One backend call per epoch, Python's stopping checks after each: for early stopping
    (a validation score per epoch), partial_fit (one epoch) and stand-in networks."""
    sample_idx = np.arange(X.shape[0])
    for _ in range(est.max_iter):
        if est.shuffle:
            sample_idx = _draw_orders(sample_idx, rng, 1)[0]
        lr = est._lr.value if est.solver == "sgd" else est.learning_rate_init
        try:
            net.train_epoch(X, Y, learning_rate=lr, order=sample_idx if est.shuffle else None,
                            **opt)
        except DivergenceError:  # the net already put back the last finite weights
            raise diverged_error(est.n_iter_ + 1) from None
        _record_epoch(est, *net.last_epoch_terms, X.shape[0], progress)
        _update_no_improvement_count(est, net, est.early_stopping, *validation)
        if est._no_improvement_count > est.n_iter_no_change and _plateau_stops(est):
            break
        if incremental:
            break
        _warn_if_last(est)


#: Epochs per backend call in a chunked fit: at most MAX_CHUNK_EPOCHS, and their row orders
#: (int64) at most ~8 MB.
MAX_CHUNK_EPOCHS = 64
CHUNK_ORDER_ELEMENTS = 1 << 20


def _epochs_in_chunks(est, net, X, Y, rng, opt, progress):
    """The same epochs as _epoch_by_epoch, up to MAX_CHUNK_EPOCHS per backend call: the
    permutations and learning rates are drawn ahead, the loss plateau rule runs inside the
    call (stopping.Plateau), and Python's bookkeeping replays the epochs afterwards. For the
    compiled backends that is one compiled call per chunk instead of Python between every
    two epochs; the random draws stay those of an epoch-by-epoch fit."""
    n = X.shape[0]
    sample_idx = np.arange(n)
    plateau = Plateau(est.tol, est.n_iter_no_change, est.best_loss_,
                      est._no_improvement_count, est._loss_scale())
    remaining = est.max_iter  # epochs in this fit (a warm start continues n_iter_)
    while remaining > 0:
        k = min(remaining, MAX_CHUNK_EPOCHS, max(1, CHUNK_ORDER_ELEMENTS // n))
        orders = None
        if est.shuffle:
            rng_state, start_idx = rng.get_state(), sample_idx
            orders = _draw_orders(sample_idx, rng, k)
            sample_idx = orders[-1]
        if est.solver == "sgd":
            rates = est._lr.upcoming(k, est.t_, n)
        else:
            rates = [est.learning_rate_init] * k
        _, event = net.train_epochs(X, Y, rates, orders=orders, plateau=plateau, **opt)
        done = len(net.last_epochs_terms)
        remaining -= done
        drawn = done + (event == "diverged")  # an epoch-by-epoch fit shuffles before each
        if est.shuffle and drawn < k:
            rng.set_state(rng_state)
            sample_idx = _draw_orders(start_idx, rng, drawn)[-1] if drawn else start_idx
        for data_term, penalty_term in net.last_epochs_terms:
            _record_epoch(est, data_term, penalty_term, n, progress)
        est.best_loss_, est._no_improvement_count = plateau.best, plateau.count
        if event == "diverged":
            raise diverged_error(est.n_iter_ + 1)
        if event == "plateau":
            if _plateau_stops(est):
                break
            plateau.count = 0
        _warn_if_last(est, done)


def _record_epoch(est, data_term, penalty_term, n_samples, progress):
    """scikit-learn's per-epoch bookkeeping: loss, counters, the invscaling schedule."""
    est.n_iter_ += 1
    est.loss_ = float(data_term / est._loss_scale() + penalty_term)
    est.t_ += n_samples
    est.loss_curve_.append(est.loss_)
    progress.update(est.loss_)
    if est.solver == "sgd":
        est._lr.epoch_ends(est.t_)


def _plateau_stops(est):
    """No improvement for n_iter_no_change epochs: stop, or ('adaptive') lower the rate."""
    what = "Validation score" if est.early_stopping else "Training loss"
    msg = (f"{what} did not improve more than tol={est.tol:f} for "
           f"{est.n_iter_no_change} consecutive epochs.")
    if est.solver == "sgd":
        stop = est._lr.on_plateau(msg, est.verbose)
    else:
        stop = True
        if est.verbose:
            print(msg + " Stopping.")
    if not stop:
        est._no_improvement_count = 0
    return stop


def _warn_if_last(est, epochs=1):
    """scikit-learn warns after the epoch that makes n_iter_ == max_iter (once per fit)."""
    if est.n_iter_ - epochs < est.max_iter <= est.n_iter_:
        warnings.warn("Stochastic Optimizer: Maximum iterations (%d) reached and the "
                      "optimization hasn't converged yet." % est.max_iter, ConvergenceWarning)


def _update_no_improvement_count(est, net, early_stopping, X_val, y_val, sw_val):
    if early_stopping:
        score = est._score_net(net, X_val, y_val, sw_val)
        est.validation_scores_.append(score)
        if est.verbose:
            print("Validation score: %f" % score)
        if score < est.best_validation_score_ + est.tol:
            est._no_improvement_count += 1
        else:
            est._no_improvement_count = 0
        if score > est.best_validation_score_:
            est.best_validation_score_ = score
            est._best_theta = net.theta.copy()
    else:  # the training-loss rule, as the chunked fit applies it inside the backend
        rule = Plateau(est.tol, est.n_iter_no_change, est.best_loss_, est._no_improvement_count)
        rule.update(est.loss_curve_[-1])
        est.best_loss_, est._no_improvement_count = rule.best, rule.count


def fit_lbfgs(est, net, X, Y, sample_weight):
    """L-BFGS-B on the flat parameter vector with the backend's full-batch gradients."""
    weight_sum = X.shape[0] if sample_weight is None else float(sample_weight.sum())
    mask = net.arch.coef_mask(dtype=net.dtype)
    grad = np.empty_like(net.theta)
    alpha = est.alpha
    start = net.theta.copy()

    def objective(theta):
        """(mean loss + L2 term, its gradient): the function L-BFGS minimises, and its parts."""
        net.theta[...] = theta
        data = net._loss_and_grad(X, Y, sample_weight, grad)
        penalty = 0.5 * alpha * float(np.dot(net.theta * mask, net.theta))
        grad_total = (grad + alpha * mask * net.theta) / weight_sum
        return data / weight_sum, penalty / weight_sum, grad_total.astype(np.float64)

    def loss_and_grad(theta):
        data, penalty, g = objective(theta)
        return data + penalty, g

    result = scipy.optimize.minimize(
        loss_and_grad, net.theta.astype(np.float64), method="L-BFGS-B", jac=True,
        options={"maxfun": est.max_fun, "maxiter": est.max_iter, "gtol": est.tol})
    est.n_iter_ = int(min(result.nit, est.max_iter))
    if result.status != 0:
        warnings.warn(f"lbfgs failed to converge after {est.n_iter_} iteration(s) "
                      f"(status={result.status}):\n{result.message}\n\nIncrease the number "
                      "of iterations to improve the convergence "
                      f"(max_iter={est.max_iter}).", ConvergenceWarning)
    if not (np.all(np.isfinite(result.x)) and np.isfinite(result.fun)):
        net.theta[...] = start
        raise DivergenceError("lbfgs diverged: the loss or the weights became NaN or inf; the "
                         "weights were restored to those before this fit. Scale the input "
                         "data or raise alpha.")
    data, penalty, _ = objective(result.x)  # leaves net.theta = result.x
    est.loss_ = float(data / est._loss_scale() + penalty)
