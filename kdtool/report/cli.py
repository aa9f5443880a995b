"""``kdtool report``: write a model card beside each exported model (no TensorFlow, no matplotlib needed).

Only click is imported when the CLI loads; the work is in :func:`write_reports`.

Example:
    >>> from click.testing import CliRunner
    >>> "--bench FILE.json" in CliRunner().invoke(report_command, ["--help"]).output
    True
"""

from __future__ import annotations

import shlex
from pathlib import Path

import click

from kdtool.errors import InputError

_CTX = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


def _command_line(folder, data, out, bench_files, run_bench, class_of_concern, bootstrap) -> str:
    args = ["kdtool", "report", str(folder)]
    for flag, value in (
        ("--data", data),
        ("--out", out),
        ("--class-of-concern", class_of_concern),
        ("--bootstrap", bootstrap),
    ):
        if value is not None:
            args += [flag, str(value)]
    for f in bench_files:
        args += ["--bench", str(f)]
    return shlex.join(args + ([] if run_bench else ["--no-run-bench"]))


def write_reports(
    folder: str | Path,
    data: str | None = None,
    out: str | Path | None = None,
    bench_files: tuple[str, ...] = (),
    run_bench: bool = True,
    class_of_concern: str | None = None,
    bootstrap: int | None = None,
    echo=click.echo,
) -> list[Path]:
    """Write ``<model>.MODEL_CARD.md`` (and its plots) for every exported model of ``folder``.

    Args:
        folder: an export folder, or a run folder whose ``export/`` holds the models.
        data: the FData folder (default: the sidecar's, else run.json's).
        out: folder for the cards and plots (default: beside each model).
        bench_files: ``kdtool bench --json`` files; their records are matched to the models.
        run_bench: run ``kdtool bench`` (no latency) for a validation or test record not given.
        class_of_concern: ``--class-of-concern`` of those bench runs.
        bootstrap: ``--bootstrap`` of those bench runs (None: bench's default).
        echo: where progress lines and notes go.

    Returns:
        The cards written.

    Raises:
        InputError: no exported models, a sidecar not matching its file, data or a bench file missing or
            malformed (one line naming the file).

    Example:
        >>> write_reports("models", bench_files=("pi4.json",))  # doctest: +SKIP
        [PosixPath('models/export/student_t.int8.MODEL_CARD.md')]
    """
    from kdtool.report.card import card_path, write_card
    from kdtool.report.collect import data_facts, find_models, find_run, resolve_data
    from kdtool.report.evaluation import concern_name
    from kdtool.report.measure import CARD_SPLITS, BenchRecord, collect, load_bench_files, match_records
    from kdtool.report.measure import run_bench as bench_split
    from kdtool.report.plots import draw, run_plots
    from kdtool.report.sections import CardInput

    folder = Path(folder)
    if out is not None:
        out = Path(out)
        if out.exists() and not out.is_dir():
            raise InputError(f"--out {out}: is a file, expected a folder")
    models, notes = find_models(folder)
    given = load_bench_files(bench_files)
    runs = {m.tflite: find_run(m, folder) for m in models}
    roots = {m.tflite: resolve_data(data, m, runs[m.tflite]) for m in models}
    facts = {}
    for root in dict.fromkeys(roots.values()):
        facts[root] = data_facts(root)
    matched = {m.tflite: match_records(given, m) for m in models}
    used = {id(b.record) for items in matched.values() for b in items}
    notes += [
        f"{src}: a record of {rec.get('model')} matches no exported model here; not used"
        for src, rec in given
        if id(rec) not in used
    ]
    if run_bench:
        for root in dict.fromkeys(roots.values()):
            for split in CARD_SPLITS:
                todo = [
                    m
                    for m in models
                    if roots[m.tflite] == root and not any(b.record.get("split") == split for b in matched[m.tflite])
                ]
                if not todo:
                    continue
                echo(f"kdtool bench on the {split} split ({len(todo)} model(s), no latency) ...", err=True)
                records, bench_notes = bench_split([m.tflite for m in todo], root, split, class_of_concern, bootstrap)
                notes += bench_notes
                for m, rec in zip(todo, records, strict=True):
                    matched[m.tflite].append(BenchRecord(rec, "kdtool bench, run by kdtool report", "run here"))
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
    command = _command_line(folder, data, out, bench_files, run_bench, class_of_concern, bootstrap)
    written = []
    for m in models:
        run, root = runs[m.tflite], roots[m.tflite]
        measured = collect(matched[m.tflite], facts[root].counts)
        path = card_path(m, out)
        records = {s: b.record for s, b in measured.splits.items()}
        drawn, note = draw(records, path.parent, m.stem, concern_name(records))
        if note:
            notes.append(note)
        card = CardInput(m, run, facts[root], measured, path, drawn, run_plots(run.folder if run else None, m.name))
        written.append(write_card(card, command))
        echo(f"wrote {path}")
    for line in dict.fromkeys(notes):
        echo(f"note: {line}", err=True)
    return written


@click.command(context_settings=_CTX)
@click.argument("folder", metavar="DIR")
@click.option(
    "--data", metavar="DIR", help="FData folder (default: the one recorded in the export sidecar or run.json)."
)
@click.option("--out", metavar="DIR", help="Folder for the cards and their plots (default: beside each model).")
@click.option(
    "--bench",
    "bench_files",
    multiple=True,
    metavar="FILE.json",
    help="A kdtool bench JSON whose records are matched to the models (repeatable); latency comes only from these.",
)
@click.option(
    "--run-bench/--no-run-bench",
    default=True,
    show_default=True,
    help="Run kdtool bench (accuracy and intervals, no latency) for a validation or test record no --bench file gives.",
)
@click.option(
    "--class-of-concern",
    metavar="NAME",
    help="Class whose sensitivity at fixed specificities the bench runs report (default: mel or melanoma).",
)
@click.option(
    "--bootstrap",
    type=click.IntRange(min=0),
    default=None,
    metavar="N",
    help="Bootstrap resamples for the intervals of the bench runs made here (default: bench's own).",
)
def report_command(folder, data, out, bench_files, run_bench, class_of_concern, bootstrap) -> None:
    """Write a model card in the Hugging Face layout beside each exported model, without TensorFlow.

    \b
    The card is <model>.MODEL_CARD.md. DIR is an export folder (.tflite
    files with their sidecars) or a kdtool distill run folder whose export/
    holds them. Each card gives the model, its intended use and limits, the
    data (source, split, counts per class), the recipe (run.json), metrics
    with 95% intervals on validation and test, the operating point,
    calibration, size and latency (from --bench files), and links to
    <model>.roc.png, <model>.reliability.png and the run's own plots.
    Metrics come from --bench records, else from kdtool bench run here.

    \b
    Examples:
      kdtool report models
      kdtool report models/export --bench pi4.json --data FData
    """
    write_reports(folder, data, out, bench_files, run_bench, class_of_concern, bootstrap)
