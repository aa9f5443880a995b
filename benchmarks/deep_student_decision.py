"""Apply benchmarks/deep_student_rule.md: does ``--student-convs 2 --student-filters 24,40,80`` become the default?

Reads the JSON that ``recipes.py --variants d96_la_v8e120,d96_la_v8e120_c2 ... --int8
--melanoma-sensitivity 0.6`` wrote (per-seed paired differences of the int8 files, test split), and from
the runs under ``--root``: the SHA-256 of each seed's teacher weights (``model.weights.h5`` inside its
.keras file) in both variants (the pairing: both variants of a seed must have trained the same teacher;
the .keras file's own SHA-256 in run.json also covers the date it was saved), the distilled students'
int8 file sizes, and whether each int8 export check (``--max-drop`` on validation) passed. Writes the
verdict as Markdown and JSON.

Several ``--recipes`` files are pooled seed by seed, as ``ema_decision.py`` pools them. A seed whose run
folders are no longer under ``--root`` (a later session's new checkout) takes its facts from
``--recorded``, an earlier verdict JSON of this script, if that JSON's paired differences for the seed equal
the ones pooled now (the same runs).

Example:
    python benchmarks/deep_student_decision.py --recipes benchmarks/recipes_c2.json --md benchmarks/deep_student_decision.md
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import zipfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path[:0] = [str(ROOT), str(HERE)]

from ema_decision import KEYS, STUDENTS, load_pooled  # noqa: E402
from recipes import export_folder, run_folder  # noqa: E402
from run import write_results  # noqa: E402

BASE, DEEP = "d96_la_v8e120", "d96_la_v8e120_c2"
DECIDES = "student_efficientnet_lite0"
FACT_KEYS = ("teacher_sha256", "int8_bytes", "check_passed")
MAX_BYTES = 200_000  # issue #6's "size <= 200 KB", read as decimal kilobytes (the stricter reading)


def _weights_sha256(keras_file: Path) -> str | None:
    """SHA-256 of the weights inside a .keras file (None when it is missing or not a .keras zip).

    Two seeded runs that trained the same weights write .keras files that differ in metadata.json
    (``date_saved``), so the file's own SHA-256 cannot show that they are the same model.
    """
    try:
        with zipfile.ZipFile(keras_file) as zf:
            return hashlib.sha256(zf.read("model.weights.h5")).hexdigest()
    except (OSError, KeyError, zipfile.BadZipFile):
        return None


def _run_facts(run: Path, mel: float | None) -> dict:
    """Teacher weights' SHA-256s, and the distilled student's int8 bytes and check result, of one run folder."""
    out = dict.fromkeys(FACT_KEYS)
    meta = run / "run.json"
    if not meta.is_file():
        return out
    models = json.loads(meta.read_text())["models"]
    teachers = [_weights_sha256(run / m["file"]) for m in models if m["role"] == "teacher"]
    out["teacher_sha256"] = None if not teachers or None in teachers else sorted(teachers)
    export = export_folder(run, mel=mel)
    tfl, side = export / f"{DECIDES}.int8.tflite", export / f"{DECIDES}.int8.json"
    if tfl.is_file():
        out["int8_bytes"] = tfl.stat().st_size
    if side.is_file():
        out["check_passed"] = bool(json.loads(side.read_text())["check"]["passed"])
    return out


def facts(root: Path, teachers: str, seeds: list[int], mel: float | None) -> dict:
    """``{seed: {variant: _run_facts}}`` for both variants' runs under ``root`` (recipes.py's --root and --teachers)."""
    return {seed: {v: _run_facts(run_folder(root, v, teachers, seed), mel) for v in (BASE, DEEP)} for seed in seeds}


def _absent(run_facts: dict) -> bool:
    """True when nothing of one run was found (its folder is gone)."""
    return all(v is None for v in run_facts.values())


def _recorded_seed(recorded: dict, seed: int) -> tuple[dict | None, dict | None]:
    """(facts, paired differences) that ``recorded`` holds for ``seed``, or (None, None) when it holds none."""
    try:
        seeds = [int(x) for x in recorded.get("seeds") or list(recorded["runs"])]  # older files: the runs' order
        if seed not in seeds:
            return None, None
        j = seeds.index(seed)
        facts = recorded["runs"][str(seed)]
        paired = {k: float(recorded["verdict"]["paired"][k][j]) for k, _ in KEYS}
        if any(set(facts[v]) != set(FACT_KEYS) or _absent(facts[v]) for v in (BASE, DEEP)):
            return None, None
        return facts, paired
    except (KeyError, IndexError, TypeError, ValueError, AttributeError):
        return None, None


def with_recorded(found: dict, doc: dict, recorded: dict | None, tol: float = 1e-9) -> tuple[dict, dict]:
    """Fill the seeds whose run folders are missing from an earlier verdict JSON of this script.

    A seed is filled only when all its files are missing (a partly missing seed stays as found: the
    pairing then fails), and only from recorded facts of the same runs: the recorded paired differences
    of the distilled student must equal the pooled ones.

    Args:
        found: ``facts(...)``.
        doc: the pooled recipes doc the verdict is for.
        recorded: an earlier ``deep_student_decision.json`` (or None).
        tol: how close the recorded paired differences must be to the pooled ones.

    Returns:
        (found with the recorded seeds filled in, {seed: where its facts came from, or why they are missing}).

    Example:
        >>> found, why = with_recorded(facts(root, "efficientnet_lite0", [0, 1, 2], 0.6), doc, old)  # doctest: +SKIP
    """
    found, why = dict(found), {}
    row = doc["variants"][DEEP]["models"][DECIDES]
    for i, seed in enumerate(doc["seeds"]):
        missing = [v for v in (BASE, DEEP) if _absent(found[seed][v])]
        if not missing:
            continue
        if len(missing) < 2:
            why[seed] = f"{missing[0]}'s files are missing under --root (not filled from --recorded)"
            continue
        facts, paired = _recorded_seed(recorded, seed) if recorded else (None, None)
        if facts is None:
            why[seed] = "files missing under --root" + (", and --recorded holds no facts for it" if recorded else "")
        elif all(abs(paired[k] - row[f"{k}_vs_baseline"]["values"][i]) <= tol for k, _ in KEYS):
            found[seed] = facts
            why[seed] = "from --recorded: its folders are gone, the facts were read from them earlier"
        else:
            why[seed] = "--recorded holds other runs of this seed (their paired differences differ): not used"
    return found, why


def decide(doc: dict, found: dict) -> dict:
    """The rule of deep_student_rule.md on the distilled student's paired int8 test differences.

    Args:
        doc: a pooled recipes doc (``ema_decision.pool(..., variant=DEEP)``).
        found: ``facts(...)`` for the same seeds.

    Returns:
        {paired, mean, checks, same_teacher (per seed), paired_ok, finished, adopt}: ``adopt`` needs every
        check, the pairing
        (equal teacher weights per seed in both variants, every file found) and ``finished`` (seeds 0, 1
        and 2 all there: with fewer the rule is not applied).
    """
    row = doc["variants"][DEEP]["models"][DECIDES]
    d = {k: row[f"{k}_vs_baseline"]["values"] for k, _ in KEYS}
    mean = {k: sum(v) / len(v) for k, v in d.items()}
    sizes = [f[DEEP]["int8_bytes"] for f in found.values()]
    fails = {v: [f[v]["check_passed"] is False for f in found.values()] for v in (BASE, DEEP)}
    checks = {
        "balanced accuracy: mean gain > 0 and at least 2 of 3 seeds gain":
            mean["int8_balanced_accuracy"] > 0 and sum(v > 0 for v in d["int8_balanced_accuracy"]) >= 2,
        "ROC-AUC: mean gain > 0": mean["int8_roc_auc"] > 0,
        "accuracy: mean change >= 0": mean["int8_accuracy"] >= 0,
        "melanoma sensitivity: mean change >= -2 points": mean["int8_melanoma_sensitivity"] >= -0.02,
        f"int8 file <= {MAX_BYTES:,} bytes": all(s is not None and s <= MAX_BYTES for s in sizes),
        "int8 check fails no more often than the earlier student's": sum(fails[DEEP]) <= sum(fails[BASE]),
    }
    same_teacher = {seed: f[BASE]["teacher_sha256"] is not None
                    and f[BASE]["teacher_sha256"] == f[DEEP]["teacher_sha256"] for seed, f in found.items()}
    paired_ok = all(same_teacher.values()) and all(
        None not in (f[v]["check_passed"] for v in (BASE, DEEP)) for f in found.values())
    finished = sorted(doc["seeds"]) == [0, 1, 2]
    return {"paired": d, "mean": mean, "checks": checks, "same_teacher": same_teacher, "paired_ok": paired_ok,
            "finished": finished, "adopt": finished and paired_ok and all(checks.values())}


def render(doc: dict, verdict: dict, found: dict, command: str, why: dict | None = None) -> str:
    seeds = doc["seeds"]
    lines = ["# Does the deeper student become the default? (benchmarks/deep_student_rule.md)", "", f"`{command}`",
             "", f"From `{doc['command']}`.", "",
             "Paired by seed, `--student-convs 2 --student-filters 24,40,80` minus the earlier student "
             f"(`{BASE}`: `--student-convs 1 --student-filters 32,64,128`), int8 files "
             f"exported as kdtool did by default then (`--melanoma-sensitivity {doc.get('melanoma_sensitivity')}`, "
             "no majority offset), "
             "test split, points. Each seed's pair of runs is on one machine: "
             + ", ".join(f"seed {s}: {(doc.get('machines') or {}).get(s, '?')}" for s in seeds) + ".", "",
             "| student | metric | " + " | ".join(f"seed {s}" for s in seeds) + " | mean |",
             "|---|---|" + "---|" * (len(seeds) + 1)]
    for student in STUDENTS:
        row = doc["variants"][DEEP]["models"][student]
        for key, label in KEYS:
            vals = row[f"{key}_vs_baseline"]["values"]
            lines.append(f"| {student} | {label} | " + " | ".join(f"{v * 100:+.1f}" for v in vals)
                         + f" | {sum(vals) / len(vals) * 100:+.1f} |")
    lines += ["", f"Distilled student's int8 file and export check (`--max-drop` on validation), {BASE} / {DEEP}:", ""]
    for seed, f in found.items():
        b, d = f[BASE], f[DEEP]
        lines.append(f"- seed {seed}: {b['int8_bytes']} / {d['int8_bytes']} bytes; check passed "
                     f"{b['check_passed']} / {d['check_passed']}; same teacher weights "
                     f"{verdict['same_teacher'][seed]}"
                     + (f" ({(why or {})[seed]})" if seed in (why or {}) else ""))
    if not verdict["finished"]:
        lines += ["", f"**Unfinished: seeds {seeds} of 0, 1 and 2. The rule is not applied; the default student "
                      "stays as it is until the missing seeds of both variants have run and are pooled with these.**"]
        return "\n".join(lines) + "\n"
    lines += ["", "The rule (distilled student only):", ""]
    lines += [f"- {'met' if ok else 'NOT met'}: {name}" for name, ok in verdict["checks"].items()]
    if not verdict["paired_ok"]:
        lines += ["", "The pairing is NOT confirmed (a teacher differs between the variants, or a run's files are "
                      "missing under --root): the rule is not applied."]
    lines += ["", "**Verdict: " + ("adopt `--student-convs 2 --student-filters 24,40,80` as the default"
                                   if verdict["adopt"] else "the default student stays as it is") + ".**"]
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--recipes", required=True, action="append",
                    help="recipes.py JSON with both variants and --int8; repeat it to pool seeds from several files.")
    ap.add_argument("--root", default=str(ROOT / "runs" / "recipes"), help="recipes.py's --root (runs' files).")
    ap.add_argument("--teachers", default="efficientnet_lite0", help="recipes.py's --teachers.")
    ap.add_argument("--recorded", help="An earlier verdict JSON of this script: its facts stand in for seeds whose "
                                       "run folders are missing under --root, if its paired differences match.")
    ap.add_argument("--json", default=str(HERE / "deep_student_decision.json"), help="Verdict JSON.")
    ap.add_argument("--md", default=str(HERE / "deep_student_decision.md"), help="Verdict Markdown.")
    args = ap.parse_args(argv)
    doc = load_pooled(ap, args.recipes, DEEP)
    found = facts(Path(args.root), args.teachers, doc["seeds"], doc.get("melanoma_sensitivity"))
    recorded = None
    if args.recorded:
        try:
            recorded = json.loads(Path(args.recorded).read_text())
        except (OSError, ValueError) as exc:
            ap.error(f"{args.recorded}: not a readable verdict JSON ({exc})")
        if not isinstance(recorded, dict) or not isinstance(recorded.get("runs"), dict):
            ap.error(f"{args.recorded}: not a verdict JSON of this script (no 'runs' object)")
    found, why = with_recorded(found, doc, recorded)
    verdict = decide(doc, found)
    command = " ".join(["python benchmarks/deep_student_decision.py", *(argv if argv is not None else sys.argv[1:])])
    out = {"command": command, "recipes": doc["command"], "seeds": doc["seeds"], "machines": doc["machines"],
           "verdict": verdict,
           "runs": {str(s): f for s, f in found.items()}, "facts_from": {str(s): w for s, w in why.items()}}
    write_results(out, args.json, args.md, render(doc, verdict, found, command, why))
    print("verdict: " + ("unfinished (fewer than seeds 0, 1, 2)" if not verdict["finished"]
                         else "adopt" if verdict["adopt"] else "keep the default student"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
