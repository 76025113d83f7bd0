"""``report.html``: one self-contained page of a set of runs (no network, images inline).

Sections, each present only when there is something to show:

* **Leaderboard** — one row per run and per reference run (marked), the headline columns
  (:func:`bench.report.columns`: the tasks' headline keys), a run's confidence interval under its value when
  its results hold one; sortable: a click on a header sorts by it (numbers numerically,
  text alphabetically; a second click reverses; ``n/a`` always last).
* **Across seeds** — runs that differ only in their seed, grouped: the mean of each column
  ± the half-width of its 95 % Student-t interval over seeds (``t_{0.975, n-1} · s / √n``,
  ``s`` the sample standard deviation), with ``n`` shown; only groups of two or more.
* **Frontier** — the forget-efficacy vs utility plot with the Pareto front of the runs and
  the reference models marked (the PNG of :func:`bench.report.scatter`, inlined as base64).
* **Along steps** — for multi-step runs (results ``steps`` with two or more rows: either
  ``{"step"|"name": .., "aggregates": {..}}`` or flat ``{"step": .., key: number}``): one
  plot per headline key found in the rows (else the first six numeric keys), a line per run.
* **Along training** — for runs whose results hold ``curves`` (``bench run --eval-every``):
  one figure per run, a panel per metric against the optimizer step
  (:func:`bench.report.curve_figure`).
* **Attacks** — for runs whose results hold ``attacks``: a mapping ``attack -> {key:
  value}`` or a list of such rows (``"attack"``/``"name"`` naming each), one table per run;
  non-scalar values are shown as compact JSON.
* **Configs** — each run's ``config`` (the resolved spec) as JSON; the ``config`` link in
  its leaderboard row opens and scrolls to it (one click).

The page embeds a short script (sorting, opening configs) and no external resource.
"""

from __future__ import annotations

import base64
import html
import io
import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench.paths import atomic_write_text

CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:24px;color:#222;max-width:1400px}
h1{font-size:22px;margin:0 0 4px} h2{font-size:17px;margin:28px 0 8px;border-bottom:1px solid #ddd;padding-bottom:4px}
p.meta{color:#666;margin:0 0 12px;font-size:13px}
table{border-collapse:collapse;font-size:13px;margin:6px 0 12px}
th,td{border:1px solid #ddd;padding:4px 8px;text-align:right;white-space:nowrap}
th{background:#f4f4f4;position:sticky;top:0}
table.sortable th{cursor:pointer;user-select:none}
table.sortable th[aria-sort=ascending]::after{content:" \\25B2";font-size:10px}
table.sortable th[aria-sort=descending]::after{content:" \\25BC";font-size:10px}
td.text,th.text{text-align:left}
tr.ref td{background:#f7fbf2;font-style:italic}
tr.target td{background:#fdf3f2}
span.ci{display:block;color:#777;font-size:11px}
img{max-width:100%;border:1px solid #eee}
pre{background:#f8f8f8;padding:8px;overflow:auto;font-size:12px;max-height:420px}
details{margin:4px 0} summary{cursor:pointer}
.grid{display:flex;flex-wrap:wrap;gap:12px}
.scroll{overflow-x:auto;max-width:100%}
"""

JS = """
(function(){
  function cellValue(row, col){
    var c = row.cells[col];
    return c ? c.getAttribute('data-v') : null;
  }
  function sortBy(table, col, dir){
    var body = table.tBodies[0];
    var rows = Array.prototype.slice.call(body.rows);
    rows.sort(function(a, b){
      var x = cellValue(a, col), y = cellValue(b, col);
      var ex = (x === null || x === ''), ey = (y === null || y === '');
      if (ex && ey) return 0; if (ex) return 1; if (ey) return -1;
      var nx = Number(x), ny = Number(y), c;
      if (!isNaN(nx) && !isNaN(ny)) c = nx - ny; else c = String(x).localeCompare(String(y));
      return dir === 'ascending' ? c : -c;
    });
    rows.forEach(function(r){ body.appendChild(r); });
    Array.prototype.forEach.call(table.tHead.rows[0].cells, function(th, i){
      if (i === col) th.setAttribute('aria-sort', dir); else th.removeAttribute('aria-sort');
    });
  }
  window.benchSort = sortBy;
  document.querySelectorAll('table.sortable').forEach(function(table){
    Array.prototype.forEach.call(table.tHead.rows[0].cells, function(th, i){
      th.addEventListener('click', function(){
        var cur = th.getAttribute('aria-sort');
        var dir = cur === 'descending' ? 'ascending' : (cur === 'ascending' ? 'descending'
                  : (th.classList.contains('text') ? 'ascending' : 'descending'));
        sortBy(table, i, dir);
      });
    });
  });
  function openConfig(id){
    var d = document.getElementById(id);
    if (d && d.tagName === 'DETAILS'){ d.open = true; d.scrollIntoView(); }
  }
  document.querySelectorAll('a.cfg').forEach(function(a){
    a.addEventListener('click', function(){ openConfig(a.getAttribute('href').slice(1)); });
  });
  if (location.hash) openConfig(location.hash.slice(1));
})();
"""


def _e(x: Any) -> str:
    return html.escape(str(x), quote=True)


def _num(v: Any) -> float | None:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return None
    return None if math.isnan(v) else float(v)


def _fmt(v: Any) -> str:
    from bench.report import _fmt as fmt

    return fmt(v)


def _png_data(path_or_bytes: Path | bytes) -> str:
    data = path_or_bytes if isinstance(path_or_bytes, bytes) else Path(path_or_bytes).read_bytes()
    return "data:image/png;base64," + base64.b64encode(data).decode("ascii")


def _fig_bytes(fig: Any) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    return buf.getvalue()


def _kind_class(kind: str) -> str:
    return {"retain": "ref", "target": "ref target"}.get(kind, "")


def _meta(res: dict[str, Any]) -> dict[str, Any]:
    cfg = res.get("config") or {}
    return {"task": res.get("task"), "method": res.get("method"), "model": res.get("model"),
            "seed": res.get("seed", cfg.get("seed")), "options": cfg.get("method_options") or {}}


def leaderboard(rows: Sequence[dict[str, Any]], columns: Sequence[tuple[str, str]]) -> str:
    heads = ['<th class="text">run</th>', '<th class="text">kind</th>', '<th class="text">task</th>',
             '<th class="text">method</th>', "<th>seed</th>"]
    heads += [f'<th title="{_e(k)}">{_e(h)}</th>' for k, h in columns]
    heads.append('<th class="text">config</th>')
    body = []
    for i, r in enumerate(rows):
        m = _meta(r.get("_res") or {})
        cells = [f'<td class="text" data-v="{_e(r["run"])}">{_e(r["run"])}</td>',
                 f'<td class="text" data-v="{_e(r["kind"])}">{_e(r["kind"])}</td>',
                 f'<td class="text" data-v="{_e(m["task"])}">{_e(m["task"])}</td>',
                 f'<td class="text" data-v="{_e(m["method"])}">{_e(m["method"])}</td>',
                 f'<td data-v="{_e(m["seed"] if m["seed"] is not None else "")}">{_e(m["seed"] if m["seed"] is not None else "")}</td>']
        for k, _ in columns:
            v = r.get(k)
            n = _num(v)
            ci = (r.get("_ci") or {}).get(k)
            extra = f'<span class="ci">[{_fmt(ci[0])}, {_fmt(ci[1])}]</span>' if ci else ""
            cells.append(f'<td data-v="{"" if n is None else repr(n)}">{_e(_fmt(v))}{extra}</td>')
        cells.append(f'<td class="text" data-v="{i}"><a class="cfg" href="#cfg-{i}">config</a></td>')
        body.append(f'<tr class="{_kind_class(r["kind"])}" data-index="{i}">' + "".join(cells) + "</tr>")
    return ('<div class="scroll"><table id="leaderboard" class="sortable"><thead><tr>' + "".join(heads)
            + "</tr></thead><tbody>" + "".join(body) + "</tbody></table></div>")


def t_interval(values: Sequence[float]) -> tuple[float, float] | None:
    """(mean, half-width of the two-sided 95 % Student-t interval) of ``values``; the
    half-width is ``t_{0.975, n-1} · s / √n`` with ``s`` the sample (n−1) standard
    deviation; None for fewer than two values."""
    n = len(values)
    if n < 2:
        return None
    from scipy import stats

    mean = sum(values) / n
    s = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))
    return mean, float(stats.t.ppf(0.975, n - 1)) * s / math.sqrt(n)


def seed_groups(rows: Sequence[dict[str, Any]]) -> list[tuple[dict[str, Any], list[dict[str, Any]]]]:
    """Runs grouped by everything but the seed (task, method, model, options, backend,
    data); groups of two or more, in first-appearance order."""
    groups: dict[str, tuple[dict[str, Any], list[dict[str, Any]]]] = {}
    for r in rows:
        if r["kind"] != "run":
            continue
        res = r.get("_res") or {}
        cfg = dict(res.get("config") or {})
        for k in ("seed", "target", "target_fingerprint", "reference_run", "backend_settings", "engines"):
            cfg.pop(k, None)
        opts = dict(cfg.get("method_options") or {})
        opts.pop("seed", None)
        cfg["method_options"] = opts
        key = json.dumps([res.get("task"), res.get("method"), res.get("model"), cfg], sort_keys=True, default=str)
        groups.setdefault(key, (_meta(res) | {"options": opts}, []))[1].append(r)
    return [g for g in groups.values() if len(g[1]) >= 2]


def seeds_table(rows: Sequence[dict[str, Any]], columns: Sequence[tuple[str, str]]) -> str:
    groups = seed_groups(rows)
    if not groups:
        return ""
    heads = ['<th class="text">task</th>', '<th class="text">method</th>', '<th class="text">model</th>',
             '<th class="text">options</th>', "<th>n seeds</th>"]
    heads += [f'<th title="{_e(k)}">{_e(h)}</th>' for k, h in columns]
    body = []
    all_opts = [meta["options"] for meta, _ in groups]
    varying = sorted({k for o in all_opts for k in o if len({repr(p.get(k)) for p in all_opts}) > 1})
    for meta, members in groups:
        opt_text = ", ".join(f"{k}={meta['options'].get(k)}" for k in varying if k in meta["options"])
        cells = [f'<td class="text" data-v="{_e(meta[k])}">{_e(meta[k])}</td>' for k in ("task", "method", "model")]
        cells.append(f'<td class="text" data-v="{_e(opt_text)}">{_e(opt_text)}</td>')
        cells.append(f'<td data-v="{len(members)}">{len(members)}</td>')
        for k, _ in columns:
            vals = [v for m in members if (v := _num(m.get(k))) is not None]
            ti = t_interval(vals) if len(vals) == len(members) else None
            if ti is None:
                cells.append('<td data-v="">n/a</td>')
            else:
                cells.append(f'<td data-v="{ti[0]!r}">{_e(_fmt(ti[0]))}<span class="ci">± {_e(_fmt(ti[1]))}</span></td>')
        body.append("<tr>" + "".join(cells) + "</tr>")
    return ('<div class="scroll"><table id="seeds" class="sortable"><thead><tr>' + "".join(heads)
            + "</tr></thead><tbody>" + "".join(body) + "</tbody></table></div>")


def _step_rows(res: dict[str, Any]) -> list[tuple[str, dict[str, float]]]:
    out = []
    for i, row in enumerate(res.get("steps") or []):
        if not isinstance(row, dict):
            continue
        name = row.get("step", row.get("name", i))
        src = row.get("aggregates") if isinstance(row.get("aggregates"), dict) else row
        vals = {}
        for k, v in src.items():
            if k in ("step", "name"):
                continue
            n = _num(v.get("value") if isinstance(v, dict) else v)
            if n is not None:
                vals[k] = n
        out.append((str(name), vals))
    return out


def step_plots(rows: Sequence[dict[str, Any]], columns: Sequence[tuple[str, str]]) -> list[tuple[str, bytes]]:
    """(metric key, PNG bytes) per plotted key of the runs' ``steps`` rows."""
    series = [(r["run"], _step_rows(r.get("_res") or {})) for r in rows if r["kind"] == "run"]
    series = [(label, s) for label, s in series if len(s) >= 2]  # multi-step runs only
    if not series:
        return []
    present: list[str] = []
    for _, s in series:
        for _, vals in s:
            for k in vals:
                if k not in present:
                    present.append(k)
    keys = [k for k, _ in columns if k in present] or present[:6]
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = []
    for key in keys:
        fig, ax = plt.subplots(figsize=(5.6, 3.6))
        names: list[str] = []
        for label, s in series:
            pts = [(n, vals[key]) for n, vals in s if key in vals]
            for n, _ in s:
                if n not in names:
                    names.append(n)
            if pts:
                ax.plot([names.index(n) for n, _ in pts], [v for _, v in pts], marker="o", label=label)
        ax.set_xticks(range(len(names)), names, rotation=30 if len(names) > 6 else 0, fontsize=8)
        ax.set_xlabel("step")
        ax.set_ylabel(key)
        ax.set_title(key)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=6)
        fig.tight_layout()
        out.append((key, _fig_bytes(fig)))
        plt.close(fig)
    return out


def curve_plots(rows: Sequence[dict[str, Any]]) -> list[tuple[str, bytes]]:
    """(run label, PNG bytes) for each run whose results hold ``curves`` with points
    (:func:`bench.report.curve_figure`)."""
    from bench.report import curve_figure

    out = []
    for r in rows:
        if r["kind"] != "run" or not (r.get("_res") or {}).get("curves"):
            continue
        fig = curve_figure(r["_res"], title=f"{r['run']}: along training")
        if fig is None:
            continue
        import matplotlib.pyplot as plt

        out.append((r["run"], _fig_bytes(fig)))
        plt.close(fig)
    return out


def _attack_record_table(i: int, name: str, rec: dict[str, Any]) -> str:
    """An attack record of :mod:`bench.attacks` (``metrics: {key: {before, after, ...}}``)."""
    cols = ["before", "after", "recovery", "target", "undone"]
    head = "".join(["<th class=\"text\">metric</th>"] + [f"<th>{c}</th>" for c in cols])
    body = []
    for key, m in rec["metrics"].items():
        m = m if isinstance(m, dict) else {"after": m}
        cells = [f'<td class="text" data-v="{_e(key)}">{_e(key)}</td>']
        for c in cols:
            n = _num(m.get(c))
            cells.append(f'<td data-v="{"" if n is None else repr(n)}">{_e(_fmt(m.get(c)))}</td>')
        body.append("<tr>" + "".join(cells) + "</tr>")
    opts = ", ".join(f"{k}={v}" for k, v in (rec.get("options") or {}).items())
    flag = " <b>FORGETTING UNDONE</b>" if rec.get("undone") else ""
    return (f'<p class="meta">{_e(name)} [{_e(rec.get("kind", ""))}] {_e(opts)}; median undone over the forget '
            f'metrics {_e(_fmt(rec.get("undone_median")))}{flag}</p><table class="sortable attacks" '
            f'id="attack-{i}-{_e(name)}"><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table>')


def attack_tables(rows: Sequence[dict[str, Any]]) -> str:
    parts = []
    for i, r in enumerate(rows):
        att = (r.get("_res") or {}).get("attacks")
        if not att:
            continue
        if isinstance(att, dict) and all(isinstance(v, dict) and isinstance(v.get("metrics"), dict)
                                         for v in att.values()):
            parts.append(f"<h3>{_e(r['run'])}</h3>" + "".join(
                _attack_record_table(i, n, rec) for n, rec in att.items()))
            continue
        if isinstance(att, dict):
            items = [(str(k), v if isinstance(v, dict) else {"value": v}) for k, v in att.items()]
        elif isinstance(att, list):
            items = [(str(a.get("attack", a.get("name", j))) if isinstance(a, dict) else str(j),
                      a if isinstance(a, dict) else {"value": a}) for j, a in enumerate(att)]
        else:
            items = [("attacks", {"value": att})]
        cols: list[str] = []
        for _, d in items:
            for k in d:
                if k not in ("attack", "name") and k not in cols:
                    cols.append(k)
        head = '<th class="text">attack</th>' + "".join(f"<th>{_e(c)}</th>" for c in cols)
        body = []
        for name, d in items:
            cells = [f'<td class="text" data-v="{_e(name)}">{_e(name)}</td>']
            for c in cols:
                v = d.get(c)
                n = _num(v)
                if n is not None or v is None or isinstance(v, str):
                    cells.append(f'<td data-v="{"" if n is None else repr(n)}">{_e(_fmt(v))}</td>')
                else:
                    cells.append(f'<td class="text"><code>{_e(json.dumps(v, default=str)[:200])}</code></td>')
            body.append("<tr>" + "".join(cells) + "</tr>")
        parts.append(f'<h3>{_e(r["run"])}</h3><table class="sortable attacks" id="attacks-{i}"><thead><tr>'
                     f'{head}</tr></thead><tbody>{"".join(body)}</tbody></table>')
    return "".join(parts)


def configs(rows: Sequence[dict[str, Any]]) -> str:
    parts = []
    for i, r in enumerate(rows):
        res = r.get("_res") or {}
        doc = {"run_dir": r.get("dir") or res.get("run_dir"), "config": res.get("config"),
               "seed": res.get("seed"), "versions": res.get("versions"), "timings": res.get("timings")}
        parts.append(f'<details id="cfg-{i}"><summary>{_e(r["run"])}</summary><pre>'
                     f'{_e(json.dumps(doc, indent=2, default=str))}</pre></details>')
    return "".join(parts)


def render(rows: Sequence[dict[str, Any]], columns: Sequence[tuple[str, str]],
           frontier_png: Path | bytes | None = None, title: str = "Unlearning report") -> str:
    """The page as a string (see the module docstring)."""
    import time

    n_runs = sum(1 for r in rows if r["kind"] == "run")
    parts = [f"<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{_e(title)}</title>"
             f"<style>{CSS}</style></head><body>",
             f"<h1>{_e(title)}</h1><p class=\"meta\">{n_runs} run(s), {len(rows) - n_runs} reference run(s); "
             f"generated {time.strftime('%Y-%m-%d %H:%M:%S')}. Click a column header to sort.</p>",
             "<h2>Leaderboard</h2>", leaderboard(rows, columns)]
    seeds = seeds_table(rows, columns)
    if seeds:
        parts += ["<h2>Across seeds</h2><p class=\"meta\">mean ± half-width of the 95 % Student-t interval "
                  "over seeds (t<sub>0.975, n−1</sub> · s / √n)</p>", seeds]
    if frontier_png is not None:
        parts += ["<h2>Frontier</h2><p class=\"meta\">forget efficacy vs utility; dashed: the Pareto front of the "
                  "runs; star: retain-only model; X: target before unlearning</p>",
                  f'<img id="frontier" alt="forget efficacy vs utility" src="{_png_data(frontier_png)}">']
    plots = step_plots(rows, columns)
    if plots:
        parts.append("<h2>Along steps</h2><div class=\"grid\">")
        parts += [f'<img class="step-plot" alt="{_e(k)} per step" src="{_png_data(b)}">' for k, b in plots]
        parts.append("</div>")
    curves = curve_plots(rows)
    if curves:
        parts.append("<h2>Along training</h2><p class=\"meta\">runs with <code>--eval-every</code>: each "
                     "metric of the chosen sets against the optimizer step; dashed: the final evaluation</p>"
                     "<div class=\"grid\">")
        parts += [f'<img class="curve-plot" alt="{_e(label)} along training" src="{_png_data(b)}">'
                  for label, b in curves]
        parts.append("</div>")
    att = attack_tables(rows)
    if att:
        parts += ["<h2>Attacks</h2>", att]
    parts += ["<h2>Configs</h2>", configs(rows), f"<script>{JS}</script></body></html>"]
    return "".join(parts)


def write_html(rows: Sequence[dict[str, Any]], columns: Sequence[tuple[str, str]], out: Path | str,
               frontier_png: Path | bytes | None = None, title: str = "Unlearning report") -> Path:
    """Write :func:`render`'s page to ``out`` (atomically); returns the path."""
    out = Path(out)
    atomic_write_text(out, render(rows, columns, frontier_png, title))
    return out
