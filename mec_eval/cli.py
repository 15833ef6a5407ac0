"""Command-line interface: argument parsing only; every subcommand calls one library function."""
from __future__ import annotations

import argparse
import errno
import sys
from pathlib import Path

from mec_eval import __version__
from mec_eval.utils import UserError


class _Parser(argparse.ArgumentParser):
    """argparse that reports a usage error on one line with exit code 2."""

    def error(self, message: str) -> None:  # noqa: D401 - argparse API
        sys.stderr.write(f"mec-eval: error: {message} (see `{self.prog} --help`)\n")
        sys.exit(2)


def _add_checkpoint_reading(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--arch", help="backbone architecture when the file does not say (mec-eval list archs)")
    parser.add_argument("--layout", help="force a checkpoint layout instead of detecting it (e.g. solo-learn, moco)")


def _add_overrides(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides, e.g. optim.epochs=5")
    parser.add_argument("--quiet", action="store_true", help="no progress bars or log echo")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="mec-eval", description="Pre-train with Maximum Entropy Coding and evaluate any checkpoint.")
    parser.add_argument("--version", action="version", version=f"mec-eval {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    p = sub.add_parser("pretrain", help="self-supervised pre-training (resumes from DIR/last.pt)")
    p.add_argument("--config", required=True, help="built-in config name (mec-eval list configs) or YAML path")
    p.add_argument("--out", help="output folder (default runs/pretrain/<config>)")
    _add_overrides(p)

    p = sub.add_parser("run", help="evaluate one checkpoint on one task")
    p.add_argument("--task", required=True)
    p.add_argument("--ckpt", required=True, help="path, random:<arch> or manifest:<name>")
    p.add_argument("--out", default="runs", help="runs folder (default runs)")
    p.add_argument("--force", action="store_true", help="re-run even if result.json exists")
    _add_checkpoint_reading(p)
    _add_overrides(p)

    p = sub.add_parser("suite", help="evaluate one checkpoint on several tasks, locally or on SLURM")
    p.add_argument("--ckpt", required=True)
    p.add_argument("--tasks", help="comma-separated task names (default: knn,linear-fast)")
    p.add_argument("--out", default="runs")
    p.add_argument("--executor", choices=["local", "slurm"], default="local")
    p.add_argument("--cluster", help="SLURM profile YAML (slurm/*.yaml)")
    p.add_argument("--force", action="store_true")
    _add_checkpoint_reading(p)
    _add_overrides(p)

    p = sub.add_parser("report", help="HTML/PDF report with rankings and radar charts of every result.json")
    p.add_argument("--runs", nargs="+", required=True, help="one or more runs folders (searched recursively)")
    p.add_argument("--out", default="reports/report.html", help="HTML file (default reports/report.html)")
    p.add_argument("--pdf", action="store_true", help="also write the PDF next to the HTML")
    p.add_argument("--with-published", action="store_true", help="place your checkpoints among the MEC paper's rows")
    p.add_argument("--csv", metavar="DIR", help="write results.csv and ranks.csv into DIR")
    p.add_argument("--markdown", nargs="?", const="", metavar="PATH",
                   help="also write the tables as Markdown (default: next to the HTML, .md)")
    p.add_argument("--title", default="mec-eval report")
    p.add_argument("--skip-bad", action="store_true",
                   help="skip (and name) result.json files that are not valid results instead of failing")

    p = sub.add_parser("convert", help="convert a checkpoint to detectron2 .pkl, torchvision or canonical")
    p.add_argument("--ckpt", required=True)
    p.add_argument("--to", required=True, choices=["detectron2", "torchvision", "canonical"])
    p.add_argument("--out", required=True)
    p.add_argument("--force", action="store_true", help="overwrite --out if it exists")
    _add_checkpoint_reading(p)

    p = sub.add_parser("demo", help="the whole pipeline on embedded data (no download)")
    p.add_argument("--out", default="demo_out")
    p.add_argument("--quick", action="store_true", help="fewer epochs: about 3 minutes on 2 CPU cores")
    p.add_argument("--quiet", action="store_true")

    p = sub.add_parser("list", help="list tasks, configs, checkpoints, datasets, objectives or archs")
    p.add_argument("what", choices=["tasks", "configs", "checkpoints", "datasets", "objectives", "archs"])
    return parser


def _cmd_pretrain(args) -> None:
    from mec_eval.config import load_pretrain_config
    from mec_eval.runs import check_output_dir

    cfg = load_pretrain_config(args.config, args.overrides)  # config errors answer before torch loads
    out = check_output_dir(args.out or Path("runs") / "pretrain" / Path(args.config).stem)
    from mec_eval.pretrain.main import pretrain

    print(pretrain(cfg, out, quiet=args.quiet))


def _cmd_run(args) -> None:
    from mec_eval.runs import check_output_dir
    from mec_eval.tasks.specs import resolve_task_config

    resolve_task_config(args.task, args.overrides)  # task and config errors answer before torch loads
    check_output_dir(args.out)
    from mec_eval.tasks.runner import run_task_all

    for outcome in run_task_all(args.task, args.ckpt, args.out, args.overrides, force=args.force, quiet=args.quiet,
                                arch=args.arch, layout=args.layout):
        print(outcome.path)


def _cmd_suite(args) -> None:
    from mec_eval.launch.suite import parse_task_list, run_suite
    from mec_eval.runs import check_output_dir
    from mec_eval.tasks.specs import resolve_task_config

    tasks = parse_task_list(args.tasks)
    for task in tasks:
        resolve_task_config(task, args.overrides)
    check_output_dir(args.out)
    for line in run_suite(args.ckpt, tasks, args.out, args.overrides, args.executor,
                          args.cluster, force=args.force, quiet=args.quiet, arch=args.arch, layout=args.layout):
        print(line)


def _cmd_report(args) -> None:
    from mec_eval.report import build_report

    markdown = Path(args.out).with_suffix(".md") if args.markdown == "" else args.markdown
    outputs = build_report(args.runs, args.out, pdf=args.pdf, with_published=args.with_published,
                           csv_dir=args.csv, markdown=markdown, title=args.title, skip_bad=args.skip_bad)
    for path in [outputs.html, outputs.pdf, *outputs.csv, outputs.markdown]:
        if path is not None:
            print(path)


def _cmd_convert(args) -> None:
    from mec_eval.checkpoints import convert_checkpoint

    layout = convert_checkpoint(args.ckpt, args.to, args.out, arch=args.arch, layout=args.layout, force=args.force)
    print(f"{args.out} (from layout {layout})")


def _cmd_demo(args) -> None:
    from mec_eval.runs import check_output_dir

    check_output_dir(args.out)
    from mec_eval.launch.demo import demo

    print(demo(args.out, quick=args.quick, quiet=args.quiet))


def _cmd_list(args) -> None:
    rows = _listing(args.what)
    width = max((len(r[0]) for r in rows), default=0)
    for name, text in rows:
        print(f"{name:<{width}}  {text}")


def _listing(what: str) -> list[tuple[str, str]]:
    if what == "tasks":
        from mec_eval.launch.suite import describe_tasks

        return [(name, f"{desc} [source: {src.splitlines()[0] if src else '-'}]") for name, desc, src in describe_tasks()]
    if what == "configs":
        from mec_eval.config import read_yaml
        from mec_eval.utils import resource_dir

        return [(p.stem, str(read_yaml(p).get("data", {}).get("name", ""))) for p in sorted(resource_dir("configs").glob("*.yaml"))]
    if what == "checkpoints":
        from mec_eval.checkpoints import list_manifest

        return [(e["name"], f"{e.get('method', '')} {e.get('epochs', '')}ep {e.get('arch', '')} ({e.get('source', '')})")
                for e in list_manifest()]
    if what == "datasets":
        from mec_eval.data import DATASETS as registry
    elif what == "objectives":
        from mec_eval.objectives import OBJECTIVES as registry
    else:
        from mec_eval.models import BACKBONES as registry
    return registry.describe()


COMMANDS = {"pretrain": _cmd_pretrain, "run": _cmd_run, "suite": _cmd_suite, "report": _cmd_report,
            "convert": _cmd_convert, "demo": _cmd_demo, "list": _cmd_list}


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    try:
        args, extra = parser.parse_known_args(argv)
        # argparse stops collecting positionals at the first option, so `key=value` overrides
        # written after `--quiet` arrive here; anything else is a real usage error.
        if extra and (not hasattr(args, "overrides") or any(t.startswith("-") or "=" not in t for t in extra)):
            parser.error(f"unrecognized arguments: {' '.join(extra)}")
        if extra:
            args.overrides = [*args.overrides, *extra]
    except SystemExit as exit_:  # --help, --version, usage errors (already printed)
        return int(exit_.code or 0)
    try:
        COMMANDS[args.command](args)
    except UserError as err:
        return _fail(str(err))
    except OSError as err:  # the OS refused a path: unwritable, full disk, a file where a folder goes
        return _fail(os_error_line(err))
    except KeyboardInterrupt:
        sys.stderr.write("mec-eval: interrupted; re-run the same command to resume\n")
        return 130
    return 0


def _fail(message: str) -> int:
    """The one line a user error prints (exit code 2); never a traceback."""
    from mec_eval.log import drop_announcement

    drop_announcement()
    sys.stderr.write(f"mec-eval: error: {' '.join(message.splitlines())}\n")
    return 2


_OS_FIXES = {errno.ENOSPC: "the disk is full; free space or choose another --out",
             errno.EDQUOT: "the disk quota is exceeded; free space or choose another --out",
             errno.EROFS: "the file system is read-only; choose another --out",
             errno.EACCES: "permission denied; choose a folder you can write to",
             errno.EPERM: "permission denied; choose a folder you can write to",
             errno.ENOTDIR: "a file stands where a folder is needed; choose another path",
             errno.EISDIR: "a folder stands where a file is needed; choose another path",
             errno.ENAMETOOLONG: "the name is too long for the file system; choose a shorter one"}


def os_error_line(err: OSError) -> str:
    """``OSError`` -> "cannot use PATH: REASON; FIX" on one line."""
    where = err.filename if err.filename is not None else "a file"
    fix = _OS_FIXES.get(err.errno, "check the path and its permissions")
    return f"cannot use {where}: {err.strerror or err}; {fix}"


if __name__ == "__main__":
    sys.exit(main())
