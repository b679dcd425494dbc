"""What a portable build costs: the digits fit (cython, scikit-learn's defaults) with this
checkout's build (a local one: -march=native) against a portable build of the same sources
(FASTMLP_PORTABLE=1, what a wheel gets), each fit in a fresh process, interleaved.

    python -m bench.portable_build [--rounds 7]
"""
import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
PROBE = r"""
import json, time, warnings, numpy as np
from fastmlp import MLPClassifier, _build_info

from bench import harness as B
warnings.simplefilter("ignore")
out = {"native": _build_info.native()}
for dtype in (np.float32, np.float64):
    X, _, y, _ = B.digits_problem(dtype)
    MLPClassifier(max_iter=1, random_state=0, backend="cython").fit(X[:256], y[:256])
    start = time.perf_counter()
    MLPClassifier(random_state=0, backend="cython").fit(X, y)
    out[np.dtype(dtype).name] = time.perf_counter() - start
print(json.dumps(out))
"""


def portable_copy(where):
    for item in ("setup.py", "pyproject.toml", "README.md", "csrc", "fastmlp"):
        src = ROOT / item
        (shutil.copytree if src.is_dir() else shutil.copy)(src, where / item)
    for so in (where / "fastmlp").rglob("*.so"):
        so.unlink()
    subprocess.run([sys.executable, "setup.py", "build_ext", "--inplace"], cwd=where,
                   env=dict(os.environ, FASTMLP_PORTABLE="1"), check=True,
                   capture_output=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    rounds = parser.parse_args().rounds
    with tempfile.TemporaryDirectory() as tmp:
        portable_copy(Path(tmp))
        builds = {"native": ROOT, "portable": Path(tmp)}
        times = {name: [] for name in builds}
        for _ in range(rounds):
            for name, root in builds.items():
                run = subprocess.run([sys.executable, "-c", PROBE], cwd=root, check=True,
                                     capture_output=True, text=True,
                                     env=dict(os.environ, PYTHONPATH=str(root),
                                              FASTMLP_ADAPTIVE_THREADS="0"))
                times[name].append(json.loads(run.stdout))
    assert times["native"][0]["native"] and not times["portable"][0]["native"]
    for dtype in ("float32", "float64"):
        native, portable = (float(np.median([t[dtype] for t in times[n]])) for n in builds)
        print(f"digits fit {dtype}: native {native:.3f} s, portable {portable:.3f} s, "
              f"portable / native {portable / native:.2f} (medians of {rounds})")


if __name__ == "__main__":
    main()
