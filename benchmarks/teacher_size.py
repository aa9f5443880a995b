"""Teacher input size: validation accuracy and time vs --image-size (the README quotes it).

    python benchmarks/teacher_size.py [--teacher efficientnet_lite0] [--sizes 32,64,96] [--epochs 2]
                                      [--data ../shared/data/ham10000] [--out benchmarks/teacher_size.json]

For each size it fine-tunes a fresh teacher (ImageNet weights when available)
and records train seconds per epoch, logit-caching seconds and validation
accuracy / balanced accuracy / melanoma sensitivity.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--teacher", default="efficientnet_lite0")
    ap.add_argument("--sizes", default="32,64,96")
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--data", default=str(Path(__file__).resolve().parents[1].parent / "shared/data/ham10000"))
    ap.add_argument("--out", default=str(Path(__file__).with_name("teacher_size.json")))
    args = ap.parse_args()

    from kdtool.train_extra import require_train_extra

    require_train_extra("benchmarks/teacher_size.py")  # as kdtool distill loads it (oneDNN on unless set)
    import keras

    from kdtool.data import load_fdata
    from kdtool.distill.evaluate import evaluate_model, predict_logits
    from kdtool.distill.teachers import create_teacher

    fd = load_fdata(args.data)
    results = []
    for size in [int(s) for s in args.sizes.split(",")]:
        keras.utils.set_random_seed(0)
        model, info = create_teacher(args.teacher, fd.num_classes, fd.image_shape, size, "auto")
        model.compile(optimizer=keras.optimizers.Adam(1e-3),
                      loss=keras.losses.CategoricalCrossentropy(from_logits=True), metrics=["accuracy"])
        t0 = time.perf_counter()
        model.fit(fd.x("train"), fd.onehot("train"), epochs=args.epochs, batch_size=args.batch_size, verbose=2)
        train_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        predict_logits(model, fd.x("train"))
        cache_s = time.perf_counter() - t0
        rep = evaluate_model(model, fd, "val")
        row = {"teacher": args.teacher, "image_size": info["image_size"], "weights": info["weights"],
               "epochs": args.epochs, "seconds_per_epoch": round(train_s / args.epochs, 1),
               "cache_logits_seconds": round(cache_s, 1), "val_accuracy": round(rep["accuracy"], 4),
               "val_balanced_accuracy": round(rep["balanced_accuracy"], 4),
               "val_melanoma_sensitivity": round(rep.get("melanoma_sensitivity", 0.0), 4)}
        print(json.dumps(row), flush=True)
        results.append(row)
    doc = {"machine": f"{platform.machine()}, {os.cpu_count()} cores", "data": args.data, "results": results}
    Path(args.out).write_text(json.dumps(doc, indent=1) + "\n")


if __name__ == "__main__":
    main()
