"""Where a user's images and labels come from: class subfolders, or a folder and a labels table.

Two layouts are read (no TensorFlow, no pandas):

- **class subfolders** ``SRC/<class>/*.jpg`` (the ``keras.utils.image_dataset_from_directory``
  convention): the folder name is the label, every image is its own group;
- **a labels table** (CSV) with one row per image: ``--image-column`` names the file (an id without an
  extension is looked up as ``SRC/<id>.jpg``, ``.jpeg`` or ``.png``; a relative path is taken from
  ``SRC``), ``--label-column`` the class and, optionally, ``--group-column`` the lesion or patient the
  image shows. The table's other columns are kept, so metrics can later be sliced by them.

Any problem with the table itself (a missing column, an empty label, a duplicate image, a file the table
names but the folder lacks) is one :class:`~kdtool.errors.InputError` naming the file and the row.

Example:
    >>> import tempfile
    >>> src = Path(tempfile.mkdtemp())
    >>> for name in ("nv/a.jpg", "nv/b.png", "mel/c.jpg"):
    ...     (src / name).parent.mkdir(exist_ok=True); _ = (src / name).write_bytes(b"x")
    >>> listing = from_class_folders(src)
    >>> [(i.rel, i.label) for i in listing.items]
    [('mel/c.jpg', 'mel'), ('nv/a.jpg', 'nv'), ('nv/b.png', 'nv')]
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path

from kdtool.errors import InputError
from kdtool.images import IMAGE_SUFFIXES

#: Columns kdtool writes into image_ids.csv itself; a table's own column of that name is kept as ``table_<name>``.
RESERVED_COLUMNS = ("split", "position", "file", "group", "label", "lesion_id")

#: Extensions tried, in this order, for an image id given without one.
ID_SUFFIXES = (".jpg", ".jpeg", ".png", ".JPG", ".JPEG", ".PNG")


@dataclass
class Item:
    """One image of the source.

    Attributes:
        path: the file.
        rel: its path relative to the source folder (POSIX separators), as written to image_ids.csv.
        label: its class name.
        group: its lesion or patient id; None when the source names none.
        extra: the table's other columns for this row (empty for class folders).
    """

    path: Path
    rel: str
    label: str
    group: str | None = None
    extra: dict = field(default_factory=dict)


@dataclass
class Listing:
    """Everything a source names.

    Attributes:
        items: the images, in a stable order.
        source: a description for dataset_info.json (layout, folder, table, columns).
        extra_columns: names of the table's other columns (the keys of ``Item.extra``).
        grouped: True when a group column names each image's lesion or patient.
    """

    items: list[Item]
    source: dict
    extra_columns: list[str]
    grouped: bool


def _is_image(p: Path) -> bool:
    return p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith(".")


def from_class_folders(src: str | Path) -> Listing:
    """List ``src/<class>/*`` images; the subfolder's name is the label.

    Args:
        src: a folder with one subfolder per class.

    Returns:
        A :class:`Listing` without groups, sorted by class then file.

    Raises:
        InputError: ``src`` is not a folder, or has no class subfolder with an image.
    """
    src = Path(src)
    if not src.is_dir():
        raise InputError(f"{src}: not a folder")
    items = []
    for sub in sorted(p for p in src.iterdir() if p.is_dir() and not p.name.startswith(".")):
        for f in sorted(p for p in sub.rglob("*") if _is_image(p)):
            items.append(Item(f, f.relative_to(src).as_posix(), sub.name))
    if not items:
        raise InputError(f"{src}: no images in class subfolders (expected SRC/<class>/*.jpg, or pass --labels TABLE)")
    return Listing(items, {"layout": "class folders", "folder": str(src)}, [], grouped=False)


def _resolve(src: Path, name: str) -> Path | None:
    p = src / name
    if p.suffix and p.is_file():
        return p
    for suffix in ID_SUFFIXES:
        q = src / (name + suffix)
        if q.is_file():
            return q
    return p if p.is_file() else None


def from_table(
    src: str | Path,
    table: str | Path,
    image_column: str = "image_id",
    label_column: str = "dx",
    group_column: str | None = None,
) -> Listing:
    """List the images a CSV labels table names, with their labels, groups and other columns.

    Args:
        src: the folder the table's image ids or relative paths point into.
        table: the CSV file (a header row, then one row per image).
        image_column: the column naming each image (an id without extension, or a relative path).
        label_column: the column with each image's class.
        group_column: the column naming each image's lesion or patient (None: every image alone).

    Returns:
        A :class:`Listing` in the table's row order.

    Raises:
        InputError: a missing column, an empty label or image cell, a duplicate image, or an image the
            folder lacks (one line naming the table and the row).

    Example:
        >>> import tempfile
        >>> src = Path(tempfile.mkdtemp()); _ = (src / "ISIC_1.jpg").write_bytes(b"x")
        >>> _ = (src / "meta.csv").write_text("lesion_id,image_id,dx,age\\nL1,ISIC_1,mel,45\\n")
        >>> it = from_table(src, src / "meta.csv", group_column="lesion_id").items[0]
        >>> it.rel, it.label, it.group, it.extra
        ('ISIC_1.jpg', 'mel', 'L1', {'age': '45'})
    """
    src, table = Path(src), Path(table)
    if not src.is_dir():
        raise InputError(f"{src}: not a folder")
    if not table.is_file():
        raise InputError(f"{table}: labels table not found")
    try:
        with open(table, newline="", encoding="utf-8-sig") as fh:
            reader = csv.DictReader(fh)
            columns = [c for c in (reader.fieldnames or []) if c is not None]
            wanted = [c for c in (image_column, label_column, group_column) if c]
            missing = [c for c in wanted if c not in columns]
            if missing:
                raise InputError(
                    f"{table}: no column {', '.join(map(repr, missing))} (columns: {', '.join(columns) or 'none'})"
                )
            rows = list(reader)
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise InputError(f"{table}: unreadable as CSV ({exc})") from None
    kept = [c for c in columns if c not in (image_column, label_column, group_column)]
    renamed = {c: f"table_{c}" for c in kept if c in RESERVED_COLUMNS}  # never shadow image_ids.csv's own columns
    extra_columns = [renamed.get(c, c) for c in kept]
    items, seen = [], {}
    for line, row in enumerate(rows, start=2):  # line 1 is the header
        name = (row.get(image_column) or "").strip()
        label = (row.get(label_column) or "").strip()
        if not name:
            raise InputError(f"{table}: line {line}: empty {image_column!r}")
        if not label:
            raise InputError(f"{table}: line {line}: image {name!r} has no label in column {label_column!r}")
        if name in seen:
            raise InputError(f"{table}: line {line}: image {name!r} is listed twice (first on line {seen[name]})")
        seen[name] = line
        path = _resolve(src, name)
        if path is None:
            raise InputError(f"{table}: line {line}: image {name!r} not found in {src} (tried {name}, {name}.jpg, ...)")
        group = (row.get(group_column) or "").strip() if group_column else None
        if group_column and not group:
            raise InputError(f"{table}: line {line}: image {name!r} has no group in column {group_column!r}")
        extra = {renamed.get(c, c): (row.get(c) or "") for c in kept}
        try:
            rel = path.resolve().relative_to(src.resolve()).as_posix()
        except ValueError:  # an absolute path or ../ outside the folder: recorded as given
            rel = str(path)
        items.append(Item(path, rel, label, group, extra))
    if not items:
        raise InputError(f"{table}: no rows")
    source = {
        "layout": "labels table",
        "folder": str(src),
        "table": str(table),
        "image_column": image_column,
        "label_column": label_column,
        "group_column": group_column,
        "renamed_columns": renamed,
    }
    return Listing(items, source, extra_columns, grouped=bool(group_column))
