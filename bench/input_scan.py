"""What the NaN/inf scan of a direct public call costs: forward_layer at 128x784x256
(float64) as a user calls it (checked), and through the backend's unchecked kernels as MLP
and the estimators call it, side by side.

    python -m bench.input_scan
"""
import timeit

import numpy as np

from fastmlp.backends import available_backends, get_backend


def main(reps=200, rounds=7):
    rng = np.random.default_rng(0)
    A, W, b = rng.random((128, 784)), rng.random((784, 256)), rng.random(256)
    out = np.empty((128, 256))
    for name in available_backends():
        backend = get_backend(name)

        def checked():
            backend.forward_layer(A, W, b, "relu", out)

        def unchecked():
            backend.unchecked.forward_layer(A, W, b, "relu", out, 0.01)

        checked(), unchecked()  # compile / warm up
        times = {}
        for _ in range(rounds):  # interleaved rounds, best of each
            for f in (checked, unchecked):
                t = timeit.timeit(f, number=reps) / reps * 1e6
                times[f.__name__] = min(times.get(f.__name__, t), t)
        print(f"{name:6} checked {times['checked']:7.1f} us, unchecked {times['unchecked']:7.1f} us:"
              f" the scan costs {times['checked'] - times['unchecked']:6.1f} us")


if __name__ == "__main__":
    main()
