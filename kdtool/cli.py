"""The ``kdtool`` command line: data, distill, export, bench, predict.

Only click and numpy are imported here; TensorFlow is imported inside the
commands that need it, so ``kdtool bench`` and ``kdtool predict`` run on a
device with the light install.
"""

from __future__ import annotations

import click

from kdtool import __version__
from kdtool.bench.cli import bench_command, predict_command
from kdtool.data_cli import data
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


main.add_command(data, name="data")
main.add_command(distill_command, name="distill")
main.add_command(export_command, name="export")
main.add_command(bench_command, name="bench")
main.add_command(predict_command, name="predict")
main.add_command(report_command, name="report")
