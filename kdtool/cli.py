"""The ``kdtool`` command line: data, distill, export, bench, predict.

Only click and numpy are imported here; TensorFlow is imported inside the
commands that need it, so ``kdtool bench`` and ``kdtool predict`` run on a
device with the light install.
"""

from __future__ import annotations

import click

from kdtool import __version__
from kdtool.bench.cli import bench_command, predict_command
from kdtool.distill.cli import distill_command
from kdtool.export.cli import export_command
from kdtool.report.cli import report_command


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="kdtool")
def main() -> None:
    """kdtool: distil ImageNet-pretrained CNNs into tiny skin-lesion classifiers.

    \b
    Typical flow:
      kdtool data synthetic --out FData        # or: kdtool data dermamnist --out FData
      kdtool distill --data FData --out models  # teachers -> students, ranked
      kdtool export models --quantize int8       # TFLite, accuracy drop checked
      kdtool bench models/export                 # accuracy, size, latency (no TensorFlow)
    """


@main.group()
def data() -> None:
    """Make an FData folder (real DermaMNIST, or synthetic for a dry run)."""


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
@click.option(
    "--source-size",
    type=click.Choice(["28", "64"]),
    default="64",
    show_default=True,
    help="DermaMNIST release to download (resized to --size).",
)
@click.option("--size", default=32, show_default=True, type=click.IntRange(8, 256), help="Output image side.")
@click.option(
    "--npz",
    type=click.Path(dir_okay=False, exists=True),
    default=None,
    help="Use an already downloaded dermamnist*.npz instead of downloading.",
)
@click.option("--cache", default="~/.cache/kdtool", show_default=True, help="Where the download is kept.")
def data_dermamnist(out, source_size, size, npz, cache) -> None:
    """Download DermaMNIST (MedMNIST v2), verify its MD5 and convert it to FData (its split is image-level, so
    its accuracies are optimistic)."""
    from pathlib import Path

    from kdtool.datasets import DERMAMNIST, convert_medmnist_npz, download

    if npz is None:
        url, md5 = DERMAMNIST[int(source_size)]
        dest = Path(cache).expanduser() / f"dermamnist_{source_size}.npz"
        click.echo(f"downloading {url}")
        npz = download(url, dest, md5)
    convert_medmnist_npz(Path(npz), Path(out), size=size)
    click.echo(f"wrote FData to {out} ({size}x{size}, 7 classes)")


main.add_command(distill_command, name="distill")
main.add_command(export_command, name="export")
main.add_command(bench_command, name="bench")
main.add_command(predict_command, name="predict")
main.add_command(report_command, name="report")
