"""A model card in the Hugging Face layout: a YAML metadata block, then Markdown sections, written atomically.

The metadata (``library_name``, ``license``, ``tags``, ``pipeline_tag`` and a ``model-index`` of the
measured metrics) is written by :func:`to_yaml`, a small emitter of block YAML (no PyYAML needed); the
sections come from :mod:`kdtool.report.sections` and :mod:`kdtool.report.evaluation`.

Example:
    >>> print("\\n".join(to_yaml({"library_name": "kdtool", "tags": ["tflite", "int8"], "x": {"y": None}})))
    library_name: kdtool
    tags:
      - tflite
      - int8
    x:
      y: null
    >>> yaml_scalar("HAM10000, 7 classes"), yaml_scalar("yes"), yaml_scalar(0.74512)
    ('"HAM10000, 7 classes"', '"yes"', '0.7451')
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

from kdtool import __version__
from kdtool.data import atomic_write_text
from kdtool.report import evaluation as ev
from kdtool.report.collect import ExportedModel
from kdtool.report.measure import CARD_SPLITS, SPLIT_WORDS
from kdtool.report.sections import CardInput, intended_use, model_details, training_data, training_recipe

#: The card's file name is ``<model file without .tflite>`` + this.
CARD_SUFFIX = ".MODEL_CARD.md"
_PLAIN = re.compile(r"[A-Za-z][A-Za-z0-9._/-]*")
_RESERVED = {"true", "false", "null", "yes", "no", "on", "off", "y", "n"}


def card_path(model: ExportedModel, out: Path | None) -> Path:
    """Where a model's card goes: ``--out`` folder, else beside the model.

    Example:
        >>> card_path(model, None)  # doctest: +SKIP
        PosixPath('models/export/student_t.int8.MODEL_CARD.md')
    """
    return (Path(out) if out else model.tflite.parent) / f"{model.stem}{CARD_SUFFIX}"


def yaml_scalar(v) -> str:
    """One YAML scalar: null, true/false, a number (floats to 4 decimals), a plain or double-quoted string."""
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        return repr(round(v, 4))
    s = str(v)
    return s if _PLAIN.fullmatch(s) and s.lower() not in _RESERVED else json.dumps(s)


def to_yaml(obj, indent: int = 0) -> list[str]:
    """Block YAML lines of nested dicts, lists and scalars (two spaces per level)."""
    pad = "  " * indent
    lines: list[str] = []
    if isinstance(obj, dict):
        for key, value in obj.items():
            if isinstance(value, (dict, list)) and value:
                lines.append(f"{pad}{key}:")
                lines += to_yaml(value, indent + 1)
            else:
                lines.append(f"{pad}{key}: {'[]' if value == [] else '{}' if value == {} else yaml_scalar(value)}")
    else:
        for item in obj:
            if isinstance(item, dict) and item:
                sub = to_yaml(item, indent + 1)
                lines.append(f"{pad}- {sub[0].lstrip()}")
                lines += sub[1:]
            else:
                lines.append(f"{pad}- {yaml_scalar(item)}")
    return lines


def model_index(c: CardInput) -> list[dict]:
    """The ``model-index`` entry: accuracy, balanced accuracy and macro ROC AUC per measured split."""
    results = []
    for split in CARD_SPLITS:
        rec = c.records.get(split)
        if rec is None:
            continue
        metrics = [
            {"type": key, "name": f"{words} ({SPLIT_WORDS[split]})", "value": rec.get(key)}
            for key, words in (
                ("accuracy", "accuracy"),
                ("balanced_accuracy", "balanced accuracy"),
                ("roc_auc_macro", "ROC AUC, macro one-vs-rest"),
            )
            if rec.get(key) is not None
        ]
        if metrics:
            results.append(
                {
                    "task": {"type": "image-classification"},
                    "dataset": {"name": c.data.dataset, "type": c.data.root.name, "split": split},
                    "metrics": metrics,
                }
            )
    return [{"name": c.model.stem, "results": results}] if results else []


def metadata(c: CardInput) -> dict:
    """The card's YAML metadata."""
    side = c.model.sidecar
    tags = ["image-classification", "dermatology", "dermoscopy", "skin-lesion", "tflite", "litert"]
    tags += [str(side["mode"])] if side.get("mode") else []
    if side.get("teacher") and side.get("role") != "teacher":
        tags.append("knowledge-distillation")
    tags += ["synthetic-data"] if c.data.synthetic else []
    tags.append("research-only")
    meta = {"library_name": "kdtool", "license": c.data.license, "pipeline_tag": "image-classification", "tags": tags}
    index = model_index(c)
    if index:
        meta["model-index"] = index
    return meta


def render(c: CardInput, command: str | None = None) -> str:
    """The card's text.

    Args:
        c: what it is written from.
        command: the command that wrote it, for its last section.

    Returns:
        Markdown with a leading YAML block.

    Example:
        >>> render(card_input).startswith("---\\nlibrary_name: kdtool")  # doctest: +SKIP
        True
    """
    side, d = c.model.sidecar, c.data
    sections = [
        ("Model details", model_details(c)),
        ("Intended use and limits", intended_use(c)),
        ("Training data", training_data(c)),
        ("Training recipe", training_recipe(c)),
        ("Evaluation", ev.evaluation(c)),
        ("Operating point", ev.operating_point(c)),
        ("Calibration", ev.calibration(c)),
        ("Size and latency", ev.size_and_latency(c)),
        ("Plots", ev.plots(c)),
    ]
    notes = list(dict.fromkeys([*c.measured.notes, *c.notes]))
    if notes:
        sections.append(("Notes", [f"- {n}" for n in notes]))
    made = time.strftime("%Y-%m-%d %H:%M:%S %z")
    how = (
        f"`{command or 'kdtool report'}` (kdtool {__version__}, {made}), from the export sidecar "
        f"`{c.model.sidecar_path.name}`, the run's `run.json`, the data folder and the bench records named above. "
        "See `docs/model-card.md`."
    )
    sections.append(("How this card was made", [how]))
    lines = ["---", *to_yaml(metadata(c)), "---", "", f"# Model card: {c.model.stem}", ""]
    lines.append(
        f"A LiteRT ({side.get('mode', 'unknown mode')}) classifier of {len(d.class_names)} skin-lesion classes for "
        f"dermoscopic images, made with kdtool from `{(side.get('source') or {}).get('file', c.model.name)}`. "
        "**A research model, not a medical device: not for diagnosis.**"
    )
    for title, body in sections:
        lines += ["", f"## {title}", "", *body]
    return "\n".join(lines) + "\n"


def write_card(c: CardInput, command: str | None = None) -> Path:
    """Write the card atomically to ``c.card_path``.

    Example:
        >>> write_card(card_input)  # doctest: +SKIP
        PosixPath('models/export/student_t.int8.MODEL_CARD.md')
    """
    atomic_write_text(c.card_path, render(c, command))
    return c.card_path
