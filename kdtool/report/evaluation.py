"""The measured sections of a model card: evaluation, operating point, calibration, size and latency, plots.

Every number comes from a bench record (``kdtool bench --json``'s keys) or the export sidecar, with its
95% interval when the record has one; a key an older file lacks is written "not measured".
Proportions are shown in percent with one decimal, ROC AUC and ECE with three decimals.

Example:
    >>> with_ci(0.7451, [0.7243, 0.7652]), with_ci(0.912, [0.89, 0.93], percent=False), with_ci(None, None)
    ('74.5% [72.4, 76.5]', '0.912 [0.890, 0.930]', 'not measured')
    >>> per_class_rows({"class_names": ["a", "b"], "confusion_matrix": [[3, 1], [0, 4]]})[0][:3]
    ['a', '4', '75.0% [19.4, 99.4]']
"""

from __future__ import annotations

from collections.abc import Sequence

from kdtool.intervals import clopper_pearson_interval
from kdtool.report.measure import CARD_SPLITS, SPLIT_WORDS
from kdtool.report.plots import relative_link
from kdtool.report.sections import NOT_MEASURED, CardInput, table, value_text

#: Specificities at which bench reports the class of concern's sensitivity (its record's keys).
SPECIFICITY_KEYS = ("0.8", "0.9", "0.95")


def with_ci(value: float | None, ci: Sequence[float] | None, percent: bool = True) -> str:
    """A metric and its 95% interval for a table cell.

    Args:
        value: the metric (a fraction), or None.
        ci: ``[low, high]``, or None (then the interval is left out).
        percent: show as percent with one decimal (else a fraction with three).

    Returns:
        ``74.5% [72.4, 76.5]``, ``0.912 [0.890, 0.930]``, or ``not measured``.
    """
    if value is None:
        return NOT_MEASURED
    if percent:
        text = f"{100 * value:.1f}%"
        return text + (f" [{100 * ci[0]:.1f}, {100 * ci[1]:.1f}]" if ci else "")
    return f"{value:.3f}" + (f" [{ci[0]:.3f}, {ci[1]:.3f}]" if ci else "")


def fixed(value: float | None, digits: int) -> str:
    """A number with ``digits`` decimals, or ``-``.

    Example:
        >>> fixed(1047.378, 1), fixed(None, 3)
        ('1047.4', '-')
    """
    return "-" if value is None else f"{value:.{digits}f}"


def concern(rec: dict) -> dict | None:
    """The class of concern's sensitivity and specificity at the operating point, from a record.

    Older records without ``class_of_concern`` give the melanoma keys instead.

    Returns:
        ``{name, sensitivity, specificity, sensitivity_ci, specificity_ci}``, or None.
    """
    ci95 = rec.get("ci95") or {}
    coc = rec.get("class_of_concern")
    if coc:
        return {
            "name": coc.get("name"),
            "sensitivity": coc.get("sensitivity"),
            "specificity": coc.get("specificity"),
            "sensitivity_ci": ci95.get("class_of_concern_sensitivity"),
            "specificity_ci": ci95.get("class_of_concern_specificity"),
        }
    if rec.get("melanoma_sensitivity") is not None:
        names = rec.get("class_names") or []
        name = next((n for n in names if n.lower() in ("mel", "melanoma")), "melanoma")
        return {
            "name": name,
            "sensitivity": rec.get("melanoma_sensitivity"),
            "specificity": rec.get("melanoma_specificity"),
            "sensitivity_ci": ci95.get("melanoma_sensitivity"),
            "specificity_ci": ci95.get("melanoma_specificity"),
        }
    return None


def concern_name(records: dict[str, dict]) -> str | None:
    """The class of concern's name in the card's records (test first), or None."""
    for split in ("test", "val"):
        found = concern(records.get(split) or {})
        if found:
            return found["name"]
    return None


def calibration_of(rec: dict) -> tuple[float | None, list[float] | None]:
    """(ECE, its interval) from a record's ``calibration``, else its older ``ece`` without an interval."""
    cal = rec.get("calibration") or {}
    if cal.get("ece") is not None:
        return cal["ece"], cal.get("ece_ci95")
    return rec.get("ece"), None


def metric_labels(name: str | None) -> list[str]:
    """The evaluation table's first column; ``name`` is the class of concern (None: its rows are left out)."""
    labels = ["images", "accuracy", "balanced accuracy", "macro F1", "ROC AUC (macro, one-vs-rest)"]
    if name:
        labels += [f"`{name}` sensitivity at the operating point", f"`{name}` specificity at the operating point"]
        labels += [f"`{name}` sensitivity at {100 * float(k):g}% specificity" for k in SPECIFICITY_KEYS]
    return labels + ["ECE (top-1, 15 bins)"]


def metric_cells(rec: dict, name: str | None) -> list[str]:
    """One split's column of the evaluation table, in the order of :func:`metric_labels`."""
    ci95 = rec.get("ci95") or {}
    cells = [
        str(rec.get("n_images", "?")),
        with_ci(rec.get("accuracy"), ci95.get("accuracy")),
        with_ci(rec.get("balanced_accuracy"), ci95.get("balanced_accuracy")),
        with_ci((rec.get("macro") or {}).get("f1"), ci95.get("macro_f1")),
        with_ci(rec.get("roc_auc_macro"), ci95.get("roc_auc_macro"), percent=False),
    ]
    if name:
        coc = concern(rec) or {}
        cells += [with_ci(coc.get(k), coc.get(f"{k}_ci")) for k in ("sensitivity", "specificity")]
        at = rec.get("sensitivity_at_specificity") or {}
        cells += [
            with_ci((at.get(k) or {}).get("sensitivity"), (at.get(k) or {}).get("ci95")) for k in SPECIFICITY_KEYS
        ]
    return cells + [with_ci(*calibration_of(rec), percent=False)]


def headline_rows(records: dict[str, dict], name: str | None) -> list[list[str]]:
    """The evaluation table's rows: one metric each, a column per split (validation, test)."""
    labels = metric_labels(name)
    columns = [metric_cells(records[s], name) if s in records else [NOT_MEASURED] * len(labels) for s in CARD_SPLITS]
    return [[label, *cells] for label, *cells in zip(labels, *columns, strict=True)]


def per_class_rows(rec: dict) -> list[list[str]]:
    """Per class: images, sensitivity and specificity (Clopper-Pearson, from the confusion matrix), ROC AUC."""
    cm = rec.get("confusion_matrix")
    names = rec.get("class_names") or list((rec.get("per_class") or {}).keys())
    if not cm or len(cm) != len(names):
        return []
    total = sum(sum(row) for row in cm)
    aucs = rec.get("roc_auc_per_class") or {}
    auc_ci = ((rec.get("ci95") or {}).get("roc_auc_per_class")) or {}
    rows = []
    for i, name in enumerate(names):
        pos = sum(cm[i])
        called = sum(row[i] for row in cm)
        tp, neg = cm[i][i], total - pos
        tn = neg - (called - tp)
        sens = with_ci(tp / pos, clopper_pearson_interval(tp, pos).as_list()) if pos else "no images"
        spec = with_ci(tn / neg, clopper_pearson_interval(tn, neg).as_list()) if neg else "no images"
        auc = with_ci(aucs.get(name), auc_ci.get(name), percent=False) if name in aucs else NOT_MEASURED
        rows.append([name, str(pos), sens, spec, auc])
    return rows


def _resampling(boot: dict) -> str:
    unit = "images" if boot.get("groups") in (None, "image") else f"whole groups ({boot['groups']})"
    return f"{boot.get('n')} resamples of {boot.get('n_groups')} {unit}, seed {boot.get('seed')}"


def _provenance(c: CardInput) -> list[str]:
    lines = []
    for split in CARD_SPLITS:
        item = c.measured.splits.get(split)
        if item is None:
            lines.append(f"- {SPLIT_WORDS[split]}: not measured.")
            continue
        rec = item.record
        how = "" if item.how == "run here" else f" (matched by {item.how})"
        tta = f", TTA {rec['tta']}" if rec.get("tta") not in (None, "none") else ""
        lines.append(
            f"- {SPLIT_WORDS[split]}: {item.source}{how}; kdtool {rec.get('kdtool_version', '?')}, "
            f"{rec.get('created', 'time not recorded')}{tta}."
        )
    methods = {b.record.get("interval_method") for b in c.measured.splits.values()} - {None}
    boots = [b.record.get("bootstrap") for b in c.measured.splits.values() if b.record.get("bootstrap")]
    if methods:
        groups = "; ".join(sorted({_resampling(b) for b in boots}))
        lines.append(f"- Intervals: {'; '.join(sorted(methods))}" + (f"; {groups}" if groups else "") + ".")
    else:
        lines.append("- Intervals: not measured (the records carry none).")
    return lines


def evaluation(c: CardInput) -> list[str]:
    """Evaluation: metrics with intervals on validation and test, per class, threshold-free, subgroups."""
    records = c.records
    name = concern_name(records)
    lines = [
        "Under kdtool's evaluation protocol (`docs/evaluation.md`) every choice (recipe, operating point, "
        "temperature) is made on validation or out-of-fold data, and the test split is read once, to report "
        "the result: the test column is the estimate of how the model does on new images from the same "
        "source; the validation column is optimistic for whatever was chosen on it.",
        "",
        *table(["metric (95% interval)", "validation", "test"], headline_rows(records, name)),
        "",
        *_provenance(c),
    ]
    for split in CARD_SPLITS:
        rec = records.get(split)
        rows = per_class_rows(rec) if rec else []
        if rows:
            lines += [
                "",
                f"Per class, {SPLIT_WORDS[split]} (sensitivity and specificity one-vs-rest at the "
                "operating point, Clopper-Pearson intervals):",
                "",
            ]
            lines += table(["class", "images", "sensitivity", "specificity", "ROC AUC"], rows)
        elif rec:
            lines += ["", f"Per class, {SPLIT_WORDS[split]}: not measured (the record has no confusion matrix)."]
    lines += ["", *subgroups(records)]
    return lines


def subgroups(records: dict[str, dict]) -> list[str]:
    """Metrics per subgroup (``kdtool bench --by COLUMN``), from the test record, else validation's."""
    for split in ("test", "val"):
        sub = (records.get(split) or {}).get("subgroups")
        if sub and sub.get("groups"):
            break
    else:
        return [
            "Subgroups: not measured (`kdtool bench --by COLUMN` on a column of `image_ids.csv`, given with `--bench`)."
        ]
    groups = sub["groups"]
    counts = ("n", "lesions", "positives")
    keys = [k for k, v in groups[0].items() if k not in (*counts, "value", "ci95", "small")
            and isinstance(v, (int, float)) and not isinstance(v, bool)]  # fmt: skip
    shown = [k for k in counts if k in groups[0]]
    rows = []
    for g in groups:
        ci = g.get("ci95") or {}
        value = f"{g.get('value')}" + (" (small)" if g.get("small") else "")
        metrics = (with_ci(g.get(k), ci.get(k), percent="auc" not in k) for k in keys)
        rows.append([value, *(value_text(g.get(k)) for k in shown), *metrics])
    lines = [f"Subgroups by `{sub.get('column')}` ({SPLIT_WORDS[split]}):", ""]
    header = [
        str(sub.get("column")),
        *("images" if k == "n" else k for k in shown),
        *(k.replace("_", " ") for k in keys),
    ]
    lines += table(header, rows)
    if sub.get("min_images"):
        lines += ["", f"(small): fewer than {sub['min_images']} images, too few to rank."]
    worst = sub.get("worst")
    if worst:
        ba = with_ci(worst.get("balanced_accuracy"), worst.get("ci95"))
        lines += ["", f"Worst group (lowest balanced accuracy): `{worst.get('value')}`, {worst.get('n')} images, "
                  f"balanced accuracy {ba}."]  # fmt: skip
    return lines


def operating_point(c: CardInput) -> list[str]:
    """Operating point: the sidecar's ``operating_point`` summary and record."""
    point = c.model.sidecar.get("operating_point")
    if point is None:
        return [f"Not recorded: the sidecar has no `operating_point` ({NOT_MEASURED})."]
    lines = []
    if point.get("summary"):
        lines.append(f"**{point['summary']}**")
        lines.append("")
        names = c.data.class_names
        fit = f" ({point['fit_images']} images)" if point.get("fit_images") else ""
        facts = [
            ["objective", value_text(point.get("objective"))],
            ["fitted on", value_text(point.get("fitted_on")) + fit],
            ["tau", value_text(point.get("tau"))],
            ["temperature", fixed(point.get("temperature"), 4) if point.get("temperature") else "none"],
        ]
        bias = point.get("bias")
        if isinstance(bias, list) and len(bias) == len(names):
            facts.append(["logit bias", ", ".join(f"`{n}` {b:+.3f}" for n, b in zip(names, bias, strict=True))])
        lines += [*table(["", "value"], facts), ""]
        for item in point.get("min_recall") or []:
            reached = "reached" if item.get("reached") else "NOT reached"
            lines.append(
                f"- `{item.get('class')}` recall >= {with_ci(item.get('target'), None)} with "
                f"{with_ci(item.get('confidence'), None)} confidence: logit offset {fixed(item.get('offset'), 3)}, "
                f"{item.get('detected')}/{item.get('images')} detected, lower bound "
                f"{with_ci(item.get('lower_bound'), None)}: {reached}."
            )
        if point.get("fitted_on") == "test":
            lines.append("- **Fitted on the test split**: the test numbers above are optimistic.")
    else:
        lines.append("Recorded in kdtool's older format (before operating points had named objectives):")
    lines += ["", "```json", value_text(point), "```"]
    return lines


def calibration(c: CardInput) -> list[str]:
    """Calibration: ECE with its interval per split, the temperature, the reliability diagram."""
    rows = []
    for split in CARD_SPLITS:
        rec = c.records.get(split)
        if rec is None:
            rows.append([SPLIT_WORDS[split], NOT_MEASURED, NOT_MEASURED])
            continue
        ece, ci = calibration_of(rec)
        bins = (rec.get("calibration") or {}).get("bins")
        rows.append([SPLIT_WORDS[split], with_ci(ece, ci, percent=False), with_ci(rec.get("mean_confidence"), None)])
        if ece is not None and ci is None:
            rows[-1][1] += " (interval not measured)"
        if bins is None:
            c.notes.append(f"{SPLIT_WORDS[split]}: the bench record has no reliability bins (an older kdtool)")
    temp = (c.model.sidecar.get("operating_point") or {}).get("temperature")
    lines = [
        "Expected calibration error of the top-1 probability (15 equal-width bins): how far the confidence the "
        "model states is from how often it is right. 0 is perfectly calibrated.",
        "",
        *table(["split", "ECE (95% interval)", "mean confidence"], rows),
        "",
        f"- Temperature folded into the export: {value_text(temp) if temp is not None else 'none recorded'}.",
    ]
    if "reliability" in c.plots:
        path, split = c.plots["reliability"]
        lines.append(
            f"- Reliability diagram ({SPLIT_WORDS[split]}): ![reliability]({relative_link(path, c.card_path.parent)})"
        )
    else:
        lines.append(f"- Reliability diagram: {NOT_MEASURED}.")
    return lines


def size_and_latency(c: CardInput) -> list[str]:
    """Size (the file and the sidecar's ratios) and latency (bench records that timed it, with the machine)."""
    side, m = c.model.sidecar, c.model
    sizes = side.get("sizes") or {}
    lines = [
        f"- **Size**: {m.size_bytes:,} bytes ({side.get('mode', '?')})"
        + (
            f", {100 * sizes['ratio_to_float32']:.1f}% of its float32 conversion"
            if sizes.get("ratio_to_float32")
            else ""
        )
        + (
            f", {100 * sizes['ratio_to_teacher_float32']:.2f}% of its teacher's float32 file"
            if sizes.get("ratio_to_teacher_float32")
            else ""
        )
        + "."
    ]
    if not c.measured.latency:
        lines.append(
            f"- **Latency**: {NOT_MEASURED} (give a `kdtool bench --json` file made on the target "
            "machine with `--bench`)."
        )
        return lines
    rows = []
    for item in c.measured.latency:
        r, dev = item.record, item.record.get("device") or {}
        lat = r.get("latency_ms") or {}
        machine = " ".join(str(dev.get(k)) for k in ("hostname", "machine", "cpu_model") if dev.get(k)) or "unknown"
        if r.get("emulated"):
            machine += " (EMULATED: latency meaningless)"
        runtime = f"{r.get('runtime')} {r.get('runtime_version')}"
        rows.append(
            [
                machine,
                runtime,
                str(r.get("threads")),
                str(r.get("batch")),
                fixed(lat["median"], 3),
                fixed(lat.get("p90"), 3),
                fixed(r.get("images_per_second"), 1),
                fixed(r.get("peak_rss_mb"), 1),
                item.source,
            ]
        )
    lines += [
        "",
        *table(
            ["machine", "runtime", "threads", "batch", "median ms", "p90 ms", "images/s", "peak RSS MiB", "from"], rows
        ),
    ]
    return lines


def plots(c: CardInput) -> list[str]:
    """Plots: this card's ROC and reliability PNGs and the run's curves and confusion matrix, linked."""
    here = c.card_path.parent
    lines = []
    if "roc" in c.plots:
        path, split = c.plots["roc"]
        lines.append(f"- ROC curves, one-vs-rest ({SPLIT_WORDS[split]}): ![ROC]({relative_link(path, here)})")
    for key, what in (
        ("curves", "Training curves (loss and accuracy per epoch)"),
        ("confusion", "Confusion matrix of the Keras model (validation)"),
    ):
        if key in c.run_plots:
            lines.append(f"- {what}: ![{key}]({relative_link(c.run_plots[key], here)})")
    return lines or [f"None: {NOT_MEASURED}."]
