"""report.html: content checks (fast) and rendering in headless Chromium (marker ``chromium``).

The Chromium test drives Debian's ``chromium`` through the DevTools protocol over a pipe
(``--remote-debugging-pipe``: NUL-separated JSON on file descriptors 3 and 4), so it needs
no websocket library: it loads the page from a file, collects console errors and uncaught
exceptions, clicks a header and reads the row order back, checks that every image decoded,
and takes a screenshot.
"""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from bench.report import pareto_front, rows_for, write_report
from bench.report_html import seed_groups, t_interval


def _results(d: Path, method="m", seed=0, aggregates=None, refs=None, options=None, **extra):
    d.mkdir(parents=True)
    opts = {"seed": seed, **(options or {})}
    (d / "results.json").write_text(json.dumps({
        "task": "synthetic-forget10", "method": method, "model": "tiny", "seed": seed,
        "aggregates": aggregates or {}, "references": refs or {},
        "config": {"method_options": opts, "seed": seed, "backend": "hf"}, **extra,
    }))
    return d


def _sweep_dirs(tmp_path: Path) -> list[Path]:
    retain = _results(tmp_path / "retain", method="none",
                      aggregates={"model_utility": 0.50, "forget_rouge_l": 0.40, "forget_truth_ratio": 0.6})
    target = _results(tmp_path / "target", method="none",
                      aggregates={"model_utility": 0.70, "log10_forget_quality": -3.0, "forget_rouge_l": 0.90})
    refs = {"retain": str(retain), "target": str(target)}
    dirs = []
    for i, (m, mu, fq) in enumerate([("ga", 0.30, -0.5), ("ga", 0.32, -0.7), ("gd", 0.60, -1.0),
                                     ("gd", 0.58, -1.2), ("npo-gd", 0.62, -0.9), ("npo-gd", 0.55, -2.0)]):
        dirs.append(_results(tmp_path / f"r{i}", method=m, seed=i % 2, refs=refs,
                             aggregates={"model_utility": mu, "log10_forget_quality": fq,
                                         "forget_quality": 10 ** fq, "forget_rouge_l": 0.5 - i / 20,
                                         "model_utility_ci": [mu - 0.05, mu + 0.05]},
                             steps=[{"step": f"s{k}", "aggregates": {"model_utility": mu + k / 10,
                                                                   "forget_rouge_l": 0.5 - k / 10}}
                                    for k in range(3)],
                             attacks={"relearn": {"forget_rouge_l": 0.8, "steps": 10},
                                      "paraphrase": {"forget_rouge_l": 0.3, "prompts": ["a", "b"]}}))
    return dirs


def test_pareto_front_golden():
    # (x, y) both higher-better: (1,1) dominates (0.5,0.5); (2,0) and (0,2) are on the front;
    # the duplicate (1,1) points do not dominate each other (ties kept)
    pts = [(1.0, 1.0), (0.5, 0.5), (2.0, 0.0), (0.0, 2.0), (1.0, 1.0)]
    assert pareto_front(pts) == [3, 0, 4, 2]
    # y lower-is-better flips the y comparison: (2, 0) is now best on both axes
    assert pareto_front(pts, y_higher_is_better=False) == [2]
    assert pareto_front([(1.0, 1.0), (2.0, 2.0)]) == [1]
    assert pareto_front([(1.0, 1.0), (2.0, 2.0)], y_higher_is_better=False) == [0, 1]


def test_t_interval_golden():
    # values 1, 2, 3: mean 2, s = 1, t_{0.975,2} = 4.302653, half-width 4.302653 / sqrt(3)
    mean, hw = t_interval([1.0, 2.0, 3.0])
    assert mean == 2.0 and hw == pytest.approx(4.302652729749464 / 3 ** 0.5, rel=1e-9)
    assert t_interval([5.0]) is None


def test_html_sections(tmp_path):
    dirs = _sweep_dirs(tmp_path)
    write_report(dirs, tmp_path / "rep")
    page = (tmp_path / "rep" / "report.html").read_text()
    # self-contained: no external URL anywhere, images are data: URIs
    assert not re.search(r"""(src|href)=["'](https?:)?//""", page)
    assert page.count('src="data:image/png;base64,') == 1 + 2  # frontier + 2 step plots
    assert 'id="leaderboard"' in page and 'id="seeds"' in page
    # 6 runs + 2 references in the leaderboard; configs one per row
    body = page.split('id="leaderboard"')[1].split("</table>")[0]
    assert body.count("<tr") == 1 + 8 and page.count('<details id="cfg-') == 8
    # per-run interval from results, and a seed group's mean ± t half-width
    assert "[0.2500, 0.3500]" in page
    ga = t_interval([0.30, 0.32])
    assert f"± {ga[1]:.4f}" in page
    assert page.count("<h3>") == 6 and "relearn" in page and "&quot;a&quot;" in page


def test_seed_groups_ignore_seed_only(tmp_path):
    rows = rows_for(_sweep_dirs(tmp_path))
    groups = seed_groups(rows)
    assert [(g[0]["method"], len(g[1])) for g in groups] == [("ga", 2), ("gd", 2), ("npo-gd", 2)]


# --------------------------------------------------------------------------- chromium

def _chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        p = shutil.which(name)
        if p:
            return p
    return None


class CDP:
    """A minimal DevTools-protocol client over ``--remote-debugging-pipe``."""

    def __init__(self, binary: str, profile: Path):
        r_cmd, w_cmd = os.pipe()  # we write commands; chromium reads fd 3
        r_out, w_out = os.pipe()  # chromium writes fd 4; we read
        args = [binary, "--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run",
                "--disable-extensions", f"--user-data-dir={profile}", "--remote-debugging-pipe",
                "--window-size=1400,1800", "about:blank"]

        def child_fds():
            import fcntl

            # move both out of the way first: either may itself be fd 3 or 4
            a = fcntl.fcntl(r_cmd, fcntl.F_DUPFD, 10)
            b = fcntl.fcntl(w_out, fcntl.F_DUPFD, 10)
            os.dup2(a, 3)
            os.dup2(b, 4)

        # close_fds=False: the fds 3/4 made by dup2 in the child must survive to exec
        self.stderr = open(profile.parent / "chromium.stderr", "wb")
        self.proc = subprocess.Popen(args, preexec_fn=child_fds, close_fds=False,
                                     stdout=subprocess.DEVNULL, stderr=self.stderr)
        os.close(r_cmd)
        os.close(w_out)
        self.w = os.fdopen(w_cmd, "wb", buffering=0)
        self.r = os.fdopen(r_out, "rb", buffering=0)
        self.buf = b""
        self.next_id = 0
        self.events: list[dict] = []
        self.session: str | None = None

    def _read(self, timeout: float = 30.0) -> dict:
        import select

        deadline = time.time() + timeout
        while b"\0" not in self.buf:
            left = deadline - time.time()
            if left <= 0 or not select.select([self.r], [], [], left)[0]:
                raise TimeoutError("chromium did not answer")
            chunk = os.read(self.r.fileno(), 1 << 20)
            if not chunk:
                raise RuntimeError("chromium closed the pipe")
            self.buf += chunk
        msg, self.buf = self.buf.split(b"\0", 1)
        return json.loads(msg)

    def send(self, method: str, params: dict | None = None, session: bool = True) -> dict:
        self.next_id += 1
        msg = {"id": self.next_id, "method": method, "params": params or {}}
        if session and self.session:
            msg["sessionId"] = self.session
        self.w.write(json.dumps(msg).encode() + b"\0")
        while True:
            m = self._read()
            if m.get("id") == self.next_id:
                if "error" in m:
                    raise RuntimeError(f"{method}: {m['error']}")
                return m.get("result", {})
            self.events.append(m)

    def wait_event(self, method: str, timeout: float = 30.0) -> dict:
        for i, e in enumerate(self.events):
            if e.get("method") == method:
                return self.events.pop(i)
        deadline = time.time() + timeout
        while True:
            m = self._read(max(0.1, deadline - time.time()))
            if m.get("method") == method:
                return m
            self.events.append(m)

    def eval(self, expr: str):
        r = self.send("Runtime.evaluate", {"expression": expr, "returnByValue": True, "awaitPromise": True})
        if "exceptionDetails" in r:
            raise RuntimeError(f"{expr}: {r['exceptionDetails']}")
        return r["result"].get("value")

    def close(self) -> None:
        try:
            self.send("Browser.close", session=False)
        except Exception:
            pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.stderr.close()


def render_in_chromium(page: Path, screenshot: Path | None = None) -> dict:
    """Load ``page`` in headless Chromium; returns errors, images, sort results."""
    binary = _chromium()
    assert binary
    cdp = CDP(binary, page.parent / ".chromium-profile")
    try:
        target = cdp.send("Target.createTarget", {"url": "about:blank"})["targetId"]
        cdp.session = cdp.send("Target.attachToTarget", {"targetId": target, "flatten": True},
                               session=False)["sessionId"]
        for dom in ("Page", "Runtime", "Log"):
            cdp.send(f"{dom}.enable")
        cdp.send("Emulation.setDeviceMetricsOverride",
                 {"width": 1400, "height": 1800, "deviceScaleFactor": 1, "mobile": False})
        cdp.send("Page.navigate", {"url": page.resolve().as_uri()})
        cdp.wait_event("Page.loadEventFired")
        out: dict = {}
        out["images"] = cdp.eval(
            "Array.from(document.images).map(i => [i.id || i.className, i.complete, i.naturalWidth])")
        col = cdp.eval("Array.from(document.querySelectorAll('#leaderboard th')).findIndex(t => t.title === 'model_utility')")

        def column():
            return cdp.eval(f"Array.from(document.querySelectorAll('#leaderboard tbody tr')).map(r => r.cells[{col}].getAttribute('data-v'))")

        out["before"] = column()
        click = f"document.querySelectorAll('#leaderboard th')[{col}].click()"
        cdp.eval(click)
        out["after_one_click"] = column()
        cdp.eval(click)
        out["after_two_clicks"] = column()
        cdp.eval("document.querySelector('#leaderboard a.cfg').click()")
        out["config_open"] = cdp.eval("document.getElementById('cfg-' + document.querySelector('#leaderboard tbody tr').getAttribute('data-index')).open")
        if screenshot is not None:
            cdp.eval("window.scrollTo(0, 0)")
            h = cdp.eval("document.documentElement.scrollHeight")
            shot = cdp.send("Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True,
                                                        "clip": {"x": 0, "y": 0, "width": 1400, "height": min(h, 4000), "scale": 1}})
            screenshot.write_bytes(base64.b64decode(shot["data"]))
        time.sleep(0.2)
        cdp.send("Runtime.evaluate", {"expression": "1"})  # flush pending events
        errors = []
        for e in cdp.events:
            m, p = e.get("method"), e.get("params", {})
            if m == "Runtime.exceptionThrown":
                errors.append(str(p.get("exceptionDetails", {}).get("text")))
            elif m == "Runtime.consoleAPICalled" and p.get("type") in ("error", "assert"):
                errors.append(str(p.get("args")))
            elif m == "Log.entryAdded" and p.get("entry", {}).get("level") == "error":
                errors.append(str(p["entry"].get("text")))
        out["errors"] = errors
        return out
    finally:
        cdp.close()


@pytest.mark.chromium
def test_page_in_chromium(tmp_path):
    if _chromium() is None:
        pytest.skip("chromium not installed (Debian: apt-get install -y chromium)")
    dirs = _sweep_dirs(tmp_path)
    write_report(dirs, tmp_path / "rep")
    shot = tmp_path / "rep" / "shot.png"
    out = render_in_chromium(tmp_path / "rep" / "report.html", shot)
    assert out["errors"] == []
    assert len(out["images"]) == 3 and all(ok and w > 100 for _, ok, w in out["images"])
    vals = lambda col: [float(v) for v in col if v]  # noqa: E731
    assert vals(out["after_one_click"]) == sorted(vals(out["before"]), reverse=True)  # numbers: descending first
    assert vals(out["after_two_clicks"]) == sorted(vals(out["before"]))
    assert out["after_one_click"][-1] == "" or all(out["after_one_click"])  # n/a last
    assert out["config_open"] is True
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_sweep_dir_stands_for_its_finished_runs(tmp_path):
    from bench.report import expand_dirs

    dirs = _sweep_dirs(tmp_path)
    (tmp_path / "sweep").mkdir()
    (tmp_path / "sweep" / "sweep.json").write_text(json.dumps({"trials": [
        {"run_dir": str(dirs[0]), "status": "computed"},
        {"run_dir": str(tmp_path / "killed"), "status": "pending"},  # no results.json: left out
        {"run_dir": None, "status": "failed"},
        {"run_dir": str(dirs[1]), "status": "skipped"}]}))
    (tmp_path / "killed").mkdir()
    (tmp_path / "killed" / ".results.json.x.tmp").write_text("{")  # a half-written file is never read
    assert expand_dirs([tmp_path / "sweep", dirs[2]]) == [str(dirs[0]), str(dirs[1]), dirs[2]]


def test_attack_records_get_a_metric_table(tmp_path):
    rec = {"kind": "model", "options": {"bits": 4}, "sets": ["forget"], "undone_median": 0.75, "undone": True,
           "metrics": {"forget_rouge_l": {"before": 0.2, "after": 0.8, "recovery": 0.6, "target": 1.0, "undone": 0.75}}}
    d = _results(tmp_path / "a", aggregates={"model_utility": 0.5}, attacks={"quant-4bit": rec})
    write_report([d], tmp_path / "rep")
    page = (tmp_path / "rep" / "report.html").read_text()
    assert "FORGETTING UNDONE" in page and "bits=4" in page
    row = page.split('id="attack-0-quant-4bit"')[1].split("</tr>")[1]  # after the header row
    assert "forget_rouge_l" in row and ">0.8000<" in row and ">0.7500<" in row


def test_labels_show_only_what_tells_runs_of_one_method_apart(tmp_path):
    """Options that differ between methods (alpha exists for gd only) stay out of the label;
    a seed or option that differs between runs of the same method is shown."""
    dirs = [_results(tmp_path / "a", method="ga", options={"lr": 1e-5}),
            _results(tmp_path / "b", method="gd", options={"lr": 1e-5, "alpha": 1.0}),
            _results(tmp_path / "c", method="gd", seed=1, options={"lr": 1e-5, "alpha": 1.0}),
            _results(tmp_path / "d", method="npo", options={"lr": 1e-5, "beta": 0.1}),
            _results(tmp_path / "e", method="npo", options={"lr": 1e-5, "beta": 0.2})]
    labels = [r["run"] for r in rows_for(dirs)]
    assert labels == ["synthetic-forget10 / ga / tiny",
                      "synthetic-forget10 / gd / tiny (seed=0)", "synthetic-forget10 / gd / tiny (seed=1)",
                      "synthetic-forget10 / npo / tiny (beta=0.1)", "synthetic-forget10 / npo / tiny (beta=0.2)"]
