"""README.md stays short, its two commands stay in step with the code and with .ci/run, and its links resolve."""

from __future__ import annotations

import configparser
import re
import shlex
import subprocess
import sys

import pytest
from conftest import ROOT

README = ROOT / "README.md"
#: the pages that README.md and docs/ link to, written by hand or generated; each must exist
DOCS = (
    "README.md",
    "docs/performance.md",
    "docs/reliability.md",
    "docs/evaluation.md",
    "docs/data.md",
    "docs/model-card.md",
    "docs/operating-points.md",
    "docs/students.md",
)
MAX_README_LINES = 250


def _bash_blocks() -> list[str]:
    return re.findall(r"```bash\n(.*?)```", README.read_text(), flags=re.S)


def _steps(block: str) -> list[str]:
    return [p.strip() for p in block.strip().split("&&")]


def test_readme_is_short():
    lines = README.read_text().splitlines()
    assert len(lines) <= MAX_README_LINES, f"README.md has {len(lines)} lines; move detail to docs/"


def test_the_two_commands_come_first_and_run_the_right_things():
    first, second = _bash_blocks()[:2]
    job, tests = _steps(first), _steps(second)
    assert job[:3] == ["python3 -m venv .venv", ". .venv/bin/activate", 'pip install -e ".[train]"']
    assert [s.split()[1] for s in job[3:]] == ["data", "distill", "export", "bench"]
    assert all(s.startswith("kdtool ") for s in job[3:])
    assert job[3].startswith("kdtool data synthetic ")  # offline: no download in the first command
    assert tests == [
        "python3 -m venv .venv",
        ". .venv/bin/activate",
        'pip install -e ".[train,test]"',
        "python -m pytest -q",
    ]


def test_ci_runs_the_readme_test_command():
    ci = (ROOT / ".ci" / "run").read_text()
    for part in _steps(_bash_blocks()[1]):
        assert part in ci, f".ci/run does not run the README step {part!r}"


def test_readme_names_the_fast_subset():
    text = README.read_text()
    assert 'python -m pytest -m "not slow"' in text
    assert "under 3 minutes on 2 cores" in text
    markers = configparser.ConfigParser()
    markers.read(ROOT / "setup.cfg")
    assert "slow:" in markers["tool:pytest"]["markers"]


def test_install_table_names_extras_that_exist():
    cfg = configparser.ConfigParser()
    cfg.read(ROOT / "setup.cfg")
    extras = set(cfg["options.extras_require"])
    named = set()
    for spec in re.findall(r'pip install (?:-e )?"?\.\[([a-z,]+)\]"?', README.read_text()):
        named.update(spec.split(","))
    assert named == {"train", "test"}
    assert named <= extras, f"README installs extras that setup.cfg lacks: {named - extras}"


@pytest.mark.parametrize("page", DOCS)
def test_relative_links_resolve(page):
    path = ROOT / page
    missing = []
    for target in re.findall(r"\]\(([^)\s]+)\)", path.read_text()):
        if re.match(r"[a-z]+://|#|mailto:", target):
            continue
        if not (path.parent / target.split("#")[0]).exists():
            missing.append(target)
    assert not missing, f"{page} links to files that do not exist: {missing}"


def test_readme_links_the_docs():
    links = set(re.findall(r"\]\(([^)\s#]+)", README.read_text()))
    want = {
        "docs/cli.md",
        "docs/performance.md",
        "docs/reliability.md",
        "docs/decisions.md",
        "docs/evaluation.md",
        "CHANGELOG.md",
        "benchmarks/run.py",
        "benchmarks/results.md",
    }
    assert want <= links, f"README.md does not link {sorted(want - links)}"


def test_readme_mentions_only_repository_paths_that_exist():
    text = README.read_text()
    paths = set(re.findall(r"(?<![\w./])((?:benchmarks|docs|tests|kdtool|\.ci)/[\w./-]*[\w])", text))
    missing = sorted(p for p in paths if not (ROOT / p).exists())
    assert not missing, f"README.md names paths that do not exist: {missing}"


def test_layout_names_what_exists():
    block = re.search(r"## Layout\n+```\n(.*?)```", README.read_text(), flags=re.S).group(1)
    folders = re.findall(r"^ *([\w]+)/ ", block, flags=re.M)
    assert {"kdtool", "distill", "export", "bench", "tests", "benchmarks", "docs"} <= set(folders)
    for sub in ("distill", "export", "bench"):
        assert (ROOT / "kdtool" / sub / "__init__.py").is_file()
    core = re.findall(r"\b([a-z_]+\.py)\b", block)
    missing = [m for m in core if not (ROOT / "kdtool" / m).is_file() and not (ROOT / "benchmarks" / m).is_file()]
    assert not missing, f"Layout names modules that do not exist: {missing}"


@pytest.mark.parametrize("page", DOCS)
def test_no_dated_logs(page):
    """No per-commit timing logs and no dated paragraphs: numbers carry a command and a machine, not a date."""
    dates = re.findall(r"\b20\d\d-\d\d-\d\d\b", (ROOT / page).read_text())
    assert not dates, f"{page} has dated entries {dates}; keep today's numbers only (history is in git)"


def test_readme_and_performance_quote_the_same_numbers():
    """The README's table of the default student is a copy of docs/performance.md's; they must not drift."""
    readme = README.read_text()
    perf = (ROOT / "docs" / "performance.md").read_text()
    section = re.search(r"## What the default student achieves\n(.*?)\n## ", readme, flags=re.S).group(1)
    interval = r"\d+\.\d \[\d+\.\d, \d+\.\d\]"
    rows = [r for r in section.splitlines() if r.startswith("| ") and re.search(interval, r)]
    labels = [r.split("|")[1].strip() for r in rows]
    seeds = sorted({label.rsplit("seed ", 1)[-1] for label in labels})
    assert len(seeds) >= 2, "the README's table should show at least two seeds"
    want = [f"{model}, seed {seed}" for model in ("distilled student", "student alone") for seed in seeds]
    assert labels == want, "the README's table: the distilled student, then the student alone, each per seed"
    perf_rows = [r for r in perf.splitlines() if r.startswith("| ") and re.search(interval, r)]
    for row, label in zip(rows, labels, strict=True):
        values = re.findall(interval, row)
        assert len(values) == 6
        match = [r for r in perf_rows if r.startswith(f"| {label} |")]
        assert match, f"docs/performance.md has no row {label!r}"
        assert all(v in match[0] for v in values), f"README row {row!r} differs from docs/performance.md"
    assert "seed" in section and "test split" in section and "lesion" in section and "95% intervals" in section


@pytest.mark.slow
def test_readme_main_job_runs(tmp_path):
    pytest.importorskip("tensorflow")
    kdtool_steps = [s for s in _steps(_bash_blocks()[0]) if s.startswith("kdtool ")]
    for step in kdtool_steps:
        argv = shlex.split(step)[1:]
        proc = subprocess.run(
            [sys.executable, "-m", "kdtool", *argv], cwd=tmp_path, capture_output=True, text=True, timeout=900
        )
        assert proc.returncode == 0, f"{step}\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}"
    assert "bal.acc" in proc.stdout
