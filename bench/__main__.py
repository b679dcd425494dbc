"""`python -m bench`: the benchmark lab's report — W1-W4 training steps of every backend
beside the reference, the GEMM floors, JAX and PyTorch; the fused forward_layer beside a
bare GEMM; the digits and MNIST-shaped fits beside scikit-learn's and their GEMM floors —
written as results.json, a markdown report (docs/performance.md is one) and a plot.
--sparse, --contention and --dask run one of the other studies instead.
"""
import argparse
import json
import os
import sys

import numpy as np


def _machine():
    from fastmlp.show import config

    return config()


def write_section(path, name, text):
    """The report at `path` with its section `name` (between `<!-- name -->` and `<!-- end
    name -->` lines) replaced by `text`, or added at its end: each study refreshes its own
    section and keeps the others."""
    start, end = f"<!-- {name} -->", f"<!-- end {name} -->"
    block = f"{start}\n{text.rstrip()}\n{end}\n"
    old = open(path).read() if os.path.exists(path) else ""
    if start in old and end in old:
        before, rest = old.split(start, 1)
        new = before + block + rest.split(end, 1)[1].lstrip("\n")
    else:
        new = (old.rstrip() + "\n\n" if old.strip() else "") + block
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w") as f:
        f.write(new)
    print(f"wrote {path} ({name})")


STUDIES = {"dask": "Data-parallel training on Dask", "contention": "A busy machine",
           "sparse": "Sparse text (TF-IDF)", "latency": "Prediction latency"}


def _study_section(args, name, table):
    """A study's section of the report: its title, the command and machine, its table."""
    machine = _machine()
    return (f"## {STUDIES[name]}\n\nWritten by `{args.command}` on {machine['cpus']} cores "
            f"({machine['machine']}); rerun it to refresh this section.\n\n{table}\n")


def _write(args, name, **measured):
    os.makedirs(args.out, exist_ok=True)
    path = os.path.join(args.out, f"{name}.json")
    with open(path, "w") as f:
        json.dump({"machine": _machine(), "command": args.command, **measured}, f, indent=2,
                  default=str)
    print(f"wrote {path}")


def study(args):
    """--dask, --contention, --sparse or --latency: one study, its table and its JSON."""
    if args.latency:
        from . import latency

        measured = latency.run(dtypes=[np.dtype(d) for d in args.dtypes],
                               rows=(1, 32, 10_000) if args.quick else latency.ROWS,
                               rounds=2 if args.quick else 5,
                               progress=lambda *key: print("latency", *key, flush=True))
        table = latency.text(measured)
        print(table)
        _write(args, "latency", latency=measured)
        name = "latency"
    elif args.dask:
        from . import dask_scaling

        measured = dask_scaling.run(rows=100_000 if args.quick else 400_000,
                                    rounds=1 if args.quick else 3)
        table = dask_scaling.text(measured)
        print(table)
        _write(args, "dask", dask=measured, model=dask_scaling.model(measured))
        name, table = "dask", f"```text\n{table}\n```"
    elif args.contention:
        from . import contention

        measured = contention.run(rounds=1 if args.quick else 3, quick=args.quick,
                                  dtypes=[np.dtype(d) for d in args.dtypes])
        table = contention.text(measured)
        print(table)
        _write(args, "contention", contention=measured)
        name = "contention"
    else:
        from . import sparse_text

        corpus = dict(sparse_text.CORPUS, **(dict(n_docs=4000, n_terms=20_000)
                                             if args.quick else {}))
        measured = sparse_text.run(dtypes=[np.dtype(d) for d in args.dtypes],
                                   rounds=1 if args.quick else 3, corpus_params=corpus)
        table = sparse_text.text(measured)
        print(table)
        _write(args, "sparse", sparse=measured)
        name = "sparse"
    if args.report:
        write_section(args.report, name, _study_section(args, name, table))


def report(args):
    """The steps, forward_layer and fit tables; results.json, the report and the plot."""
    from tqdm import tqdm

    from . import harness as B

    workloads = args.workloads or (["W1", "W2", "W3"] if args.quick else list(B.WORKLOADS))
    dtypes = [np.dtype(d) for d in args.dtypes]
    rows, forward = [], []
    if not args.fits_only:
        bar = tqdm(total=len(workloads) * len(dtypes), desc="bench", unit="case",
                   disable=args.quiet)
        rows = B.step_table(workloads, dtypes, rounds=3 if args.quick else args.rounds,
                            quick=args.quick, n_threads=args.n_threads,
                            progress=lambda w, d: (bar.set_postfix_str(f"{w} {d}"),
                                                   bar.update()))
        bar.close()
        forward = B.forward_vs_gemm(dtypes=dtypes, rounds=5 if args.quick else 15)
    fits = B.fit_table(("digits",) if args.quick or args.fits_only else
                       ("digits", "mnist-shaped"), dtypes, rounds=1 if args.quick else args.rounds)
    if rows:
        print(B.ratio_table(rows))
        print()
    for r in forward:
        print(f"forward_layer {r['shape']} {r['dtype']:8} {r['contender']:10} "
              f"{r['us_per_call']:9.1f} us")
    print()
    print(B.fit_text(fits))
    machine = _machine()
    os.makedirs(args.out, exist_ok=True)
    path = os.path.join(args.out, "results.json")
    with open(path, "w") as f:
        json.dump({"machine": machine, "command": args.command, "steps": rows,
                   "forward_layer": forward, "fits": fits}, f, indent=2)
    print(f"wrote {path}")
    markdown = args.report or os.path.join(args.out, "report.md")
    os.makedirs(os.path.dirname(os.path.abspath(markdown)), exist_ok=True)
    write_section(markdown, "main", B.markdown_report(rows, forward, fits, machine,
                                                      args.command))
    if rows:
        png = B.plot(rows, os.path.join(args.out, "steps.png"))
        print(f"wrote {png}")


def build_parser():
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    p.add_argument("--quick", action="store_true", help="W1-W3, fewer steps and rounds")
    p.add_argument("--fits-only", action="store_true",
                   help="only the digits fits against scikit-learn's, --rounds of them")
    p.add_argument("--workloads", nargs="+", choices=["W1", "W2", "W3", "W4"],
                   help="the step workloads to time (default: all; --quick: W1-W3)")
    p.add_argument("--dtypes", nargs="+", default=["float32", "float64"],
                   choices=["float32", "float64"], help="default: both")
    p.add_argument("--rounds", type=int, default=7, help="interleaved rounds (default: 7)")
    p.add_argument("--n-threads", type=int, default=None,
                   help="fastmlp's and torch's threads (default: theirs)")
    p.add_argument("--out", default="bench-results",
                   help="directory for the JSON results and the plot (default: bench-results)")
    p.add_argument("--report", help="write the markdown report here (default: OUT/report.md; "
                                    "a study: no report); docs/performance.md is this report, "
                                    "each run refreshing its own section")
    which = p.add_mutually_exclusive_group()
    which.add_argument("--dask", action="store_true",
                       help="only the Dask scaling study (2 workers against 1 process, "
                            "global batch 20k and 100k) and its scaling model")
    which.add_argument("--contention", action="store_true",
                       help="only the busy-machine study: digits and MNIST-shaped fits, idle "
                            "and beside a CPU-bound process it starts, default threads vs "
                            "n_threads=1 vs scikit-learn")
    which.add_argument("--latency", action="store_true",
                       help="only the prediction latency study: 1, 32 and 100 000 rows, "
                            "digits-sized and MNIST-shaped, fastmlp beside scikit-learn, "
                            "onnxruntime, NumPy, torch and JAX, idle and busy")
    which.add_argument("--sparse", action="store_true",
                       help="only the sparse text study: a TF-IDF corpus (20k documents x "
                            "50k terms, 20 classes) fitted by fastmlp and scikit-learn")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    return p


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser().parse_args(argv)
    args.command = " ".join(["python -m bench", *argv])
    if args.dask or args.contention or args.sparse or args.latency:
        study(args)
    else:
        report(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
