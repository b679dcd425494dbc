"""Warnings that the filters scikit-learn's users already write apply to.

A filter may name the module a warning comes from: scikit-learn's own examples silence the
MLP with ``filterwarnings("ignore", category=ConvergenceWarning, module="sklearn")``. fastmlp's
estimators stand in for scikit-learn's, so each warning they give is matched both as fastmlp's
(``module="fastmlp"``) and as the scikit-learn module that gives the same warning: the first
filter that matches either decides, as the first matching filter always does.
"""
import sys
import warnings

#: Where scikit-learn gives the MLP's own warnings (its ConvergenceWarnings, the batch_size
#: clip) and where it gives the feature-names warnings of validate_data.
SKLEARN_MLP = "sklearn.neural_network._multilayer_perceptron"
SKLEARN_VALIDATION = "sklearn.utils.validation"


def warn(message, category=UserWarning, *, like=SKLEARN_MLP):
    """warnings.warn from the caller's line, attributed to the caller's module unless the first
    filter that decides it names scikit-learn's module ``like`` (and not the caller's)."""
    frame = sys._getframe(1)
    module = frame.f_globals["__name__"]
    text = str(message)
    for _, pattern, kind, where, line in warnings.filters:
        if ((pattern is None or pattern.match(text)) and issubclass(category, kind)
                and line in (0, frame.f_lineno)):
            if where is not None and not where.match(module) and where.match(like):
                module = like
            if where is None or where.match(module):
                break
    registry = frame.f_globals.setdefault("__warningregistry__", {})
    warnings.warn_explicit(message, category, frame.f_code.co_filename, frame.f_lineno,
                           module=module, registry=registry, module_globals=frame.f_globals)
