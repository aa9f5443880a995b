"""``kdtool data``: make an FData folder (your own images, DermaMNIST, or a synthetic set) and audit one.

Light install only (numpy, Pillow, click): these commands run on a device as well as on a workstation.

Example:
    >>> from click.testing import CliRunner
    >>> CliRunner().invoke(data, ["images", "--help"]).exit_code
    0
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from kdtool.errors import InputError

#: MedMNIST+ releases of DermaMNIST, by image side.
RELEASE_SIZES = (28, 64, 128, 224)


@click.group()
def data() -> None:
    """Make an FData folder (your own images, DermaMNIST, or synthetic for a dry run), or audit one."""


@data.command("synthetic")
@click.option("--out", default="FData", show_default=True, type=click.Path(file_okay=False), help="Folder to write.")
@click.option("--train", "n_train", default=700, show_default=True, type=click.IntRange(7), help="Training images.")
@click.option("--val", "n_val", default=150, show_default=True, type=click.IntRange(7), help="Validation images.")
@click.option("--test", "n_test", default=150, show_default=True, type=click.IntRange(7), help="Test images.")
@click.option("--seed", default=0, show_default=True, type=int, help="Random seed.")
def data_synthetic(out, n_train, n_val, n_test, seed) -> None:
    """Write a small SYNTHETIC 7-class set (32x32 coloured blobs, not lesions) to try the pipeline offline."""
    from kdtool.datasets import make_synthetic

    make_synthetic(out, n_train, n_val, n_test, seed=seed)
    click.echo(f"wrote SYNTHETIC FData to {out} ({n_train}/{n_val}/{n_test} images, 7 classes)")


@data.command("dermamnist")
@click.option("--out", default="FData", show_default=True, type=click.Path(file_okay=False), help="Folder to write.")
@click.option("--size", default=32, show_default=True, type=click.IntRange(8, 256), help="Output image side.")
@click.option(
    "--source-size",
    type=click.Choice([str(s) for s in RELEASE_SIZES]),
    default=None,
    help="MedMNIST+ release to download (default: the smallest one at least --size wide).",
)
@click.option(
    "--npz",
    type=click.Path(dir_okay=False, exists=True),
    default=None,
    help="Use an already downloaded dermamnist*.npz instead of downloading.",
)
@click.option("--cache", default="~/.cache/kdtool", show_default=True, help="Where the download is kept.")
def data_dermamnist(out, size, source_size, npz, cache) -> None:
    """Download DermaMNIST (MedMNIST v2 and MedMNIST+: 28, 64, 128 or 224 px), verify its MD5 and convert it to
    FData (its split is image-level, so its accuracies are optimistic)."""
    from kdtool.datasets import DERMAMNIST, convert_medmnist_npz, download

    if npz is None:
        release = int(source_size) if source_size else next((s for s in RELEASE_SIZES if s >= size), 224)
        url, md5 = DERMAMNIST[release]
        dest = Path(cache).expanduser() / f"dermamnist_{release}.npz"
        click.echo(f"downloading {url}")
        npz = download(url, dest, md5)
    convert_medmnist_npz(Path(npz), Path(out), size=size)
    click.echo(f"wrote FData to {out} ({size}x{size}, 7 classes)")


@data.command("images")
@click.argument("src", type=click.Path(file_okay=False, path_type=Path))
@click.option("--out", required=True, type=click.Path(path_type=Path), help="FData folder to create (must not exist).")
@click.option(
    "--labels",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="CSV table with one row per image; without it, SRC's subfolders name the classes.",
)
@click.option("--image-column", default="image_id", show_default=True, help="Table column naming each image file.")
@click.option("--label-column", default="dx", show_default=True, help="Table column with each image's class.")
@click.option(
    "--group-column",
    default=None,
    help="Table column naming each image's lesion or patient, kept whole in one split (e.g. lesion_id).",
)
@click.option(
    "--size", default=32, show_default=True, type=click.IntRange(32, 256), help="Side the whole image is resized to."
)
@click.option("--split", "split", default="70,10,20", show_default=True, help="Train, validation and test shares.")
@click.option("--seed", default=0, show_default=True, type=int, help="Seed of the split.")
@click.option("--test-only", is_flag=True, help="Write every image to the test split, to bench a model on them.")
@click.option("--classes", default=None, help="Comma-separated class order (e.g. a model's classes); default sorted.")
@click.option("--strict", is_flag=True, help="Stop with exit code 2 on any unreadable image instead of skipping it.")
def data_images(
    src, out, labels, image_column, label_column, group_column, size, split, seed, test_only, classes, strict
):
    """Turn a folder of JPEG/PNG images into an FData folder, split by lesion or patient when the table names them.

    \b
    Examples:
      kdtool data images photos/ --out FData                      # photos/<class>/*.jpg
      kdtool data images ham/images --labels ham/metadata.csv --group-column lesion_id --size 64 --out FData64
      kdtool data images clinic/ --labels clinic.csv --test-only --classes akiec,bcc,bkl,df,mel,nv,vasc --out ext
    """
    from kdtool.image_sources import from_class_folders, from_table
    from kdtool.imageset import build_fdata
    from kdtool.splits import parse_split

    fractions = parse_split(split)
    if labels is not None:
        listing = from_table(src, labels, image_column, label_column, group_column)
    else:
        if group_column:
            raise InputError("--group-column needs --labels TABLE (class subfolders name no groups)")
        listing = from_class_folders(src)
    order = [c.strip() for c in classes.split(",") if c.strip()] if classes else None
    with click.progressbar(length=len(listing.items), label="reading images", file=sys.stderr) as bar:
        info = build_fdata(
            listing, out, size, fractions, seed, test_only, strict, order, progress=bar.update,
            warn=lambda m: click.echo(m, err=True),
        )  # fmt: skip
    counts = ", ".join(f"{s} {sum(c.values())}" for s, c in info["counts"].items())
    click.echo(
        f"wrote FData to {out}: {info['images']} images at {size}x{size} ({counts}), {len(info['classes'])} classes"
    )
    audit = info["audit"]
    if audit["pairs"]:
        click.echo(
            f"audit: {audit['pairs']} pair(s) of near-identical images in different splits "
            f"({', '.join(f'{k} {v}' for k, v in audit['by_splits'].items())}); listed in {out}/dataset_info.json",
            err=True,
        )
    else:
        click.echo("audit: no near-identical images in different splits")
    if info["skipped"]:
        click.echo(f"skipped {len(info['skipped'])} unreadable image(s), listed in {out}/dataset_info.json:", err=True)
        for s in info["skipped"][:10]:
            click.echo(f"  {s['file']}: {s['reason']}", err=True)


@data.command("audit")
@click.argument("root", type=click.Path(file_okay=False, exists=True, path_type=Path))
@click.option("--json", "json_out", type=click.Path(dir_okay=False, path_type=Path), help="Write the audit as JSON.")
@click.option("--limit", default=20, show_default=True, type=click.IntRange(0), help="Pairs printed.")
def data_audit(root, json_out, limit) -> None:
    """Look for near-identical images in two splits of an FData folder (a perceptual hash, confirmed by pixels)."""
    from kdtool.audit import audit_summary, cross_split_pairs, fingerprints
    from kdtool.data import SPLITS, atomic_write_text, safe_load_npy

    try:  # InputError passes through: one line, exit 2
        prints, files = {}, {}
        for split in SPLITS:
            path = root / f"X_{split}.npy"
            if path.is_file():
                x = safe_load_npy(path, mmap=True)
                if x.ndim != 4 or x.shape[-1] != 3:
                    raise InputError(f"{path}: expected images of shape (N, H, W, 3), got {x.shape}")
                prints[split] = fingerprints(x)
        if len(prints) < 2:
            raise InputError(f"{root}: needs at least two splits (X_train.npy, X_val.npy, X_test.npy) to audit")
        ids = root / "image_ids.csv"
        if ids.is_file():
            import csv

            with open(ids, newline="", encoding="utf-8") as fh:
                for row in csv.DictReader(fh):
                    name = row.get("file") or row.get("image_id")
                    if name and row.get("split") and row.get("position", "").isdigit():
                        files[(row["split"], int(row["position"]))] = name
    except (OSError, ValueError) as exc:
        raise InputError(f"{root}: cannot audit ({exc})") from None
    pairs = cross_split_pairs(prints)
    for p in pairs:
        for side in ("a", "b"):
            name = files.get((p[f"split_{side}"], p[f"index_{side}"]))
            if name:
                p[f"file_{side}"] = name
    summary = audit_summary(pairs)
    sizes = ", ".join(f"{s} {len(h[0])}" for s, h in prints.items())
    click.echo(f"{root}: {sizes} images; {summary['pairs']} near-identical pair(s) across splits")
    for p in pairs[:limit]:
        a = p.get("file_a", f"#{p['index_a']}")
        b = p.get("file_b", f"#{p['index_b']}")
        click.echo(
            f"  {p['split_a']} {a}  ~  {p['split_b']} {b}  (hash {p['distance']} bits, r {p['correlation']:.3f})"
        )
    if json_out:
        atomic_write_text(json_out, json.dumps(summary, indent=1) + "\n")
