"""Data-parallel training on Dask against one process: seconds per step, setup, where a
distributed step's time goes, the call floor, and the scaling model's constants and batches
(fastmlp/dask_bench.py says what each is).

Run: python bench/dask_scaling.py [--rows 400000] [--batches 20000 100000] [--epochs 3]
     [--workers 2] [--rounds 3]      (also: fastmlp bench --dask)
"""
import argparse


def main(argv=None):
    from fastmlp import dask_bench

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=400_000)
    parser.add_argument("--batches", type=int, nargs="+", default=[20_000, 100_000])
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    print(dask_bench.text(dask_bench.run(args.rows, args.batches, args.epochs, args.workers,
                                         args.rounds)))


if __name__ == "__main__":
    main()
