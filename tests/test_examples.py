"""Every code block of the README and the guides runs as written.

A fenced block is ```python (run as a script of its own, in one child process for all of
them: each in its own namespace and a fresh directory), ```bash (run by bash, each command
checked, in its document's fresh directory) or ```text (not code). The commands CI runs
itself — installing (`pip install`) and the test suite (`pytest`) — are checked to be in
.ci/run as written, not run here.
"""
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCUMENTS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")),
             *sorted((ROOT / "docs" / "dev").glob("*.md"))]
FENCE = re.compile(r"^```(\w*)\n(.*?)^```$", re.M | re.S)
#: Commands CI runs as written (in .ci/run), not run by this test.
CI_COMMANDS = ("pip install", "pytest")
ASSIGNMENT = re.compile(r"^(\w+=\S*\s+)*")


def _commands(line):
    """The commands of a shell line (split at &&), each without its leading VAR=value."""
    return [command.strip() for command in line.split("&&") if command.strip()]


def _runs_in_ci(line):
    """Whether a shell line is one of the commands CI runs itself."""
    return any(ASSIGNMENT.sub("", command).startswith(CI_COMMANDS)
               for command in _commands(line))

pytestmark = pytest.mark.process  # each block runs in a Python or bash child


def blocks(document):
    """(language, code) of each fenced block of a markdown file."""
    return [(m.group(1), m.group(2)) for m in FENCE.finditer(document.read_text())]


def _name(document):
    return str(document.relative_to(ROOT))


def test_every_block_has_a_language_the_test_knows():
    unknown = [(_name(d), lang) for d in DOCUMENTS for lang, _ in blocks(d)
               if lang not in ("python", "bash", "text")]
    assert not unknown, f"blocks neither python, bash nor text: {unknown}"


def test_the_commands_ci_runs_are_in_ci_run_as_written():
    ci = {command for line in (ROOT / ".ci" / "run").read_text().splitlines()
          for command in _commands(line)}
    missing = [(_name(d), command) for d in DOCUMENTS for lang, code in blocks(d)
               if lang == "bash" for line in code.splitlines() if _runs_in_ci(line)
               for command in _commands(line) if command not in ci]
    assert not missing, f"commands CI does not run as written: {missing}"


RUNNER = r"""
import json, os, runpy, sys, warnings
for path in json.loads(sys.argv[1]):
    print(json.dumps({"block": path}), flush=True)  # a crash's culprit is the last printed
    os.chdir(os.path.dirname(path))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a ConvergenceWarning of a short example fit
        runpy.run_path(path, run_name="__main__")
    print(json.dumps({"block": path, "ok": True}), flush=True)
"""


def test_every_python_block_runs(tmp_path):
    scripts = []
    for d, document in enumerate(DOCUMENTS):
        for b, (lang, code) in enumerate(blocks(document)):
            if lang == "python":
                directory = tmp_path / f"{d}-{b}"
                directory.mkdir()
                (directory / "example.py").write_text(code)
                scripts.append((str(directory / "example.py"), f"{_name(document)} block {b}"))
    assert len(scripts) >= 8
    run = subprocess.run([sys.executable, "-c", RUNNER, json.dumps([p for p, _ in scripts])],
                         capture_output=True, text=True, timeout=900, cwd=tmp_path)
    done = {json.loads(line)["block"] for line in run.stdout.splitlines()
            if line.startswith('{"block"') and '"ok"' in line}
    failed = [name for path, name in scripts if path not in done]
    assert run.returncode == 0 and not failed, (failed[:1], run.stderr[-3000:])


@pytest.mark.parametrize("document", [d for d in DOCUMENTS
                                      if any(lang == "bash" for lang, _ in blocks(d))],
                         ids=_name)
def test_every_shell_block_runs(tmp_path, document):
    """Each bash block in order, in one fresh directory per document, the installed
    `fastmlp` and this Python first on PATH and the checkout importable (the lab's `python
    -m bench` runs from a checkout); a failing command fails the block."""
    env = dict(os.environ, PATH=os.pathsep.join([os.path.dirname(sys.executable),
                                                 os.environ.get("PATH", "")]),
               PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    for lang, code in blocks(document):
        lines = [line for line in code.splitlines() if not _runs_in_ci(line)]
        if lang != "bash" or not lines:
            continue
        run = subprocess.run(["bash", "-e", "-o", "pipefail", "-c", "\n".join(lines)],
                             cwd=tmp_path, env=env, capture_output=True, text=True,
                             timeout=600)
        assert run.returncode == 0, (code, run.stdout[-2000:], run.stderr[-3000:])
