"""One-hot encoding of a classifier's labels: LabelBinarizer.transform vs fastmlp's direct
encoding (estimators._binarized), on the digits training labels, as a fit meets them (a short
pause first, so the caches are as cold as between two fits).

    python -m bench.label_encoding
"""
import time

import numpy as np
from sklearn.preprocessing import LabelBinarizer

from bench.harness import digits_problem
from fastmlp.estimators import _binarized


def median_us(encode, y, rounds=31):
    times = []
    for _ in range(rounds):
        time.sleep(0.02)
        start = time.perf_counter()
        encode(y)
        times.append(time.perf_counter() - start)
    return float(np.median(times)) * 1e6


def main():
    _, _, y, _ = digits_problem(np.float64)
    binarizer = LabelBinarizer().fit(y)
    assert np.array_equal(_binarized(binarizer, y, np.float64),
                          binarizer.transform(y).astype(np.float64))
    sklearn_us = median_us(lambda v: binarizer.transform(v).astype(np.float64), y)
    direct_us = median_us(lambda v: _binarized(binarizer, v, np.float64), y)
    print(f"{len(y)} labels, {len(binarizer.classes_)} classes: LabelBinarizer.transform "
          f"{sklearn_us:.0f} us, direct one-hot {direct_us:.0f} us")


if __name__ == "__main__":
    main()
