"""The compiled extensions build without OpenMP and libmvec too (serial, scalar exp) and say so."""
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_build_without_openmp_reports_it(tmp_path):
    pytest.importorskip("Cython")
    for item in ("setup.py", "pyproject.toml", "README.md", "csrc", "fastmlp"):
        src = ROOT / item
        (shutil.copytree if src.is_dir() else shutil.copy)(src, tmp_path / item)
    for so in (tmp_path / "fastmlp").glob("*.so"):
        so.unlink()
    env = dict(os.environ, FASTMLP_NO_OPENMP="1", FASTMLP_NO_LIBMVEC="1")
    build = subprocess.run([sys.executable, "setup.py", "build_ext", "--inplace"], cwd=tmp_path,
                           env=env, capture_output=True, text=True, timeout=900)
    assert build.returncode == 0, build.stderr[-3000:]
    assert "building with OpenMP=no" in build.stderr and "libmvec=no" in build.stderr
    probe = ("import numpy as np, fastmlp; from fastmlp import _build_info; "
             "print(_build_info.openmp_enabled(), _build_info.libmvec_enabled(), "
             "fastmlp.get_backend('cython').name)")
    run = subprocess.run([sys.executable, "-c", probe], cwd=tmp_path, capture_output=True,
                         text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    assert run.stdout.split() == ["False", "False", "cython"]
