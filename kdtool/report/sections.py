"""The descriptive sections of a model card: model details, intended use, training data, training recipe.

The measured ones (evaluation, operating point, calibration, size and latency) are in
:mod:`kdtool.report.evaluation`. Each function takes the card's :class:`CardInput` and returns Markdown
lines; what a file does not record is written as "not known" or "not measured", never guessed.

Example:
    >>> table(["class", "images"], [["mel", "189"], ["nv", "1087"]])
    ['| class | images |', '|---|---|', '| mel | 189 |', '| nv | 1087 |']
    >>> value_text(None), value_text([24, 40]), value_text("cosine")
    ('null', '[24, 40]', 'cosine')
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from kdtool.report.collect import DataFacts, ExportedModel, RunInfo, short_sha
from kdtool.report.measure import SPLIT_WORDS, Measured

NOT_MEASURED = "not measured"


@dataclass
class CardInput:
    """Everything one card is written from.

    Args:
        model: the exported model.
        run: its run folder, or None.
        data: the data folder's facts.
        measured: its bench records.
        card_path: where the card goes (links are relative to its folder).
        plots: ``roc`` / ``reliability`` -> (PNG, split) drawn for this card.
        run_plots: ``curves`` / ``confusion`` -> the run's PNG.
        notes: lines for the card's "Notes" (records from other data, a changed ``.keras``...).
    """

    model: ExportedModel
    run: RunInfo | None
    data: DataFacts
    measured: Measured
    card_path: Path
    plots: dict[str, tuple[Path, str]] = field(default_factory=dict)
    run_plots: dict[str, Path] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    @property
    def records(self) -> dict[str, dict]:
        """Split -> bench record."""
        return {s: b.record for s, b in self.measured.splits.items()}


def table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    """A Markdown table (``|`` in a cell is escaped)."""

    def row(cells):
        return "| " + " | ".join(str(c).replace("|", "\\|") for c in cells) + " |"

    return [row(header), "|" + "---|" * len(header), *(row(r) for r in rows)]


def value_text(v) -> str:
    """A config value for a table cell: strings as they are, anything else as JSON."""
    return v if isinstance(v, str) else json.dumps(v)


def model_details(c: CardInput) -> list[str]:
    """Model details: what the file is, where it came from, how to feed it, how its export checked."""
    side, m = c.model.sidecar, c.model
    inp, out = side.get("input") or {}, side.get("output") or {}
    source = side.get("source") or {}
    role = side.get("role") or "not recorded"
    teacher = f", distilled from {side['teacher']}" if side.get("teacher") and side.get("role") != "teacher" else ""
    versions = side.get("versions") or {}
    lines = [
        f"- **Model**: `{m.tflite.name}`, {side.get('mode', 'unknown mode')} TensorFlow Lite (LiteRT) classifier "
        f"of {len(c.data.class_names)} classes; role {role}{teacher}.",
        f"- **File**: {m.size_bytes:,} bytes, SHA-256 `{m.sha256}`; {value_text(side.get('params'))} parameters.",
        f"- **Source**: `{source.get('file', 'not recorded')}` (SHA-256 {short_sha(source.get('sha256'))}), "
        f"exported {side.get('created', 'at an unrecorded time')} with kdtool {versions.get('kdtool', 'unknown')}.",
        f"- **Classes** (label order): {', '.join(f'`{n}`' for n in c.data.class_names)}.",
        f"- **Input**: {inp.get('dtype', '?')} tensor {inp.get('shape', '?')}; "
        + "; ".join((side.get("preprocess") or {}).get("steps") or ["preprocessing not recorded"])
        + ".",
        f"- **Output**: {out.get('dtype', '?')} logits {out.get('shape', '?')}; "
        + "; ".join((side.get("postprocess") or {}).get("steps") or ["postprocessing not recorded"])
        + ".",
    ]
    check = side.get("check") or {}
    if check.get("accuracy_drop") is not None:
        verdict = "passed" if check.get("passed") else "FAILED"
        lines.append(
            f"- **Export check** ({SPLIT_WORDS.get(check.get('split'), check.get('split'))}, {check.get('n')} "
            f"images): accuracy {check['accuracy_drop']:.2f} points lower than the Keras model's "
            f"(limit {check.get('max_drop')}), top-1 agreement {100 * (check.get('agreement') or 0):.1f}%: {verdict}."
        )
    else:
        lines.append("- **Export check**: not recorded in the sidecar.")
    lines.append(f"- **Sidecar**: `{m.sidecar_path.name}` (how to feed and read the model, in full).")
    return lines


def intended_use(c: CardInput) -> list[str]:
    """Intended use and limits: a research model, not a medical device; the failure modes the data imply."""
    d = c.data
    h, w = d.image_shape[:2]
    lines = []
    if d.synthetic:
        lines += [
            "**Trained on SYNTHETIC images** (`kdtool data synthetic`: coloured blobs, not lesions). "
            "This model only shows that the pipeline runs; none of its numbers says anything about skin lesions.",
            "",
        ]
    lines += [
        "- **A research model, not a medical device.** It has no regulatory clearance and no clinical "
        "validation. It must not be used to diagnose, screen or triage patients, nor to decide whether a lesion "
        "is examined, biopsied or excised.",
        f"- **Intended use**: research on small on-device classifiers of dermoscopic images like those it was "
        f"trained on ({d.dataset}), resized to {h}x{w} pixels, and teaching or benchmarking with them.",
        "- **Out of scope**: clinical or consumer use; photographs that are not dermoscopy; lesions of a kind "
        f"outside its {len(d.class_names)} classes (it always answers one of them); images from other clinics or "
        "dermoscopes than its training data.",
        "- **Known failure modes**:",
        "  - *Other clinics and devices*: accuracy measured on one source does not transfer; another "
        "dermoscope, lighting or population can lower it a lot, and only independent data can tell how much.",
    ]
    skin = (
        "HAM10000 comes from two sites (Vienna, Austria, and Queensland, Australia) and holds mostly light skin"
        if d.is_ham
        else "the data folder records no skin types"
    )
    lines.append(
        f"  - *Skin types*: {skin}; darker skin is under-represented and the model's behaviour there is not measured."
    )
    train = d.counts.get("train") or []
    total = sum(train) or 1
    rare = [(n, k) for n, k in zip(d.class_names, train, strict=False) if k / total < 0.03]
    if rare:
        test = dict(zip(d.class_names, d.counts.get("test") or [], strict=False))
        listed = ", ".join(f"`{n}` ({k} training, {test.get(n, '?')} test images)" for n, k in rare)
        lines.append(
            f"  - *Rare classes*: {listed}: learnt from few examples, and their test metrics rest on so few images "
            "that their intervals are wide."
        )
    lines.append(
        f"  - *Low resolution*: at {h}x{w} pixels much of what a dermatologist reads in a dermoscopic image is gone."
    )
    if d.lesions is None or d.shared_lesions:
        lines.append(f"  - *Optimistic numbers*: the split is {d.split_method}.")
    return lines


def training_data(c: CardInput) -> list[str]:
    """Training data: source, licence, split method, images (and lesions) per class per split."""
    d = c.data
    lines = [
        f"- **Source**: {d.dataset} (`{d.root}`)"
        + (f"; {d.info['note']}" if d.info.get("note") else "")
        + (f"; citation: {d.info['citation']}" if d.info.get("citation") else "")
        + ".",
        f"- **Licence of the data**: {d.license_text}.",
        f"- **Split**: {d.split_method}.",
        f"- **Images**: {d.image_shape[0]}x{d.image_shape[1]}x{d.image_shape[2]}; data fingerprint "
        f"`{short_sha(d.fingerprint)}`.",
    ]
    recorded = (c.model.sidecar.get("data") or {}).get("fingerprint")
    if recorded and recorded != d.fingerprint:
        lines.append(
            f"- **Note**: these are not the data the model was exported with (fingerprint "
            f"{short_sha(recorded)} in the sidecar)."
        )
    splits = [s for s in ("train", "val", "test") if s in d.counts]
    rows = [[n, *(str(d.counts[s][i]) for s in splits)] for i, n in enumerate(d.class_names)]
    rows.append(["**all**", *(f"**{sum(d.counts[s])}**" for s in splits)])
    if d.lesions is not None:
        rows.append(["lesions", *(str(d.lesions.get(s, "?")) for s in splits)])
    lines += ["", *table(["class", *(SPLIT_WORDS[s] for s in splits)], rows)]
    names = d.info.get("class_names")
    if isinstance(names, dict) and names:
        lines += ["", "Classes: " + "; ".join(f"`{k}` {v}" for k, v in names.items()) + "."]
    return lines


def training_recipe(c: CardInput) -> list[str]:
    """Training recipe: the run's configuration (run.json), the model's own record, versions and machine."""
    if c.run is None:
        return ["Not known: no `run.json` of a `kdtool distill` run was found beside the export or its source."]
    doc, name = c.run.doc, c.model.name
    rec = c.run.model_record(name) or {}
    lines = [
        f"- **Run folder**: `{c.run.folder}` (status {doc.get('status', 'unknown')}, started "
        f"{doc.get('first_started') or doc.get('started', '?')})."
    ]
    if doc.get("first_command") or doc.get("command"):
        lines.append(f"- **Command**: `{doc.get('first_command') or doc.get('command')}`")
    if rec:
        lines.append(
            f"- **This model**: `{rec.get('file')}`, role {rec.get('role')}, teacher {rec.get('teacher') or 'none'}, "
            f"{rec.get('epochs', '?')} epochs in {rec.get('train_seconds', '?')} s."
        )
        source_sha = (c.model.sidecar.get("source") or {}).get("sha256")
        if rec.get("sha256") and source_sha and rec["sha256"] != source_sha:
            c.notes.append(f"run.json's `{rec.get('file')}` is not the file this model was exported from (SHA-256)")
    else:
        lines.append(f"- **This model**: `{name}` is not in the run's records.")
    versions, device = doc.get("versions") or {}, doc.get("device") or {}
    if versions:
        lines.append("- **Versions**: " + ", ".join(f"{k} {v}" for k, v in versions.items()) + ".")
    if device:
        lines.append("- **Trained on**: " + ", ".join(f"{k} {value_text(v)}" for k, v in device.items()) + ".")
    for warning in doc.get("warnings") or []:
        lines.append(f"- **Run warning**: {warning}")
    config = doc.get("config") or {}
    if config:
        lines += ["", "Configuration (run.json's `config`; `kdtool distill --config` takes these keys):", ""]
        lines += table(["setting", "value"], [[k, f"`{value_text(v)}`"] for k, v in config.items()])
    return lines
