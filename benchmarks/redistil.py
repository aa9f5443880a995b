"""Retrain only the distilled students of finished ``kdtool distill`` runs, with other distillation settings.

For each run (``--runs``), a hard-linked copy at ``--work``/s<seed> keeps the run's teachers and its student
alone, forgets its distilled students, and records the changed settings (``--set KEY=VALUE``) in the copy's
run.json. The run's own ``kdtool distill`` command then runs in the copy with those settings added: only the
distilled students train (each kept teacher recomputes its cached logits). The run folder itself is never
touched: the copy's run.json is a new file, and kdtool replaces the other files atomically, never in place.

Only settings that change nothing but the distilled students can be set (``SETTABLE``); the student alone
and the teachers of the copy are then exactly those of the run, so the copy pairs with it seed by seed.
``select_best=false`` (``--last-epoch``) is settable on that condition too: the copy's distilled students keep
their last epoch, and its student alone and teachers stay those the run kept. It is refused when a teacher of
the run kept an epoch other than its last, since the copy's teachers would then not be what the setting says.

    python benchmarks/redistil.py --runs R9,R10 --seeds 9,10 --set kd_balance=weights --work runs/bkd

``--retrain-alone`` forgets the student alone too (also in a copy made earlier without it, as long as the
copy's student alone is still the run's file), so that a setting every student reads (``select_best``) is
compared with the student alone trained the same way; the teachers stay the run's.

A copy that exists is reused (kdtool skips its finished models), so a re-run finishes or rebuilds nothing.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shlex
import shutil
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path[:0] = [str(ROOT), str(HERE)]

from calibrated_floor import linked_copy, runs_and_seeds  # noqa: E402
from recipes import run_logged  # noqa: E402

from kdtool.data import atomic_write_text  # noqa: E402

SETTABLE = ("alpha", "temperature", "kd_balance", "select_best")  # fields the copy applies to its distilled students
# boolean settings: (flag when true, flag when false) of kdtool distill
BOOL_FLAGS = {"select_best": ("--select-best", "--last-epoch")}
TRUE, FALSE = ("true", "1", "yes"), ("false", "0", "no")


def parse_settings(pairs: list[str]) -> dict:
    """``KEY=VALUE`` strings -> {DistillConfig field: value of the field's type}.

    Raises:
        ValueError: a malformed pair, a key outside ``SETTABLE`` or a value of the wrong type (the message names it).

    Example:
        >>> parse_settings(["kd_balance=weights", "alpha=0.3", "select_best=false"])
        {'kd_balance': 'weights', 'alpha': 0.3, 'select_best': False}
    """
    from kdtool.distill.train import DistillConfig

    defaults = {f.name: f.default for f in dataclasses.fields(DistillConfig)}
    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or key not in SETTABLE:
            raise ValueError(f"--set {pair!r}: expected KEY=VALUE with KEY one of {', '.join(SETTABLE)}")
        try:
            if isinstance(defaults[key], bool):
                if value.lower() not in TRUE + FALSE:
                    raise ValueError(value)
                out[key] = value.lower() in TRUE
            else:
                out[key] = type(defaults[key])(value)
        except ValueError:
            raise ValueError(f"--set {pair!r}: {value!r} is not a {type(defaults[key]).__name__}") from None
    return out


def _forget_alone(run: Path, work: Path, names: set[str]) -> None:
    # an existing copy made without --retrain-alone: drop its students alone that are still the run's own files
    still = {n for n in names if (work / f"{n}.keras").is_file() and (run / f"{n}.keras").is_file()
             and os.path.samefile(work / f"{n}.keras", run / f"{n}.keras")}
    if not still:
        return
    doc = json.loads((work / "run.json").read_text())
    doc["models"] = [m for m in doc["models"] if m["name"] not in still]
    for n in still:
        (work / f"{n}.keras").unlink()
        shutil.rmtree(work / n, ignore_errors=True)
    atomic_write_text(work / "run.json", json.dumps(doc, indent=2))


def prepare(run: Path, work: Path, settings: dict, retrain_alone: bool = False) -> list[str]:
    """Make ``work`` (unless it exists) and return the ``kdtool distill`` arguments that finish it.

    Args:
        run: a finished kdtool distill run folder.
        work: the copy to create: ``run``'s files hard-linked, without its distilled students, exports,
            epoch backups, calibration folds or logs, and a new run.json with ``settings`` in its config.
        settings: from :func:`parse_settings`.
        retrain_alone: forget the student alone too (in an existing copy only while it is still the run's file).

    Returns:
        ``["distill", ...]``: the run's own command with ``--out work``, its recorded boolean settings
        (``BOOL_FLAGS``) spelled out, and ``settings`` as options.
    """
    doc = json.loads((run / "run.json").read_text())
    students = {m["name"] for m in doc["models"] if m["role"] == "student"}
    alone = {m["name"] for m in doc["models"] if m["role"] == "baseline"} if retrain_alone else set()
    if settings.get("select_best") is False:  # a teacher that kept its last epoch records None or its epochs
        early = [m["name"] for m in doc["models"]
                 if m["role"] == "teacher" and m.get("best_epoch") not in (None, m.get("epochs"))]
        if early:
            raise ValueError(f"{run}: select_best=false would leave teachers that kept an earlier epoch than their "
                             f"last: {', '.join(early)}")
    if settings.get("select_best") is True and doc["config"].get("select_best") is False:
        raise ValueError(f"{run}: select_best=true would record a best-epoch choice its teachers never made (the run "
                         "kept every model's last epoch)")
    forgotten = students | alone
    if not work.exists():
        linked_copy(run, work, "summary.csv", "*.log", *forgotten, *(f"{s}.keras" for s in forgotten))
        (work / "run.json").unlink()  # a hard link to the run's own record: write a new file instead
        new = {**doc, "config": {**doc["config"], **settings},
               "models": [m for m in doc["models"] if m["name"] not in forgotten]}
        (work / "run.json").write_text(json.dumps(new, indent=2))
    elif alone:
        _forget_alone(run, work, alone)
    argv = shlex.split(doc["command"])
    args, rest = [], argv[argv.index("distill"):]
    while rest:  # the run's own arguments without its --out (either spelling)
        a = rest.pop(0)
        if a == "--out":
            rest.pop(0)
        elif not a.startswith("--out="):
            args.append(a)
    args += ["--out", str(work)]
    # the run's own boolean settings spelled out: its command may predate a change of their default
    recorded = {k: doc["config"][k] for k in BOOL_FLAGS if k in doc["config"]}
    for key, value in {**recorded, **settings}.items():
        if key in BOOL_FLAGS:
            args.append(BOOL_FLAGS[key][0 if value else 1])
        else:
            args += [f"--{key.replace('_', '-')}", f"{value:g}" if isinstance(value, float) else str(value)]
    return args


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", required=True, help="comma-separated finished kdtool distill runs, one per seed")
    ap.add_argument("--seeds", required=True, help="comma-separated seeds of those runs (names the copies)")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help=f"a distillation setting to change, repeatable; KEY one of {', '.join(SETTABLE)}")
    ap.add_argument("--work", required=True, help="folder for the copies (s<seed> each)")
    ap.add_argument("--retrain-alone", action="store_true",
                    help="retrain the student alone too (for settings every student reads, e.g. select_best)")
    args = ap.parse_args(argv)
    runs, seeds = runs_and_seeds(ap, args)
    if not args.set:
        ap.error("give at least one --set KEY=VALUE")
    try:
        settings = parse_settings(args.set)
    except ValueError as exc:
        ap.error(str(exc))
    for run, seed in zip(runs, seeds):
        work = Path(args.work) / f"s{seed}"
        work.parent.mkdir(parents=True, exist_ok=True)
        try:
            distill_args = prepare(run, work, settings, args.retrain_alone)
        except ValueError as exc:
            ap.error(str(exc))
        seconds = run_logged(distill_args, work.parent / f"s{seed}.log", f"redistil seed {seed}")
        print(f"  seed {seed}: {seconds:.0f} s ({work})", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
