"""What a model card is made of, gathered from files: exported models, their run folder, their data.

* :func:`find_models`: the ``.tflite`` files of an export folder (or of a run folder's ``export/``)
  with their JSON sidecars, each sidecar checked against its file's SHA-256.
* :func:`find_run`: the ``kdtool distill`` run folder a model came from (its ``run.json``).
* :func:`resolve_data` and :func:`data_facts`: the data folder and what the card says about it
  (source, licence, split method, images per class per split, lesions).

Nothing here imports TensorFlow or another kdtool subpackage.

Example:
    >>> license_id({"dataset": "HAM10000, 7 classes, split by lesion"}), license_id({"dataset": "mine"})
    ('cc-by-nc-sa-4.0', 'unknown')
    >>> facts = data_facts(resolve_data("FData", None, None))  # doctest: +SKIP
    >>> facts.counts["test"]                                     # doctest: +SKIP
    [66, 103, 220, 20, 189, 1087, 19]
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from kdtool.data import load_fdata, sha256_file
from kdtool.errors import InputError
from kdtool.folds import GROUPS_FILE, read_groups

#: Splits of an FData folder, in the order the card lists them.
SPLITS = ("train", "val", "test")
#: Words that mark data as HAM10000 images (DermaMNIST is HAM10000 resized), whose licence is known.
HAM_WORDS = ("ham10000", "dermamnist")
HAM_LICENSE = "cc-by-nc-sa-4.0"
HAM_LICENSE_TEXT = (
    "HAM10000 images: CC BY-NC-SA 4.0 (Tschandl et al., Scientific Data 5, 180161, 2018); "
    "non-commercial use, share alike"
)


def read_json(path: Path, what: str) -> dict | list:
    """A JSON file, or one line naming it.

    Args:
        path: the file.
        what: what it should be, for the message (``export sidecar``, ``run.json``).

    Returns:
        The parsed document.

    Raises:
        InputError: unreadable or not JSON.

    Example:
        >>> read_json(Path("no-such.json"), "export sidecar")  # doctest: +SKIP
        Error: no-such.json: unreadable export sidecar (...)
    """
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise InputError(f"{path}: unreadable {what} ({exc})") from None


@dataclass
class ExportedModel:
    """One exported ``.tflite`` and its sidecar.

    Args:
        tflite: the model file.
        sidecar_path: its ``<name>.<mode>.json``.
        sidecar: the parsed sidecar.
        sha256: the model file's SHA-256.
        size_bytes: its size.
    """

    tflite: Path
    sidecar_path: Path
    sidecar: dict
    sha256: str
    size_bytes: int

    @property
    def stem(self) -> str:
        """The file name without ``.tflite`` (``student.int8``): the card and plots are named after it."""
        return self.tflite.name[: -len(".tflite")]

    @property
    def name(self) -> str:
        """The model's name in its run (the sidecar's ``name``)."""
        return str(self.sidecar.get("name") or self.stem.split(".")[0])


def _load_model(tflite: Path) -> ExportedModel | None:
    side_path = tflite.with_suffix(".json")
    if not side_path.is_file():
        return None
    side = read_json(side_path, "export sidecar")
    if not isinstance(side, dict):
        raise InputError(f"{side_path}: not an export sidecar (expected a JSON object)")
    digest = sha256_file(tflite)
    recorded = side.get("sha256")
    if recorded is None:
        raise InputError(f"{side_path}: records no sha256, so it cannot be matched to {tflite.name}; export again")
    if recorded != digest:
        raise InputError(
            f"{side_path}: its sha256 does not match {tflite.name} (the model was changed after export); export again"
        )
    return ExportedModel(tflite, side_path, side, digest, tflite.stat().st_size)


def export_folder(folder: Path) -> Path:
    """The folder whose ``.tflite`` files are reported: ``folder``, or a run folder's ``export/``.

    Args:
        folder: ``kdtool report``'s argument.

    Returns:
        The folder holding the models.

    Raises:
        InputError: no such folder.

    Example:
        >>> export_folder(Path("models"))  # doctest: +SKIP
        PosixPath('models/export')
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(f"{folder}: folder not found (expected an export folder or a kdtool distill run folder)")
    if not any(folder.glob("*.tflite")) and (folder / "run.json").is_file() and (folder / "export").is_dir():
        return folder / "export"
    return folder


def find_models(folder: Path) -> tuple[list[ExportedModel], list[str]]:
    """The exported models of an export folder or run folder, sidecars checked.

    Args:
        folder: ``kdtool report``'s argument.

    Returns:
        (models sorted by file name, notes about ``.tflite`` files without a sidecar).

    Raises:
        InputError: no exported model there, or a sidecar unreadable or not matching its file.

    Example:
        >>> models, notes = find_models(Path("models/export"))  # doctest: +SKIP
        >>> [m.stem for m in models]                             # doctest: +SKIP
        ['student_t.float32', 'student_t.int8']
    """
    where = export_folder(folder)
    models, notes = [], []
    for tflite in sorted(p for p in where.glob("*.tflite") if p.is_file()):
        model = _load_model(tflite)
        if model is None:
            notes.append(f"{tflite}: no sidecar {tflite.with_suffix('.json').name} (not exported by kdtool); skipped")
        else:
            models.append(model)
    if not models:
        raise InputError(f"{where}: no exported models (.tflite files with their kdtool export .json sidecars)")
    return models, notes


@dataclass
class RunInfo:
    """A ``kdtool distill`` run folder.

    Args:
        folder: the folder.
        doc: its parsed ``run.json``.
    """

    folder: Path
    doc: dict

    def model_record(self, name: str) -> dict | None:
        """run.json's record of model ``name`` (file, SHA-256, metrics, training time), or None."""
        for rec in self.doc.get("models") or []:
            if isinstance(rec, dict) and rec.get("name") == name:
                return rec
        return None


def find_run(model: ExportedModel, folder: Path) -> RunInfo | None:
    """The run folder a model was exported from, when its ``run.json`` can be found.

    Looked for in: ``folder`` (a run folder given to ``kdtool report``), the export folder's parent,
    and the folder of the ``.keras`` file the sidecar names.

    Args:
        model: the exported model.
        folder: ``kdtool report``'s argument.

    Returns:
        The run, or None.

    Raises:
        InputError: a run.json that is not a JSON object.

    Example:
        >>> find_run(model, Path("models")).doc["config"]["epochs"]  # doctest: +SKIP
        120
    """
    source = (model.sidecar.get("source") or {}).get("path")
    candidates = [Path(folder), model.tflite.parent.parent]
    if source:
        candidates.append(Path(source).parent)
    for cand in candidates:
        path = cand / "run.json"
        if path.is_file():
            doc = read_json(path, "run.json")
            if not isinstance(doc, dict):
                raise InputError(f"{path}: not a kdtool run record (expected a JSON object)")
            return RunInfo(cand, doc)
    return None


def resolve_data(given: str | None, model: ExportedModel | None, run: RunInfo | None) -> Path:
    """The data folder of a model's card: ``--data``, else the sidecar's, else run.json's data path.

    A recorded relative path is tried as given, then from the run folder, its parent and the export folder.

    Args:
        given: ``--data``, or None.
        model: the exported model (its sidecar's ``data.path``), or None.
        run: its run, or None.

    Returns:
        The folder (not yet validated when given by ``--data``).

    Raises:
        InputError: no data path is known, or the recorded one is not found.

    Example:
        >>> resolve_data("FData", None, None)
        PosixPath('FData')
    """
    if given:
        return Path(given)
    recorded = ((model.sidecar if model else {}).get("data") or {}).get("path")
    source = model.sidecar_path if model else None
    if not recorded and run is not None:
        recorded, source = (run.doc.get("data") or {}).get("path"), run.folder / "run.json"
    if not recorded:
        raise InputError(f"{source or 'the export'}: records no data folder; give --data")
    path = Path(recorded)
    candidates = [path]
    if not path.is_absolute():
        bases = ([run.folder, run.folder.parent] if run else []) + ([model.tflite.parent] if model else [])
        candidates += [b / path for b in bases]
    for cand in candidates:
        if cand.is_dir():
            return cand
    raise InputError(f"{recorded}: data folder not found (recorded in {source}); give --data")


def license_id(info: dict) -> str:
    """The card's ``license`` for data described by ``dataset_info.json``: HAM10000's, else ``unknown``.

    Args:
        info: the data folder's ``dataset_info.json`` (empty without one).

    Returns:
        ``cc-by-nc-sa-4.0`` for HAM10000 or DermaMNIST images, ``unknown`` otherwise.

    Example:
        >>> license_id({"dataset": "DermaMNIST (MedMNIST v2), HAM10000 images"})
        'cc-by-nc-sa-4.0'
    """
    text = f"{info.get('dataset', '')} {info.get('source', '')}".lower()
    return HAM_LICENSE if any(w in text for w in HAM_WORDS) and not info.get("synthetic") else "unknown"


@dataclass
class DataFacts:
    """What the card says about the data.

    Args:
        root: the folder.
        class_names: K names.
        counts: split -> images per class.
        image_shape: (H, W, C).
        fingerprint: :meth:`kdtool.data.FData.fingerprint`.
        info: ``dataset_info.json`` (empty without one).
        lesions: split -> distinct lesions (``image_ids.csv``), None without that file.
        shared_lesions: lesions with images in more than one split (None without ``image_ids.csv``).
    """

    root: Path
    class_names: list[str]
    counts: dict[str, list[int]]
    image_shape: tuple[int, ...]
    fingerprint: str
    info: dict = field(default_factory=dict)
    lesions: dict[str, int] | None = None
    shared_lesions: int | None = None

    @property
    def dataset(self) -> str:
        """The dataset's name (dataset_info.json's ``dataset``), else the folder's name."""
        return str(self.info.get("dataset") or self.root.name)

    @property
    def synthetic(self) -> bool:
        return bool(self.info.get("synthetic"))

    @property
    def is_ham(self) -> bool:
        return license_id(self.info) == HAM_LICENSE

    @property
    def license(self) -> str:
        return license_id(self.info)

    @property
    def license_text(self) -> str:
        """The licence in words: dataset_info.json's ``licence``, HAM10000's, or unknown."""
        given = self.info.get("licence") or self.info.get("license")
        if given:
            return str(given)
        return HAM_LICENSE_TEXT if self.is_ham else "unknown (the data folder does not say)"

    @property
    def split_method(self) -> str:
        """How the splits were made, in one sentence, from ``image_ids.csv`` and ``dataset_info.json``."""
        if self.lesions is None:
            told = str(self.info.get("dataset", "")) + " " + str(self.info.get("note", ""))
            said = " (dataset_info.json: image-level split)" if "image-level" in told.lower() else ""
            return (
                f"not grouped by lesion as far as kdtool can tell (no {GROUPS_FILE}){said}: near-copies of one "
                "lesion may sit in two splits, which makes validation and test numbers optimistic"
            )
        if self.shared_lesions:
            return (
                f"{GROUPS_FILE} names lesions, but {self.shared_lesions} lesion(s) have images in more than one "
                "split: validation and test numbers are optimistic"
            )
        return f"by lesion ({GROUPS_FILE}): no lesion has images in two splits"


def data_facts(root: Path) -> DataFacts:
    """Read a data folder's facts for the card (labels only: the images are memory-mapped).

    Args:
        root: an FData folder with train, val and test.

    Returns:
        The :class:`DataFacts`.

    Raises:
        InputError: a missing or malformed file (one line naming it).

    Example:
        >>> data_facts(Path("FData")).split_method  # doctest: +SKIP
        'by lesion (image_ids.csv): no lesion has images in two splits'
    """
    root = Path(root)
    fd = load_fdata(root, splits=SPLITS, mmap=True)
    info_path = root / "dataset_info.json"
    info = read_json(info_path, "dataset_info.json") if info_path.is_file() else {}
    lesions = shared = None
    if (root / GROUPS_FILE).is_file():
        seen: dict[str, set[str]] = {}
        lesions = {}
        for split in SPLITS:
            ids = read_groups(root, split, len(fd.labels(split)))
            unique = set(ids.tolist()) if ids is not None else set()
            lesions[split] = len(unique)
            for lesion in unique:
                seen.setdefault(lesion, set()).add(split)
        shared = sum(1 for s in seen.values() if len(s) > 1)
    return DataFacts(
        root=root,
        class_names=list(fd.class_names),
        counts={s: fd.class_counts(s).tolist() for s in SPLITS},
        image_shape=tuple(fd.image_shape),
        fingerprint=fd.fingerprint(),
        info=info if isinstance(info, dict) else {},
        lesions=lesions,
        shared_lesions=shared,
    )


def short_sha(digest: str | None) -> str:
    """The first 12 hex digits of a SHA-256, for prose.

    Example:
        >>> short_sha("e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"), short_sha(None)
        ('e3b0c44298fc', 'unknown')
    """
    return digest[:12] if digest else "unknown"
