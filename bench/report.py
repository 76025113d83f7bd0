"""Reports: a summary table (terminal + markdown) and a forget-efficacy vs model-utility
scatter (PNG) with the reference models marked.

Conventions: *model utility* (x) as the task reports it (higher = more utility kept);
*forget efficacy* (y) is ``log10(forget quality)`` when a retain-model reference exists
(higher = closer to the retain-only model; 0 is the best possible), otherwise
``1 − forget ROUGE-L`` (higher = less of the forget answers reproduced).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench.errors import BenchError
from bench.paths import atomic_write_text

COLUMNS = [
    ("model_utility", "MU"),
    ("forget_quality", "FQ"),
    ("log10_forget_quality", "log10 FQ"),
    ("forget_rouge_l", "forget ROUGE-L"),
    ("retain_rouge_l", "retain ROUGE-L"),
    ("forget_probability", "forget Prob"),
    ("forget_truth_ratio", "forget TR"),
    ("forget_extraction_strength", "forget ES"),
]


def load_results(run_dir: Path | str) -> dict[str, Any]:
    p = Path(run_dir) / "results.json"
    if not p.exists():
        raise BenchError(f"'{run_dir}' is not a finished run directory (no results.json)")
    try:
        return json.loads(p.read_text())
    except json.JSONDecodeError as e:
        raise BenchError(f"{p}: not valid JSON ({e.msg} at line {e.lineno})") from e


def _fmt(v: Any) -> str:
    if v is None:
        return "n/a"
    if isinstance(v, float):
        return f"{v:.4g}" if abs(v) < 1e-3 and v != 0 else f"{v:.4f}"
    return str(v)


LABELS = dict(COLUMNS)


def columns(results: Sequence[dict[str, Any]]) -> list[tuple[str, str]]:
    """The table's columns: the headline keys the runs' tasks declare (``results.json``
    ``headline``, in first-seen order), else TOFU's."""
    keys: list[str] = []
    for res in results:
        for k in res.get("headline") or []:
            if k not in keys:
                keys.append(k)
    if not keys:
        return list(COLUMNS)
    return [(k, LABELS.get(k, k)) for k in keys]


def _row(res: dict[str, Any], label: str | None = None) -> dict[str, Any]:
    agg = res.get("aggregates", {})
    row = {"run": label or f"{res['task']} / {res['method']} / {res['model']}",
           "headline": list(res.get("headline") or []), "frontier": res.get("frontier")}
    row.update(agg)
    return row


def rows_for(run_dirs: Sequence[Path | str], with_references: bool = True) -> list[dict[str, Any]]:
    """Table rows for the runs, plus (once each) the reference runs they name."""
    rows, seen = [], set()
    loaded = [load_results(d) for d in run_dirs]
    opts = [(r.get("config") or {}).get("method_options") or {} for r in loaded]
    varying = sorted({k for o in opts for k in o if len({repr(p.get(k)) for p in opts}) > 1})
    for res, o in zip(loaded, opts):
        label = f"{res['task']} / {res['method']} / {res['model']}"
        if varying:
            label += " (" + ", ".join(f"{k}={o.get(k)}" for k in varying) + ")"
        rows.append({**_row(res, label), "kind": "run"})
        if not with_references:
            continue
        for kind, ref in (res.get("references") or {}).items():
            if ref and ref not in seen and Path(ref, "results.json").exists():
                seen.add(ref)
                r = load_results(ref)
                label = {"retain": "reference: retain-only model", "target": "reference: target before unlearning"}[kind]
                rows.append({**_row(r, label), "kind": kind})
    return rows


def table(rows: list[dict[str, Any]], markdown: bool = False) -> str:
    cols = columns([{"headline": r.get("headline")} for r in rows])
    heads = ["run"] + [h for _, h in cols]
    body = [[r["run"]] + [_fmt(r.get(k)) for k, _ in cols] for r in rows]
    if markdown:
        lines = ["| " + " | ".join(heads) + " |", "|" + "---|" * len(heads)]
        lines += ["| " + " | ".join(b) + " |" for b in body]
        return "\n".join(lines)
    widths = [max(len(str(x)) for x in col) for col in zip(heads, *body)]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    return "\n".join([fmt.format(*heads)] + [fmt.format(*b) for b in body])


def efficacy_axis(rows: list[dict[str, Any]]) -> tuple[str, str]:
    """The one y metric for all rows: the task's declared frontier efficacy key when the
    runs declare one other than TOFU's; for TOFU-style tasks log10 forget quality when any
    row has it, else 1 − forget ROUGE-L (never a mix of the two scales)."""
    declared = {(f or {}).get("efficacy") for r in rows if (f := r.get("frontier"))} - {None, ""}
    if len(declared) == 1 and (key := next(iter(declared))) not in ("log10_forget_quality",):
        hib = next((r["frontier"].get("efficacy_higher_is_better", True) for r in rows if r.get("frontier")), True)
        return key, f"forget efficacy: {key} ({'higher' if hib else 'lower'} is better)"
    if any(r.get("log10_forget_quality") is not None for r in rows):
        return "log10_forget_quality", "forget efficacy: log10 forget quality (higher is better)"
    return "forget_rouge_l", "forget efficacy: 1 − forget ROUGE-L (higher is better)"


def efficacy(row: dict[str, Any], key: str) -> float | None:
    """``row``'s y value on axis ``key``. The retain-only model's forget quality against
    itself is 1 (the KS test of a sample with itself), so log10 FQ = 0 for it."""
    if key == "log10_forget_quality":
        if row.get(key) is None and row.get("kind") == "retain":
            return 0.0
        return row.get(key)
    if key == "forget_rouge_l":
        v = row.get("forget_rouge_l")
        return None if v is None else 1 - v
    return row.get(key)


def utility_key(rows: list[dict[str, Any]]) -> str:
    """The x metric: the task's declared frontier utility key (default model utility)."""
    declared = {(f or {}).get("utility") for r in rows if (f := r.get("frontier"))} - {None, ""}
    return next(iter(declared)) if len(declared) == 1 else "model_utility"


def scatter(rows: list[dict[str, Any]], out_png: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.8))
    key, ylabel = efficacy_axis(rows)
    style = {"run": dict(marker="o", s=60), "retain": dict(marker="*", s=220, c="tab:green"),
             "target": dict(marker="X", s=120, c="tab:red")}
    ukey = utility_key(rows)
    for r in rows:
        y, x = efficacy(r, key), r.get(ukey)
        if x is None or y is None:
            continue
        ax.scatter([x], [y], label=r["run"], **style.get(r["kind"], style["run"]))
    ax.set_xlabel(f"{ukey.replace('_', ' ')} (higher is better)")
    ax.set_ylabel(ylabel)
    ax.set_title("Forget efficacy vs model utility")
    ax.grid(alpha=0.3)
    if ax.collections:
        ax.legend(fontsize=7, loc="best")
    fig.tight_layout()
    out_png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out_png, dpi=120)
    plt.close(fig)
    return out_png


def write_report(run_dirs: Sequence[Path | str], out_dir: Path | str) -> tuple[str, Path, Path]:
    """Write ``report.md`` and ``frontier.png`` into ``out_dir``; returns (terminal table, md, png)."""
    out = Path(out_dir)
    rows = rows_for(run_dirs)
    png = scatter(rows, out / "frontier.png")
    md = out / "report.md"
    text = ["# Unlearning report", "", table(rows, markdown=True), "",
            "Forget quality: KS-test p-value of truth ratios vs the retain-only model (higher = closer; "
            "log10 shown). Model utility: harmonic mean of 9 retain / real-author / world-fact numbers.",
            "", f"![forget efficacy vs model utility]({png.name})", ""]
    atomic_write_text(md, "\n".join(text))
    return table(rows), md, png
