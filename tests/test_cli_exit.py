"""The ``bench`` console script ends without the interpreter's module-by-module teardown,
and loses nothing to it: output flushed, atexit handlers run, exit status kept."""

from __future__ import annotations

import subprocess
import sys
import textwrap


def _run(code: str, tmp_path):
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True,
                          timeout=120, cwd=tmp_path)


def test_entry_flushes_runs_atexit_and_keeps_the_status(tmp_path):
    out = tmp_path / "atexit.txt"
    proc = _run(f"""
        import atexit, sys
        import bench.cli as cli
        atexit.register(lambda: open({str(out)!r}, "w").write("ran"))
        def main():
            sys.stdout.write("unflushed line without newline")
            sys.stderr.write("err text")
            return 3
        cli.main = main
        cli.entry()
        print("not reached")
    """, tmp_path)
    assert proc.returncode == 3
    assert proc.stdout == "unflushed line without newline" and proc.stderr == "err text"
    assert out.read_text() == "ran"


def test_entry_waits_for_a_live_non_daemon_thread(tmp_path):
    proc = _run("""
        import threading, time
        import bench.cli as cli
        def late():
            time.sleep(0.5)
            print("thread finished", flush=True)
        cli.main = lambda: threading.Thread(target=late).start() or 0
        cli.entry()
    """, tmp_path)
    assert proc.returncode == 0 and proc.stdout == "thread finished\n"


def test_the_console_script_is_entry():
    from importlib.metadata import entry_points

    (ep,) = [e for e in entry_points(group="console_scripts") if e.name == "bench"]
    assert ep.value == "bench.cli:entry"
