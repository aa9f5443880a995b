"""What to export: one ``.keras`` file, or the models of a ``kdtool distill`` run folder (no TensorFlow).

A run folder holds ``run.json`` whose ``models`` list names each model's
``file``, ``role`` (teacher, student, ensemble, baseline) and ``teacher``.
Students (roles student, ensemble and baseline) are exported; teachers only
when asked.

Example:
    >>> plan = plan_export("models", include_teachers=False)   # doctest: +SKIP
    >>> [s.name for s in plan.sources]                          # doctest: +SKIP
    ['student_alone', 'student_vgg16']
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from kdtool.errors import InputError
from kdtool.roles import ROLES, STUDENT_ROLES


@dataclass
class ExportSource:
    """One model to export.

    Args:
        name: output base name (``<name>.<mode>.tflite``).
        path: the ``.keras`` file.
        role: teacher / student / ensemble / baseline, or None for a lone file.
        teacher: the teacher's name (``a+b`` for an ensemble), or None.
        sha256: the digest run.json recorded for the file, if any.
        calibration: run.json's ``calibration`` record of the model (out-of-fold logits from
            ``kdtool distill --calibration-folds``), with ``path`` resolved; None without one.
    """

    name: str
    path: Path
    role: str | None = None
    teacher: str | None = None
    sha256: str | None = None
    calibration: dict | None = None

    def teachers(self) -> list[str]:
        """The teacher names (an ensemble lists several, joined by ``+``)."""
        return [t for t in (self.teacher or "").split("+") if t]


@dataclass
class ExportPlan:
    """Everything resolved from the positional argument (no TensorFlow, no data loaded).

    Attributes:
        sources: models to export, teachers first.
        run_dir: the run folder, or None for a lone ``.keras`` file.
        run: the parsed run.json (empty for a lone file).
        default_out: where files go without ``--out``.
        teacher_files: every teacher name in run.json -> its ``.keras`` path (exported or not).
        warnings: non-fatal problems found (printed by the CLI).
    """

    sources: list[ExportSource]
    run_dir: Path | None
    run: dict
    default_out: Path
    teacher_files: dict[str, Path] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)

    def data_path(self) -> str | None:
        """run.json's ``data.path`` when it exists on disk (as given, or relative to the run folder)."""
        path = (self.run.get("data") or {}).get("path")
        if not path or self.run_dir is None:
            return None
        for cand in (Path(path), self.run_dir / path, self.run_dir.parent / path):
            if cand.is_dir():
                return str(cand)
        return None


def read_run_json(run_dir: Path) -> dict:
    """Parse and sanity-check ``run_dir/run.json`` (InputError in one line)."""
    path = run_dir / "run.json"
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise InputError(f"{path}: unreadable run.json ({exc})") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("models"), list):
        raise InputError(f"{path}: not a kdtool run file (no 'models' list)")
    for i, rec in enumerate(doc["models"]):
        if not isinstance(rec, dict) or not isinstance(rec.get("name"), str) or not isinstance(rec.get("file"), str):
            raise InputError(f"{path}: models[{i}] lacks a name or file")
        if rec.get("role") not in ROLES:
            raise InputError(f"{path}: model {rec['name']!r} has unknown role {rec.get('role')!r}")
        if os.sep in rec["file"] or "/" in rec["file"] or rec["file"].startswith("."):
            raise InputError(
                f"{path}: model {rec['name']!r} file {rec['file']!r} must be a plain file name in the run folder"
            )
    return doc


def plan_export(target: str | os.PathLike, include_teachers: bool = False) -> ExportPlan:
    """Resolve the positional argument of ``kdtool export``.

    Args:
        target: a ``.keras`` file or a run folder (with run.json).
        include_teachers: also export the run's teachers.

    Returns:
        An :class:`ExportPlan`.

    Raises:
        InputError: missing path, a folder without run.json, an empty run, a model file missing.
    """
    from kdtool.export.convert import check_model_path  # lazy: this module stays light

    target = Path(target)
    if not target.exists():
        raise InputError(f"{target}: file not found")
    if not target.is_dir():
        path = check_model_path(target)
        return ExportPlan([ExportSource(path.stem, path)], None, {}, path.resolve().parent)
    if not (target / "run.json").is_file():
        check_model_path(target)  # raises the SavedModel / not-a-run-folder line
    run = read_run_json(target)
    plan = ExportPlan([], target, run, target / "export")
    status = run.get("status")
    if status != "FINISHED":
        plan.warnings.append(f"{target}/run.json: status is {status}, not FINISHED; exporting the models it has")
    teachers, students = [], []
    for rec in run["models"]:
        path = target / rec["file"]
        if rec["role"] == "teacher":
            plan.teacher_files[rec["name"]] = path
        if rec["role"] == "teacher" and not include_teachers:
            continue
        if not path.is_file():
            raise InputError(f"{path}: listed in run.json ({rec['name']}) but the file is missing")
        cal = rec.get("calibration")
        if isinstance(cal, dict) and isinstance(cal.get("file"), str) and cal["file"]:
            rel = Path(cal["file"])
            if rel.is_absolute() or ".." in rel.parts:
                raise InputError(
                    f"{target}/run.json: model {rec['name']!r} calibration file {cal['file']!r} must lie "
                    "inside the run folder"
                )
            cal = {**cal, "path": str(target / rel)}
        else:
            cal = None
        src = ExportSource(rec["name"], check_model_path(path), rec["role"], rec.get("teacher"), rec.get("sha256"), cal)
        (teachers if rec["role"] == "teacher" else students).append(src)
    plan.sources = teachers + students
    if not plan.sources:
        raise InputError(
            f"{target}/run.json: lists no model to export (student roles: {', '.join(STUDENT_ROLES)}; "
            "teachers need --include-teachers)"
        )
    return plan
