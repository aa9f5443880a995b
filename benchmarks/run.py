"""kdtool's benchmark harness: KD gain, cost, quantization, latency, compression and scaling in one run.

    python benchmarks/run.py --quick          # < 10 min on 2 CPU cores; writes results.json + results.md
    python benchmarks/run.py --work runs/bench_full [--resume]
                                              # the full run (about 5 h on 2 cores; see --plan)
    python benchmarks/run.py --plan [--quick] # print what a run would do, and exit

Measured on the shared data (default ``../shared/data/ham10000`` beside the repository):

1. ``kd``: KD gain. The student alone vs distilled from each teacher (vs the ensemble, with
   two or more teachers), each through :func:`kdtool.distill.train.run_distill` with its own
   ``--out`` per seed; test accuracy, balanced accuracy, macro-F1, melanoma sensitivity and
   ROC-AUC as mean +- std over the seeds, and the paired gain (distilled - alone, same seed).
2. ``cost``: distillation cost. Wall seconds per epoch of the student alone, cached-logit KD and
   online KD (frozen teacher on every batch, as in the Keras example) with a small
   (EfficientNet-Lite0 at 32 px) and a large (Lite0 at 96 px) teacher, through kdtool's own
   batches (``training_batches``), ``Distiller`` and logit caching (``teacher_logits``); the
   configurations alternate epoch by epoch (interleaved rounds, the first one untimed) so that
   load from other jobs hits all of them; the median epoch is reported. Plus the one-off logit
   caching and the full-run ratio online / cached = N x online epoch / (caching + N x cached
   epoch). Measured without augmentation ("plain") and, when the KD runs augment (kdtool's
   default), with their recipe ("configured": fixed views for cached KD, on-the-fly for online).
3. ``quant``: float32 / float16 / dynamic / int8 .tflite of the first seed's first distilled student via
   :func:`kdtool.export.pipeline.export_models` (its val check) and kdtool bench (test split).
4. ``latency``: per-image latency, batch 1: int8 and float32 .tflite through kdtool bench's
   in-process API (1 and 2 threads) vs Keras ``model(x)`` and ``model.predict(x)``; the student's
   MACs counted from its layers and the compute floor at the GEMM peak LiteRT/XNNPACK reaches here
   (measured with a large FULLY_CONNECTED .tflite, float32 and int8; numpy's BLAS for comparison).
5. ``compression``: the int8 student's bytes vs each teacher's float32 .tflite bytes.
6. ``scaling``: the default pipeline (``kdtool distill``, ``kdtool export`` int8,
   ``kdtool bench``) timed stage by stage at 25/50/100% of the training images (stratified
   subsets written with :func:`kdtool.data.save_fdata`; val and test unchanged).

``--quick``: one teacher (efficientnet_lite0 at 32 px, 1 fine-tuning epoch), seeds 0 and 1,
4 student epochs, kdtool distill's default recipe otherwise (``--balance``/``--augment`` override
it), cost timed on a 20% stratified subset (2 timed rounds); the pipeline of section 6 is the
quick KD configuration (its 100% point is the last seed's KD run, not repeated). The full run:
teachers efficientnet_lite0 and efficientnet_lite2 at 96 px (kdtool distill's default) plus their
ensemble, seeds 0, 1, 2, kdtool's default epochs (120 student, 5 teacher), cost on the whole training
split, and the library-default pipeline (``kdtool distill --data D`` with nothing else) for section 6.

A full run outlasts a working session here; ``--work DIR --resume`` continues it in a later
process: sections recorded as finished in ``--json`` are kept, and the kd section's ``kdtool
distill`` runs pick up where they stopped (finished models reused, a killed one resumed from its
last epoch). The timed sections (cost, latency, scaling) always rerun in one piece; run them on an
otherwise idle machine, e.g. ``--sections kd`` first, then the rest.

Outputs: ``--json`` (default benchmarks/results.json, rewritten after every section) and
``--md`` (default benchmarks/results.md). Work files (runs, exports, subsets) go to ``--work``
(default: a temporary folder, deleted at the end unless ``--keep``).

Layout: this file parses the options and runs the sections; ``harness.py`` holds the run's state,
``sections.py`` and ``cost.py`` measure, ``render.py`` writes the Markdown page, ``machine.py`` the
machine's facts, ``flops.py`` counts MACs and GEMM peaks, ``common.py`` what they share.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))  # the harness's own modules (benchmarks/ is not a package)
sys.path.insert(0, str(ROOT))  # kdtool from the checkout, installed or not
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from common import SECTIONS, T_START, distill_defaults, log  # noqa: E402 - after the sys.path lines above
from harness import Harness, section_steps  # noqa: E402 - after the sys.path lines above
from machine import machine_facts, machine_line  # noqa: E402 - after the sys.path lines above


def _ints(v: str) -> list[int]:
    return [int(x) for x in v.split(",") if x.strip()]


def _names(v: str) -> list[str]:
    return [x.strip() for x in v.split(",") if x.strip()]


def build_parser() -> argparse.ArgumentParser:
    """The harness's options (the module docstring is its help)."""
    from kdtool.distill.balance import BALANCE_MODES

    d = distill_defaults()
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="the < 10 min configuration (see above)")
    ap.add_argument("--plan", action="store_true", help="print the scope of the run and exit")
    ap.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "ham10000"), help="FData folder")
    ap.add_argument("--work", default=None, help="work folder (default: a temporary folder)")
    ap.add_argument("--keep", action="store_true", help="keep the work folder")
    ap.add_argument(
        "--resume",
        action="store_true",
        help="continue a run an earlier process began (needs --work, which is kept): sections recorded "
        "as finished in --json are skipped, and the kd section's kdtool distill runs in --work "
        "reuse finished models and resume a killed one from its last epoch; other sections "
        "rerun in one piece",
    )
    ap.add_argument("--json", default=str(HERE / "results.json"), help="results JSON")
    ap.add_argument("--md", default=str(HERE / "results.md"), help="results Markdown")
    ap.add_argument("--sections", type=_names, default=list(SECTIONS), help=f"comma list of {', '.join(SECTIONS)}")
    ap.add_argument(
        "--run",
        default=None,
        help="an existing kdtool distill run folder for quant/latency/compression "
        "(instead of the kd section's seed-0 run)",
    )
    ap.add_argument("--seeds", type=_ints, default=None, help="seeds, comma list (quick: 0,1; full: 0,1,2)")
    ap.add_argument("--teachers", type=_names, default=None, help="teachers of the KD section")
    ap.add_argument(
        "--ensemble",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="distil an ensemble student too (needs >= 2 teachers; full: on)",
    )
    ap.add_argument(
        "--epochs", type=int, default=None, help=f"student epochs (quick 4, full {d.epochs} as kdtool distill)"
    )
    ap.add_argument(
        "--teacher-epochs",
        type=int,
        default=None,
        help=f"teacher epochs (quick 1, full {d.teacher_epochs} as kdtool distill)",
    )
    ap.add_argument(
        "--image-size",
        type=int,
        default=None,
        help=f"teacher input size in the KD section (quick 32, full {d.image_size} as kdtool distill)",
    )
    ap.add_argument(
        "--balance",
        default=None,
        choices=BALANCE_MODES,
        help="class balancing of the KD runs (default: kdtool distill's default)",
    )
    ap.add_argument(
        "--augment",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="augmentation in the KD runs (default: kdtool distill's default)",
    )
    ap.add_argument(
        "--teacher-head-epochs",
        type=int,
        default=None,
        help="of --teacher-epochs, head-only epochs (kdtool distill --teacher-head-epochs)",
    )
    ap.add_argument(
        "--teacher-finetune-learning-rate",
        type=float,
        default=None,
        help="learning rate of the whole-network phase after a head phase",
    )
    ap.add_argument("--temperature", type=float, default=None, help="KD temperature (default: kdtool distill's)")
    ap.add_argument("--alpha", type=float, default=None, help="KD alpha (default: kdtool distill's)")
    ap.add_argument(
        "--lr-schedule",
        choices=["constant", "cosine"],
        default=None,
        help="learning-rate schedule of the KD runs (default: kdtool distill's)",
    )
    ap.add_argument("--cost-teacher", default="efficientnet_lite0", help="teacher timed in the cost section")
    ap.add_argument("--small-size", type=int, default=32, help="the small teacher's input size in the cost section")
    ap.add_argument("--large-size", type=int, default=96, help="the large teacher's input size in the cost section")
    return ap


def parse_args(argv=None) -> argparse.Namespace:
    """Parse and check the options (exit 2 with a usage line on a bad combination)."""
    ap = build_parser()
    args = ap.parse_args(argv)
    if args.resume and not args.work:
        ap.error("--resume needs --work: the folder of the run to continue")
    bad = [s for s in args.sections if s not in SECTIONS]
    if bad:
        ap.error(f"unknown section(s) {bad}; choose from {', '.join(SECTIONS)}")
    return args


def main(argv=None) -> int:
    """Run the chosen sections, saving --json and --md after each; 0 when done."""
    args = parse_args(argv)
    h = Harness(args)
    log(f"kdtool benchmark harness, {h.mode} mode. Scope:", bold=True)
    for line in h.plan_lines():
        log("  " + line)
    if args.plan:
        if not args.work:
            shutil.rmtree(h.work, ignore_errors=True)
        return 0

    t0 = time.perf_counter()
    from kdtool.train_extra import require_train_extra

    require_train_extra("benchmarks/run.py")  # as kdtool distill loads it (oneDNN on unless the user says not)
    import keras  # noqa: F401 - timed with TensorFlow's import

    h.results["import_seconds"] = time.perf_counter() - t0
    h.results["machine"] = machine_facts()
    log(f"machine: {machine_line(h.results['machine'])}")
    h.save()
    steps = section_steps()
    try:
        for name in h.sections:
            if name in h.done_sections:
                log(f"=== section {name}: finished by an earlier process (--resume), kept ===")
                continue
            log(f"=== section {name} ===", bold=True)
            s0 = time.perf_counter()
            steps[name](h)
            h.results.setdefault("section_seconds", {})[name] = time.perf_counter() - s0
            h.results["machine"]["load_average_end"] = list(os.getloadavg()) if hasattr(os, "getloadavg") else None
            h.save()
            log(f"=== section {name} done in {time.perf_counter() - s0:.1f} s ===")
    finally:
        if not args.keep and not args.work:
            shutil.rmtree(h.work, ignore_errors=True)
        elif args.keep:
            log(f"work files kept in {h.work}")
    h.save()
    log(f"done in {(time.perf_counter() - T_START) / 60:.1f} min: wrote {args.json} and {args.md}", bold=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
