"""Reports: a summary table (terminal + markdown) and a forget-efficacy vs model-utility
scatter (PNG) with the reference models marked.

Conventions: *model utility* (x) as the task reports it (higher = more utility kept);
*forget efficacy* (y) is ``log10(forget quality)`` when a retain-model reference exists
(higher = closer to the retain-only model; 0 is the best possible), otherwise
``1 − forget ROUGE-L`` (higher = less of the forget answers reproduced). A task that
declares a frontier (``results.json`` ``frontier``: efficacy, utility, efficacy direction)
gets those axes, and its ``headline`` keys as the columns.

The *Pareto front* of the runs (references excluded) is the set of runs no other run beats
on both axes at once (ties kept); it is drawn on the plot. ``report.html``
(:mod:`bench.report_html`) is written beside ``report.md``; a sweep directory (holding
``sweep.json``) stands for its finished runs.

Confidence intervals are read from a run's results when present, in any of these forms:
``results["intervals"][key] = [low, high]`` (or ``{"low": .., "high": ..}``),
``aggregates[key + "_ci"] = [low, high]``, ``aggregates[key + "_ci_low"]`` /
``[key + "_ci_high"]``, or ``aggregates[key] = {"value": v, "ci": [low, high]}``.
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


def value(agg: dict[str, Any], key: str) -> Any:
    """``agg[key]``, unwrapping ``{"value": v, ...}``."""
    v = agg.get(key)
    return v.get("value") if isinstance(v, dict) else v


def interval(res: dict[str, Any], key: str) -> tuple[float, float] | None:
    """The confidence interval of aggregate ``key`` held in ``res`` (forms: module docstring)."""
    def pair(v: Any) -> tuple[float, float] | None:
        if isinstance(v, dict):
            v = [v.get("low", v.get("lo")), v.get("high", v.get("hi"))]
        if (isinstance(v, (list, tuple)) and len(v) == 2
                and all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in v)):
            return float(v[0]), float(v[1])
        return None

    agg = res.get("aggregates") or {}
    for cand in ((res.get("intervals") or {}).get(key), agg.get(f"{key}_ci"),
                 [agg.get(f"{key}_ci_low"), agg.get(f"{key}_ci_high")],
                 agg[key].get("ci") if isinstance(agg.get(key), dict) else None):
        got = pair(cand)
        if got is not None:
            return got
    return None


def _row(res: dict[str, Any], label: str | None = None) -> dict[str, Any]:
    agg = res.get("aggregates", {})
    row = {"run": label or f"{res['task']} / {res['method']} / {res['model']}",
           "headline": list(res.get("headline") or []), "frontier": res.get("frontier")}
    row.update({k: value(agg, k) for k in agg})
    row["_ci"] = {k: ci for k in agg if (ci := interval(res, k)) is not None}
    row["_res"] = res
    return row


def rows_for(run_dirs: Sequence[Path | str], with_references: bool = True) -> list[dict[str, Any]]:
    """Table rows for the runs, plus (once each) the reference runs they name."""
    rows, seen = [], set()
    loaded = [load_results(d) for d in run_dirs]
    opts = [(r.get("config") or {}).get("method_options") or {} for r in loaded]
    # a label shows the options (and seed) that tell apart runs of the same task, method and model
    groups: dict[tuple[str, str, str], list[dict[str, Any]]] = {}
    for r, o in zip(loaded, opts):
        groups.setdefault((r["task"], r["method"], r["model"]), []).append({**o, "seed": r.get("seed")})
    for run_dir, res, o in zip(run_dirs, loaded, opts):
        label = f"{res['task']} / {res['method']} / {res['model']}"
        same = groups[(res["task"], res["method"], res["model"])]
        varying = sorted({k for g in same for k in g if len({repr(p.get(k)) for p in same}) > 1})
        o = {**o, "seed": res.get("seed")}
        if varying:
            shown = [k for k in varying if k in o]  # only the options this run's method has
            if shown:
                label += " (" + ", ".join(f"{k}={o.get(k)}" for k in shown) + ")"
        rows.append({**_row(res, label), "kind": "run", "dir": str(run_dir)})
        if not with_references:
            continue
        for kind, ref in (res.get("references") or {}).items():
            if ref and ref not in seen and Path(ref, "results.json").exists():
                seen.add(ref)
                r = load_results(ref)
                label = {"retain": "reference: retain-only model", "target": "reference: target before unlearning",
                         }.get(kind, f"reference: {kind} model")  # e.g. a task's retrained run
                rows.append({**_row(r, label), "kind": kind, "dir": str(ref)})
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


def efficacy_higher_is_better(rows: list[dict[str, Any]]) -> bool:
    """The direction of the y axis: the declared frontier's, else higher is better."""
    key, _ = efficacy_axis(rows)
    for r in rows:
        f = r.get("frontier") or {}
        if f.get("efficacy") == key:
            return bool(f.get("efficacy_higher_is_better", True))
    return True


def pareto_front(points: Sequence[tuple[float, float]], y_higher_is_better: bool = True) -> list[int]:
    """Indices of the non-dominated points (x higher is better; y as given), sorted by x.
    A point is dominated when another is at least as good on both axes and better on one."""
    sign = 1.0 if y_higher_is_better else -1.0
    out = []
    for i, (xi, yi) in enumerate(points):
        dominated = any(
            xj >= xi and sign * yj >= sign * yi and (xj > xi or sign * yj > sign * yi)
            for j, (xj, yj) in enumerate(points) if j != i
        )
        if not dominated:
            out.append(i)
    return sorted(out, key=lambda i: (points[i][0], sign * points[i][1]))


def scatter(rows: list[dict[str, Any]], out_png: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.0, 4.8))  # the legend goes beside it
    key, ylabel = efficacy_axis(rows)
    style = {"run": dict(marker="o", s=60), "retain": dict(marker="*", s=220, c="tab:green"),
             "target": dict(marker="X", s=120, c="tab:red")}
    ukey = utility_key(rows)
    run_pts: list[tuple[float, float]] = []
    for r in rows:
        y, x = efficacy(r, key), r.get(ukey)
        if not isinstance(x, (int, float)) or not isinstance(y, (int, float)):
            continue
        if r["kind"] == "run":
            run_pts.append((float(x), float(y)))
        ax.scatter([x], [y], label=r["run"], zorder=3, **style.get(r["kind"], style["run"]))
    front = pareto_front(run_pts, efficacy_higher_is_better(rows))
    if front:
        # the staircase boundary of what the front dominates
        ax.step([run_pts[i][0] for i in front], [run_pts[i][1] for i in front], where="pre",
                color="black", alpha=0.6, lw=1.2, ls="--", zorder=2, label="Pareto front of the runs")
    ax.set_xlabel(f"{ukey.replace('_', ' ')} (higher is better)")
    ax.set_ylabel(ylabel)
    ax.set_title("Forget efficacy vs model utility")
    ax.grid(alpha=0.3)
    if ax.collections:  # beside the axes, never over a point
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0)
    out_png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out_png, dpi=120, bbox_inches="tight")
    plt.close(fig)
    return out_png


MAX_CURVE_PANELS = 16


def curve_keys(res: dict[str, Any]) -> list[str]:
    """The keys a run's ``curves`` (``bench run --eval-every``) hold a number for: every
    derived aggregates first (e.g. the frontier's), then every ``<set>/<metric>``; at most
    :data:`MAX_CURVE_PANELS`."""
    keys: list[str] = []
    for part in ("aggregates", "sets"):
        for curve in res.get("curves") or []:
            for pt in curve.get("points") or []:
                for k, v in (pt.get(part) or {}).items():
                    if isinstance(v, (int, float)) and not isinstance(v, bool) and k not in keys:
                        keys.append(k)
    return keys[:MAX_CURVE_PANELS]


def curve_figure(res: dict[str, Any], title: str | None = None) -> Any:
    """A matplotlib figure of a run's curves: one panel per :func:`curve_keys` key, the value
    against the optimizer step, one line per task step (and per ``train()`` call); the
    final evaluation's value (``sets``/``aggregates`` of the last step) as a dashed line.
    ``None`` when the run has no curve point."""
    keys = curve_keys(res)
    if not keys:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    cols = min(4, len(keys))
    nrows = -(-len(keys) // cols)
    fig, axes = plt.subplots(nrows, cols, figsize=(3.4 * cols, 2.6 * nrows), squeeze=False)
    curves = res.get("curves") or []
    final_sets = res.get("sets") or {}
    for ax, key in zip(axes.flat, keys):
        for curve in curves:
            lines: dict[str, list[tuple[float, float]]] = {}
            for pt in curve.get("points") or []:
                v = (pt.get("sets") or {}).get(key, (pt.get("aggregates") or {}).get(key))
                if isinstance(v, (int, float)):
                    label = str(curve.get("step", "")) if len(curves) > 1 else ""
                    if pt.get("train_call") and len({q.get("train_call") for q in curve["points"]}) > 1:
                        label = f"{label} {pt['train_call']}".strip()
                    lines.setdefault(label, []).append((pt["train_step"], float(v)))
            for label, pts in lines.items():
                ax.plot([x for x, _ in pts], [y for _, y in pts], marker="o", ms=3, label=label or None)
        set_name, _, metric = key.partition("/")
        final = ((final_sets.get(set_name) or {}).get("aggregates") or {}).get(metric) if metric else \
            (res.get("aggregates") or {}).get(key)
        if isinstance(final, (int, float)) and len(curves) == 1:
            ax.axhline(final, color="gray", ls="--", lw=0.8, label="final")
        ax.set_title(key, fontsize=9)
        ax.set_xlabel("optimizer step", fontsize=8)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(keys):]:
        ax.set_visible(False)
    handles, labels = axes.flat[0].get_legend_handles_labels()
    if labels:
        fig.legend(handles, labels, fontsize=7, loc="upper right")
    fig.suptitle(title or f"{res.get('task')} / {res.get('method')} / {res.get('model')}: along training",
                 fontsize=10)
    fig.tight_layout()
    return fig


def curve_png(res: dict[str, Any], out_png: Path, title: str | None = None) -> Path | None:
    """Write :func:`curve_figure` to ``out_png``; ``None`` (nothing written) without curves."""
    fig = curve_figure(res, title)
    if fig is None:
        return None
    import matplotlib.pyplot as plt

    out_png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out_png, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return out_png


def curve_table(res: dict[str, Any]) -> str:
    """The curve points as a markdown table (optimizer step, epoch, each curve key)."""
    keys = curve_keys(res)
    lines = []
    for curve in res.get("curves") or []:
        pts = curve.get("points") or []
        if not pts:
            if curve.get("note"):
                lines += [f"Step {curve.get('step')}: {curve['note']}", ""]
            continue
        if len(res.get("curves") or []) > 1:
            lines += [f"Step {curve.get('step')}:", ""]
        lines.append("| optimizer step | epoch | " + " | ".join(keys) + " |")
        lines.append("|---:|---:|" + "---:|" * len(keys))
        for pt in pts:
            vals = [(pt.get("sets") or {}).get(k, (pt.get("aggregates") or {}).get(k)) for k in keys]
            lines.append(f"| {pt.get('train_step')} | {_fmt(pt.get('epoch'))} | " + " | ".join(_fmt(v) for v in vals) + " |")
        lines.append("")
    return "\n".join(lines)


def attack_table(name: str, rec: dict[str, Any], markdown: bool = False) -> str:
    """One attack's before/after table (``results["attacks"][name]``): per metric key the
    unattacked value, the attacked value, recovery = after − before, the target run's value
    and the share of the unlearning undone = (after − before) / (target − before); a heading
    line with the options and, when ``undone_median >= undone_threshold`` (0.5, see
    :mod:`bench.attacks.base`), the mark ``FORGETTING UNDONE``."""
    opts = ", ".join(f"{k}={v}" for k, v in (rec.get("options") or {}).items())
    mean = rec.get("undone_median")
    mark = ""
    if rec.get("undone"):
        mark = f"  ** FORGETTING UNDONE (median undone {_fmt(mean)} >= {rec.get('undone_threshold')}) **"
    elif not rec.get("target_known"):
        mark = "  (no target run: undone share unknown)"
    head = (f"attack {name} [{rec.get('kind')}] on {', '.join(rec.get('sets') or [])}: "
            f"median undone over forget metrics {_fmt(mean)}{mark}")
    cols = ["metric", "before", "after", "recovery", "target", "undone"]
    body = [[k] + [_fmt(m.get(c)) for c in cols[1:]] for k, m in (rec.get("metrics") or {}).items()]
    t = rec.get("timings") or {}
    foot = (f"options: {opts}; attack {_fmt(t.get('attack_s'))} s, re-evaluation "
            f"{_fmt(t.get('answer_s'))} s + scoring {_fmt(t.get('score_s'))} s")
    if markdown:
        lines = [f"**{head}**", "", "| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
        lines += ["| " + " | ".join(b) + " |" for b in body]
        return "\n".join(lines + ["", foot])
    widths = [max(len(str(x)) for x in col) for col in zip(cols, *body)]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    return "\n".join([head] + ["  " + fmt.format(*cols)] + ["  " + fmt.format(*b) for b in body] + ["  " + foot])


def attack_tables(res: dict[str, Any], markdown: bool = False) -> str:
    """Every attack of one run's results, one :func:`attack_table` each ("" without attacks)."""
    return "\n\n".join(attack_table(n, r, markdown) for n, r in (res.get("attacks") or {}).items())


def write_report(run_dirs: Sequence[Path | str], out_dir: Path | str) -> tuple[str, Path, Path]:
    """Write ``report.md``, ``frontier.png`` and ``report.html`` into ``out_dir``; returns
    (terminal table, md, png). A sweep directory (``sweep.json`` inside) stands for its
    finished runs."""
    from bench.report_html import write_html

    out = Path(out_dir)
    run_dirs = expand_dirs(run_dirs)
    rows = rows_for(run_dirs)
    png = scatter(rows, out / "frontier.png")
    write_html(rows, columns([r["_res"] for r in rows]), out / "report.html", frontier_png=png)
    md = out / "report.md"
    text = ["# Unlearning report", "", table(rows, markdown=True), "",
            "Forget quality: KS-test p-value of truth ratios vs the retain-only model (higher = closer; "
            "log10 shown). Model utility: harmonic mean of 9 retain / real-author / world-fact numbers.",
            "", f"![forget efficacy vs model utility]({png.name})", ""]
    for i, d in enumerate(run_dirs):
        res = load_results(d)
        label = f"{res['task']} / {res['method']} / {res['model']}"
        if res.get("curves"):
            cp = curve_png(res, out / f"curves-{i}.png", title=f"{label}: along training")
            text += [f"## Along training: {label}", "",
                     f"Evaluated every {res['curves'][0].get('eval_every')} "
                     f"({'optimizer steps' if res['curves'][0].get('eval_every') != 'epoch' else 'epoch end'}) "
                     f"on {', '.join(res['curves'][0].get('eval_sets') or [])}; dashed: the final evaluation.", ""]
            if cp is not None:
                text += [f"![{label} along training]({cp.name})", ""]
            text += [curve_table(res), ""]
        if res.get("attacks"):
            text += [f"## Attacks: {res['task']} / {res['method']} / {res['model']}", "",
                     attack_tables(res, markdown=True), ""]
    atomic_write_text(md, "\n".join(text))
    return table(rows), md, png


def expand_dirs(dirs: Sequence[Path | str]) -> list[Path | str]:
    """``dirs`` with each sweep directory (``sweep.json`` inside, no ``results.json``)
    replaced by its finished trials' run directories, in trial order."""
    out: list[Path | str] = []
    for d in dirs:
        manifest = Path(d) / "sweep.json"
        if not (Path(d) / "results.json").exists() and manifest.exists():
            try:
                doc = json.loads(manifest.read_text())
            except json.JSONDecodeError as e:
                raise BenchError(f"{manifest}: not valid JSON ({e.msg})") from e
            found = [t["run_dir"] for t in doc.get("trials", [])
                     if t.get("run_dir") and Path(t["run_dir"], "results.json").exists()]
            if not found:
                raise BenchError(f"sweep '{d}' has no finished trial yet")
            out.extend(found)
        else:
            out.append(d)
    return out
