"""The ``bench`` command line: run, prepare, list, report.

Errors a user can fix (unknown names, bad files, bad options) print one line
``error: ...`` and exit with status 2.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from bench.errors import BenchError

EPILOG = """examples:
  bench run --task synthetic-forget10 --method npo-gd --model tiny
  bench run --task tofu-forget01 --method gd --data-dir ../shared/data/tofu --model smollm2-135m --as-is --limit 20
  bench run --task synthetic-forget10 --method ga --attack quant-4bit --attack relearn
  bench run --task synthetic-forget10 --method npo-gd --eval-every 5 --eval-sets forget,retain
  bench prepare --task synthetic-forget10 --model tiny
  bench list methods
  bench report reports/runs/*
  bench sweep --tasks synthetic-forget10 --methods ga,gd,npo-gd --seeds 0,1 --grid epochs=2
  bench sweep sweeps/demo.toml --address auto
"""


def _kv(pairs: list[str]) -> dict[str, str]:
    from bench.adapters import split_assignments

    return split_assignments(pairs)


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors (``error: ...``, exit status 2) instead of the usage."""

    def error(self, message: str):  # type: ignore[override]
        self.exit(2, f"error: {message} (see: {self.prog} --help)\n")


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def _seed(text: str) -> int:
    from bench.checks import MAX_SEED

    try:
        value = int(text)
    except ValueError:
        value = -1
    if not 0 <= value <= MAX_SEED:
        raise argparse.ArgumentTypeError(f"expected an integer from 0 to {MAX_SEED}, got {text!r}")
    return value


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--task", required=True, help="task name (bench list tasks)")
    p.add_argument("--model", default="tiny",
                   help="hub id, local model directory, or alias (tiny, smollm2-135m); default tiny")
    p.add_argument("--data-dir", help="local data directory (e.g. ../shared/data/tofu); default: the hub, "
                   "or $BENCH_DATA_DIR; synthetic tasks need none")
    p.add_argument("--backend", default="hf", help="hf (default), vllm, or auto (vllm on GPU or for large generation workloads)")
    p.add_argument("--backend-set", action="append", default=[], metavar="KEY=VALUE",
                   help="backend option, e.g. mode=naive, dtype=bfloat16, token_budget=4096")
    p.add_argument("--seed", type=_seed, default=0)
    p.add_argument("--limit", type=_positive_int,
                   help="evaluate only the first N items of each set (quick look); training data and "
                   "the prepared models are never cut")
    p.add_argument("--train-limit", type=_positive_int,
                   help="the method trains on the first N forget and retain items only (recorded; "
                   "the prepared target and retain-only models still use every item: see --prepare-limit)")
    p.add_argument("--prepare-limit", type=_positive_int, metavar="N",
                   help="quick prepared models: the target is fine-tuned on the forget split + the first N "
                   "retain items, the retain-only model on those N (recorded; default: every item)")
    p.add_argument("--prepare-set", action="append", default=[], metavar="KEY=VALUE",
                   help="prepare fine-tuning setting over the alias' own, e.g. epochs=3 lr=1e-4 (recorded)")
    p.add_argument("--out", default="reports/runs", help="where run directories go (default reports/runs)")
    p.add_argument("--prompt-style", default="auto", choices=["auto", "chat", "chat-template", "plain"],
                   help="how questions become prompts and answers scored continuations (default: the "
                   "model's saved config, else chat if it has a chat template): chat = template prompt, "
                   "answer + EOS (open-unlearning apply_chat_template: false); chat-template = answer + "
                   "the template's end of turn + EOS (apply_chat_template: true); plain = Question/Answer")
    p.add_argument("--system-prompt", metavar="TEXT",
                   help="system turn of a chat-style prompt (recorded); e.g. 'You are a helpful assistant.' "
                   "as open-unlearning's TOFU configs")
    p.add_argument("--no-cache", action="store_true", help="bypass the request cache")
    p.add_argument("--task-set", action="append", default=[], metavar="KEY=VALUE",
                   help="task option, e.g. targets=1_Stephen_King (bench list tasks shows them)")
    p.add_argument("--step-reference", default="previous", choices=["previous", "initial"],
                   help="multi-step tasks: a method's reference model is the previous step's "
                   "model (default, closer-look's) or the initial one")


def _backend_options(pairs: list[str]) -> dict:
    import json

    out = {}
    for k, v in _kv(pairs).items():
        try:
            out[k] = json.loads(v)
        except json.JSONDecodeError:
            out[k] = v
    return out


def build_parser() -> argparse.ArgumentParser:
    ap = _Parser(prog="bench", description="An evaluation-first benchmark suite for LLM unlearning.",
                                 epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="verb", required=True, metavar="VERB")

    r = sub.add_parser("run", help="unlearn a model with a method, evaluate it, write results",
                       description="Unlearn, evaluate and write results.json + samples.jsonl + a report.\n"
                       "example: bench run --task synthetic-forget10 --method npo-gd --model tiny",
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    _common(r)
    r.add_argument("--method", required=True, help="registered method, 'none', or path/to/file.py:function")
    r.add_argument("--set", action="extend", nargs="+", default=[], metavar="KEY=VALUE",
                   help="method options, e.g. --set lr=1e-5 max_steps=100 lora_r=8 (bench list methods)")
    r.add_argument("--as-is", action="store_true",
                   help="unlearn --model itself; by default a base alias (tiny, smollm2-135m) is first "
                   "fine-tuned on the task (bench prepare) and the fine-tuned model is the target")
    r.add_argument("--reference", help="retain-only reference for forget quality: a run directory or a model")
    r.add_argument("--overwrite", action="store_true", help="redo a finished run")
    r.add_argument("--save-model", action="store_true", help="keep the unlearned model in the run directory")
    r.add_argument("--original", help="the model before fine-tuning on the task (θ0; tv and wme-* need it "
                   "for a given --model; a prepared alias uses its base model)")
    r.add_argument("--attack", action="append", default=[], metavar="NAME",
                   help="after unlearning, attack the model and re-evaluate the forget sets "
                   "(repeatable; bench list attacks), e.g. --attack quant-4bit --attack relearn")
    r.add_argument("--attack-set", action="append", default=[], metavar="[NAME.]KEY=VALUE",
                   help="attack option, e.g. relearn.steps=20, group_size=64, scope=all")
    r.add_argument("--eval-every", metavar="N|epoch",
                   help="evaluate along training: every N optimizer steps, or 'epoch' (each epoch end), "
                   "on --eval-sets; the curves go to results.json and the reports (training methods only; "
                   "not early stopping's eval_every option)")
    r.add_argument("--eval-sets", metavar="SET,SET",
                   help="eval sets of --eval-every (default: the sets of the task's frontier keys)")

    p = sub.add_parser("prepare", help="build and cache the target and retain-only models of a task",
                       description="Fine-tune the base model on the task's full set (target) and on its retain\n"
                       "set (reference), and evaluate both.\nexample: bench prepare --task synthetic-forget10 --model tiny",
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    _common(p)

    ls = sub.add_parser("list", help="list registered tasks, methods, metrics, backends, attacks, models",
                        description="example: bench list methods")
    ls.add_argument("what", choices=["tasks", "methods", "metrics", "backends", "attacks", "models"])

    rp = sub.add_parser("report", help="summary table + forget-efficacy/model-utility scatter of runs",
                        description="Writes report.md, frontier.png and report.html (one self-contained page:\n"
                        "sortable leaderboard, frontier with its Pareto front, per-step plots, attacks, configs).\n"
                        "example: bench report reports/runs/*   or   bench report reports/sweeps/demo",
                        formatter_class=argparse.RawDescriptionHelpFormatter)
    rp.add_argument("runs", nargs="+", help="run directories, or sweep directories (their finished runs)")
    rp.add_argument("--out", default=None, help="report directory (default: reports/report)")

    sw = sub.add_parser("sweep", help="tasks x methods x option grids x seeds, each trial a bench run (on Ray)",
                        description="Run a sweep file (TOML/YAML; see bench/sweep.py) or the same as lists; every\n"
                        "trial is an ordinary bench run (finished ones are skipped), on Ray when installed.\n"
                        "CLI lists override the file's.\n"
                        "example: bench sweep --tasks synthetic-forget10 --methods ga,gd,npo-gd --seeds 0,1 --grid epochs=2",
                        formatter_class=argparse.RawDescriptionHelpFormatter)
    sw.add_argument("file", nargs="?", help="sweep file (.toml, .yaml, .yml)")
    sw.add_argument("--tasks", help="comma-separated task names")
    sw.add_argument("--methods", help="comma-separated method names")
    sw.add_argument("--seeds", help="comma-separated integer seeds")
    sw.add_argument("--models", help="comma-separated models (default tiny)")
    sw.add_argument("--grid", action="append", default=[], metavar="[METHOD.]KEY=V1,V2",
                    help="option grid for every method that takes KEY, or for METHOD only")
    sw.add_argument("--backend", help="hf (default), vllm, or auto")
    sw.add_argument("--backend-set", action="append", default=[], metavar="KEY=VALUE", help="backend option")
    sw.add_argument("--data-dir", help="local data directory")
    sw.add_argument("--limit", type=int, help="evaluate only the first N items of each set")
    sw.add_argument("--out", help="sweep directory (default reports/sweeps/<name>)")
    sw.add_argument("--name", help="sweep name (default: the file's stem, or 'sweep')")
    sw.add_argument("--address", help="Ray cluster address (HOST:PORT or auto); default: a local cluster")
    sw.add_argument("--no-ray", action="store_true", help="run the trials one after another in this process")
    sw.add_argument("--cpus-per-trial", type=int, help="CPU threads per trial (default 1)")
    sw.add_argument("--dry-run", action="store_true", help="list the trials and exit")
    return ap


def _spec(args: argparse.Namespace, method: str = "none"):
    from bench.run import RunSpec

    return RunSpec(
        task=args.task, method=method, model=args.model, data_dir=args.data_dir, backend=args.backend,
        backend_options=_backend_options(args.backend_set), seed=args.seed, limit=args.limit,
        options=_kv(getattr(args, "set", [])), task_options=_kv(args.task_set),
        step_reference=args.step_reference, out=args.out, as_is=getattr(args, "as_is", False),
        reference=getattr(args, "reference", None), prompt_style=args.prompt_style,
        system_prompt=args.system_prompt, train_limit=args.train_limit,
        prepare_limit=args.prepare_limit, prepare_options=_kv(args.prepare_set),
        cache=not args.no_cache, overwrite=getattr(args, "overwrite", False),
        save_model=getattr(args, "save_model", False),
        attacks=list(getattr(args, "attack", [])), attack_options=_kv(getattr(args, "attack_set", [])),
        original=getattr(args, "original", None),
        eval_every=getattr(args, "eval_every", None), eval_sets=getattr(args, "eval_sets", None),
    )


SUMMARY_LABELS = {"forget_rouge_l": "forget ROUGE-L", "retain_rouge_l": "retain ROUGE-L",
                  "forget_truth_ratio": "forget truth ratio", "forget_extraction_strength": "forget ES"}


def _print_summary(run_dir: Path) -> None:
    from bench.report import _fmt, columns, load_results, write_report

    res = load_results(run_dir)
    agg = res["aggregates"]
    print()
    print(f"task {res['task']}  method {res['method']}  model {res['model']}")
    steps = res.get("steps") or []
    if len(steps) > 1:
        for row in steps:
            print(f"  step {row['step']:<12} " + "  ".join(
                f"{k}={_fmt(row['aggregates'].get(k))}" for k, _ in columns([res])[:4]))
    for key, _ in columns([res]):
        print(f"  {SUMMARY_LABELS.get(key, key.replace('_', ' ')):<26} {_fmt(agg.get(key))}")
    for key, note in (res.get("derived_notes") or {}).items():
        print(f"  ({key}: {note})")
    for set_name, d in (res.get("sets") or {}).items():
        for key, note in (d.get("notes") or {}).items():
            print(f"  ({set_name}/{key} missing: {note})")
    for curve in res.get("curves") or []:
        pts = curve.get("points") or []
        where = f" ({curve.get('step')})" if len(res["curves"]) > 1 else ""
        print(f"  along training{where}: {len(pts)} point(s) at optimizer steps "
              f"{', '.join(str(p.get('train_step')) for p in pts) or '-'}" + (f"; {curve['note']}" if curve.get("note") else ""))
    if res.get("attacks"):
        from bench.report import attack_tables

        print()
        print(attack_tables(res))
    _, md, png = write_report([run_dir], run_dir / "report")
    print(f"results: {run_dir / 'results.json'}")
    print(f"report:  {md}  (plot {png})")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.verb == "run":
            from bench.run import run

            _print_summary(run(_spec(args, args.method)))
        elif args.verb == "prepare":
            from bench.run import load_task, prepare

            spec = _spec(args)
            task, data = load_task(spec)
            p = prepare(spec, task, data)
            print(f"target model:       {p.target_dir}\nretain-only model:  {p.retain_dir}")
            _print_summary(p.target_run)
        elif args.verb == "list":
            _list(args.what)
        elif args.verb == "sweep":
            return _sweep(args)
        elif args.verb == "report":
            from bench.report import write_report

            text, md, png = write_report(args.runs, Path(args.out or "reports/report"))
            print(text)
            print(f"\nreport: {md}\nplot:   {png}\npage:   {md.parent / 'report.html'}")
    except BenchError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: finished work is kept; rerun the same command to resume", file=sys.stderr)
        return 130
    return 0


def _sweep(args: argparse.Namespace) -> int:
    from bench import sweep as sw

    raw: dict = sw.load_file(args.file) if args.file else {}
    source = args.file or "command line"
    for key in ("tasks", "methods", "seeds", "models"):
        v = getattr(args, key)
        if v is not None:
            raw.pop(sw._LIST_KEYS[key], None)
            raw[key] = [x.strip() for x in v.split(",") if x.strip()]
    for g in args.grid:
        k, sep, vals = g.partition("=")
        if not sep or not k.strip():
            raise BenchError(f"--grid {g!r}: expected [METHOD.]KEY=V1,V2")
        values = [x.strip() for x in vals.split(",")]
        grid = raw.setdefault("grid", {})
        meth, dot, key = k.strip().rpartition(".")
        if dot:
            grid.setdefault(meth, {})[key] = values
        else:
            grid[key] = values
    for key in ("backend", "data_dir", "limit", "out", "name"):
        v = getattr(args, key)
        if v is not None:
            raw[key] = v
    if args.backend_set:
        raw["backend_options"] = {**(raw.get("backend_options") or {}), **_backend_options(args.backend_set)}
    if args.cpus_per_trial is not None:
        raw["cpus_per_trial"] = args.cpus_per_trial
    sweep = sw.parse(raw, source=source, name=Path(args.file).stem if args.file else None)
    if args.dry_run:
        trials = sw.expand(sweep)
        for t in trials:
            print(f"{t.index:>3}  {t.label}")
        print(f"{len(trials)} trials; out {Path(sweep.out).resolve()}")
        return 0
    doc = sw.execute(sweep, use_ray=False if args.no_ray else None, address=args.address)
    failed = doc["counts"]["failed"]
    if failed:
        print(f"error: {failed} trial(s) failed (their logs: {Path(sweep.out).resolve() / 'logs'})", file=sys.stderr)
        return 1
    return 0


def _list(what: str) -> None:
    if what == "models":
        from bench.models import ALIASES

        for a in ALIASES.values():
            print(f"{a.name:<16} {a.description}")
        return
    from bench import registry

    reg = {"tasks": registry.TASKS, "methods": registry.METHODS, "metrics": registry.METRICS,
           "backends": registry.BACKENDS, "attacks": registry.ATTACKS}[what]
    for e in reg.entries():
        print(f"{e.name:<24} {e.description}")
        if what == "metrics":
            from bench.metrics import metric_applies_to, metric_direction, metric_kind

            print(" " * 25 + f"{metric_kind(e.obj)}; {metric_direction(e.obj)}; applies to: {metric_applies_to(e.obj)}")
        if what == "tasks":
            from bench.adapters import method_options, type_name

            opts = method_options(e.obj.__init__, positional=1)
            if getattr(e.obj, "sizes", ""):
                print(" " * 25 + "splits: " + e.obj.sizes)
            if opts:
                print(" " * 25 + "options: " + ", ".join(
                    f"{k}: {type_name(t)} = {d!r}" for k, (t, d) in opts.items()))
        if what == "attacks":
            from bench.adapters import method_options, type_name

            opts = method_options(e.obj.__init__, positional=1)
            print(" " * 25 + f"kind: {e.obj.kind}; options: " + ", ".join(
                [f"{k}: {type_name(t)} = {d!r}" for k, (t, d) in opts.items()]
                + ["scope: 'forget' | 'all' = 'forget'"]))
        if what == "methods":
            from bench.adapters import method_options, type_name
            from bench.training import TRAIN_FIELDS

            opts = method_options(e.obj)
            own = {k: v for k, v in opts.items() if k not in TRAIN_FIELDS}
            shared = {k: v for k, v in opts.items() if k in TRAIN_FIELDS}
            source = getattr(e.obj, "source", "")
            if source:
                print(" " * 25 + f"source: {source}")
            for label, group in (("options", own), ("training", shared)):
                if group:
                    print(" " * 25 + f"{label}: " + ", ".join(
                        f"{k}: {type_name(t)} = {d!r}" for k, (t, d) in group.items()))


def entry() -> None:
    """The ``bench`` console script: :func:`main`, then :func:`exit_fast`."""
    exit_fast(main())


def exit_fast(code: int | None) -> None:
    """End the process with status ``code`` without tearing the interpreter down module by
    module (about 1.5 s once torch and transformers are loaded): output is flushed and the
    atexit handlers run first. While a non-daemon thread is alive it is the ordinary exit
    (``sys.exit``), which waits for it."""
    import atexit
    import os
    import threading

    if any(t is not threading.main_thread() and not t.daemon and t.is_alive() for t in threading.enumerate()):
        sys.exit(code)
    sys.stdout.flush()
    sys.stderr.flush()
    atexit._run_exitfuncs()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code or 0)


if __name__ == "__main__":
    entry()
