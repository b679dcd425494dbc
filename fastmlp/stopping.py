"""scikit-learn's stopping rule for sgd/adam on the training loss, as one small object.

The reference backend applies it in Python after each epoch; the compiled backends apply the
same comparisons inside their multi-epoch kernel (train_epochs), so a fit needs Python only
when the rule fires, not after every epoch.
"""
import math
from dataclasses import dataclass


@dataclass
class Plateau:
    """No improvement: the epoch loss is above `best - tol`. More than `patience` epochs of
    no improvement in a row is a plateau (scikit-learn's n_iter_no_change).

    The epoch loss is `data_term / n / scale + penalty_term / n` from the epoch's two sums
    (scale: scikit-learn averages squared error over the outputs too, n_outputs; else 1).
    """

    tol: float
    patience: int
    best: float = math.inf
    count: int = 0
    scale: float = 1.0

    def epoch_loss(self, data_term, penalty_term, n):
        return data_term / n / self.scale + penalty_term / n

    def update(self, loss):
        """Record one epoch's loss; True when it completes a plateau."""
        if loss > self.best - self.tol:
            self.count += 1
        else:
            self.count = 0
        if loss < self.best:
            self.best = loss
        return self.count > self.patience
