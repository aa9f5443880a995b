"""The bench records a model card quotes: from ``--bench`` JSON files, else from ``kdtool bench`` run here.

A record of a ``--bench`` file belongs to an exported model when its ``sha256`` is the model's, or its
``path`` is the model's file, or (a file benchmarked on another machine) its ``model`` file name and
``size_bytes`` are the model's; the card says which. Validation and test records without a given one
come from ``kdtool bench MODEL --split S --runs 0`` in a child process (accuracy and intervals, no
latency), so this module never imports the bench code. Latency comes only from given records.

Example:
    >>> rec = {"model": "s.int8.tflite", "path": "/elsewhere/s.int8.tflite", "size_bytes": 10}
    >>> match_how(rec, "s.int8.tflite", "models/export/s.int8.tflite", 10, "ab12")
    'file name and size'
    >>> match_how({**rec, "sha256": "ff00"}, "s.int8.tflite", "models/export/s.int8.tflite", 10, "ab12") is None
    True
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from kdtool.errors import InputError, RuntimeFailure
from kdtool.report.collect import ExportedModel, read_json

#: The splits a card reports, in order.
CARD_SPLITS = ("val", "test")
SPLIT_WORDS = {"train": "train", "val": "validation", "test": "test"}


@dataclass
class BenchRecord:
    """One bench record and where it came from.

    Args:
        record: the JSON object (keys in ``kdtool bench``'s documentation).
        source: the JSON file, or ``kdtool bench (run by kdtool report)``.
        how: how it was matched to the model (``sha256``, ``path``, ``file name and size``, ``run here``).
    """

    record: dict
    source: str
    how: str

    @property
    def has_latency(self) -> bool:
        """Whether the record timed invokes (``--runs`` above 0)."""
        return (self.record.get("latency_ms") or {}).get("median") is not None


@dataclass
class Measured:
    """A model's bench records for its card.

    Args:
        splits: ``val``/``test`` -> the record its metrics come from.
        latency: every matched record that timed the model (one per machine or setting).
        notes: lines for the card about the records (a split's image count that differs from the data's).
    """

    splits: dict[str, BenchRecord] = field(default_factory=dict)
    latency: list[BenchRecord] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def load_bench_files(paths: tuple[str, ...] | list[str]) -> list[tuple[str, dict]]:
    """The records of ``--bench`` files (``kdtool bench --json`` output: a list of objects).

    Args:
        paths: the files.

    Returns:
        (file, record) pairs, in file order.

    Raises:
        InputError: a file unreadable or not a bench JSON (one line naming it).

    Example:
        >>> load_bench_files([])
        []
    """
    out = []
    for p in paths:
        doc = read_json(Path(p), "bench JSON")
        doc = [doc] if isinstance(doc, dict) else doc
        if not isinstance(doc, list) or not all(isinstance(r, dict) and "model" in r for r in doc):
            raise InputError(f"{p}: not a kdtool bench JSON (expected a list of records with a 'model' key)")
        out += [(str(p), r) for r in doc]
    return out


def _same_file(a: str, b: str) -> bool:
    try:
        return Path(a).resolve() == Path(b).resolve()
    except OSError:
        return False


def match_how(rec: dict, name: str, path: str, size: int, sha256: str) -> str | None:
    """How a bench record matches a model, or None when it is another model's.

    Args:
        rec: a bench record.
        name: the model's file name.
        path: the model's path.
        size: its size in bytes.
        sha256: its SHA-256.

    Returns:
        ``sha256``, ``path``, ``file name and size``, or None.

    Example:
        >>> match_how({"model": "a.tflite", "sha256": "ab12"}, "b.tflite", "b.tflite", 1, "ab12")
        'sha256'
    """
    if rec.get("sha256"):
        return "sha256" if rec["sha256"] == sha256 else None
    if rec.get("path") and _same_file(str(rec["path"]), path):
        return "path" if rec.get("size_bytes") in (None, size) else None
    if rec.get("model") == name and rec.get("size_bytes") == size:
        return "file name and size"
    return None


def match_records(given: list[tuple[str, dict]], model: ExportedModel) -> list[BenchRecord]:
    """The given records that belong to ``model`` (see :func:`match_how`).

    Example:
        >>> match_records([], model)  # doctest: +SKIP
        []
    """
    out = []
    for source, rec in given:
        how = match_how(rec, model.tflite.name, str(model.tflite), model.size_bytes, model.sha256)
        if how:
            out.append(BenchRecord(rec, source, how))
    return out


def collect(matched: list[BenchRecord], counts: dict[str, list[int]]) -> Measured:
    """Sort a model's matched records into the card's splits and latency rows.

    For a split with several records the first one with intervals wins (else the first).

    Args:
        matched: from :func:`match_records` (and :func:`run_bench`).
        counts: the data's images per class per split, to flag a record made on other data.

    Returns:
        The :class:`Measured`.

    Example:
        >>> m = collect([BenchRecord({"split": "test", "n_images": 3}, "b.json", "path")], {"test": [1, 1]})
        >>> sorted(m.splits), m.notes
        (['test'], ['b.json: its test record has 3 images, the data folder 2'])
    """
    out = Measured()
    for item in matched:
        split = item.record.get("split")
        if split in CARD_SPLITS:
            held = out.splits.get(split)
            if held is None or (held.record.get("ci95") is None and item.record.get("ci95") is not None):
                out.splits[split] = item
        if item.has_latency:
            out.latency.append(item)
    for split, item in out.splits.items():
        n, want = item.record.get("n_images"), sum(counts.get(split) or [])
        if n is not None and want and n != want:
            out.notes.append(f"{item.source}: its {split} record has {n} images, the data folder {want}")
    return out


def _error_line(stderr: str) -> str:
    lines = [ln.strip() for ln in stderr.splitlines() if ln.strip() and not ln.startswith("note:")]
    line = lines[-1] if lines else "no message"
    return line[len("Error: ") :] if line.startswith("Error: ") else line


def run_bench(
    models: list[Path], data: Path, split: str, class_of_concern: str | None, bootstrap: int | None
) -> tuple[list[dict], list[str]]:
    """Run ``kdtool bench`` on ``models`` for one split, without latency, in a child process.

    Args:
        models: the ``.tflite`` files.
        data: the FData folder.
        split: ``val`` or ``test``.
        class_of_concern: ``--class-of-concern``, or None.
        bootstrap: ``--bootstrap``, or None for bench's default.

    Returns:
        (one record per model, in order; bench's ``note:`` lines).

    Raises:
        InputError: bench refused its input (exit 2), with bench's own line.
        RuntimeFailure: bench failed otherwise.

    Example:
        >>> records, notes = run_bench([Path("s.int8.tflite")], Path("FData"), "val", None, None)  # doctest: +SKIP
        >>> records[0]["split"]                                                                    # doctest: +SKIP
        'val'
    """
    with tempfile.TemporaryDirectory(prefix="kdtool-report-") as tmp:
        out = Path(tmp) / "bench.json"
        cmd = [
            sys.executable,
            "-m",
            "kdtool",
            "bench",
            *map(str, models),
            "--data",
            str(data),
            "--split",
            split,
            "--json",
            str(out),
            "--runs",
            "0",
            "--warmup",
            "0",
        ]
        if class_of_concern:
            cmd += ["--class-of-concern", class_of_concern]
        if bootstrap is not None:
            cmd += ["--bootstrap", str(bootstrap)]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            error = InputError if proc.returncode == 2 else RuntimeFailure
            raise error(f"kdtool bench on the {split} split: {_error_line(proc.stderr)}")
        try:
            records = json.loads(out.read_text())
        except (OSError, ValueError) as exc:
            raise RuntimeFailure(f"kdtool bench on the {split} split wrote no readable JSON ({exc})") from None
    if not isinstance(records, list) or len(records) != len(models):
        raise RuntimeFailure(f"kdtool bench on the {split} split returned {len(records)} records for {len(models)}")
    notes = [ln[len("note: ") :] for ln in proc.stderr.splitlines() if ln.startswith("note: ")]
    return records, notes
