"""Command-line interface: argument parsing only; every subcommand calls one library function."""
from __future__ import annotations

import argparse
import errno
import sys
from pathlib import Path

from mec_eval import __version__
from mec_eval.utils import SHARED_WITH_PEERS, UserError, is_main_process_env


class OneLineParser(argparse.ArgumentParser):
    """argparse that reports a usage error on one line with exit code 2 (also used by the benchmark scripts)."""

    def error(self, message: str) -> None:  # noqa: D401 - argparse API
        sys.stderr.write(f"{self.prog.split()[0]}: error: {message} (see `{self.prog} --help`)\n")
        sys.exit(2)


def _add_checkpoint_reading(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--arch", help="backbone architecture when the file does not say (mec-eval list archs)")
    parser.add_argument("--layout", help="force a checkpoint layout instead of detecting it (e.g. solo-learn, moco)")


def _add_overrides(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides, e.g. optim.epochs=5")
    parser.add_argument("--quiet", action="store_true", help="no progress bars or log echo")


_DISPATCH_EPILOG = """\
cluster profiles: --cluster NAME (a file slurm/NAME.yaml: eval-1gpu, node-8gpu, multinode-4x8gpu) or
a .yaml path; --cluster-set FIELD=VALUE overrides one profile field (repeatable), e.g.
--cluster-set timeout_min=60 --cluster-set additional.exclude=node7. Profile fields never mix with
the task/config key=value overrides, which stay positional.
"""


def _int_in(low: int, high: int):
    """argparse type: an integer in [low, high] (a usage error otherwise)."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text[:40]!r}") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"must be in [{low}, {high}], got {value}")
        return value
    return parse


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected seconds, got {text[:40]!r}") from None
    if not 0.01 <= value <= 86_400:  # also refuses nan and inf
        raise argparse.ArgumentTypeError(f"must be between 0.01 and 86400 seconds, got {text[:40]!r}")
    return value


def _add_dispatch(parser: argparse.ArgumentParser, executors: str) -> None:
    parser.add_argument("--executor", choices=["local", "local-parallel", "slurm"], default="local", help=executors)
    parser.add_argument("--cluster", metavar="PROFILE", help="cluster profile: a name under slurm/ or a .yaml path")
    parser.add_argument("--cluster-set", action="append", default=[], metavar="FIELD=VALUE",
                        help="override a profile field, e.g. timeout_min=60 (repeatable)")


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog="mec-eval", description="Pre-train with Maximum Entropy Coding and evaluate any checkpoint.")
    parser.add_argument("--version", action="version", version=f"mec-eval {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=OneLineParser)

    p = sub.add_parser("pretrain", help="self-supervised pre-training (resumes from DIR/last.pt)",
                       epilog=_DISPATCH_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", required=True, help="built-in config name (mec-eval list configs) or YAML path")
    p.add_argument("--out", help="output folder (default runs/pretrain/<config>)")
    _add_dispatch(p, "local: this process; local-parallel: a submitit job here with tasks_per_node processes; "
                     "slurm: one job of nodes x tasks_per_node processes")
    _add_overrides(p)

    p = sub.add_parser("run", help="evaluate one checkpoint on one task")
    p.add_argument("--task", required=True)
    p.add_argument("--ckpt", required=True, help="path, random:<arch> or manifest:<name>")
    p.add_argument("--out", default="runs", help="runs folder (default runs)")
    p.add_argument("--force", action="store_true", help="re-run even if result.json exists")
    _add_checkpoint_reading(p)
    _add_overrides(p)

    p = sub.add_parser("suite", help="evaluate checkpoints x tasks as one grid, here, in parallel or on SLURM",
                       epilog=_DISPATCH_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--ckpt", help="comma-separated checkpoints: paths, random:<arch>[@seed], manifest:<name>")
    p.add_argument("--watch", metavar="PRETRAIN_DIR",
                   help="instead of --ckpt: evaluate the checkpoints of a pre-training as they appear")
    p.add_argument("--every", type=_int_in(1, 100_000), metavar="K",
                   help="with --watch: evaluate every K-th epoch's checkpoint plus the last (default 1)")
    p.add_argument("--poll", type=_seconds, default=60.0, metavar="SECONDS",
                   help="with --watch: seconds between looks at PRETRAIN_DIR (default 60)")
    p.add_argument("--tasks", help="comma-separated task names (default: knn,linear-fast)")
    p.add_argument("--out", default="runs", help="runs folder (default runs)")
    _add_dispatch(p, "local: one run after the other here; local-parallel: --parallel runs at once here; "
                     "slurm: one job array")
    p.add_argument("--parallel", type=_int_in(1, 256), metavar="N",
                   help="local-parallel: runs at once, each with cores/N threads (default 2)")
    p.add_argument("--force", action="store_true", help="re-run finished runs and queue queued ones again")
    p.add_argument("--retry-failed", action="store_true", help="run only the runs whose last attempt failed")
    _add_checkpoint_reading(p)
    _add_overrides(p)

    p = sub.add_parser("status", help="pending / running / done / failed table of the runs in a folder")
    p.add_argument("runs", metavar="RUNS", help="a runs folder (the --out of suite or run) or a pre-training folder")

    p = sub.add_parser("score", help="score detections or tracks another tool wrote, with the tasks' evaluators")
    p.add_argument("--task", required=True, help="voc07, voc0712, coco, mot, mots, posetrack, vos or sot")
    p.add_argument("--gt", required=True, help="the ground truth: the dataset folder (sot: one groundtruth_rect.txt)")
    p.add_argument("--pred", required=True, help="detections (COCO-results JSON) or a folder of tracker outputs")
    p.add_argument("--out", help="runs folder: also write RUNS/<task>/<pred name>/<hash>/result.json for the report")

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
    how = _dispatch(args)  # profile and executor errors too
    out = check_output_dir(args.out or Path("runs") / "pretrain" / Path(args.config).stem)
    if how.executor == "local":
        from mec_eval.pretrain.main import pretrain

        print(pretrain(cfg, out, quiet=args.quiet))
        return
    from mec_eval.launch.pretrain import launch_pretrain

    print(launch_pretrain(cfg, out, how))


def _dispatch(args, parallel: int = 1):
    """The executor, its profile (with --cluster-set applied) and parallelism; checked torch-free."""
    from mec_eval.launch.executors import check_executor
    from mec_eval.launch.profile import load_profile
    from mec_eval.launch.suite import Dispatch

    if args.executor == "local" and (args.cluster or args.cluster_set):
        raise UserError("--cluster and --cluster-set apply to --executor slurm or local-parallel; add one of them")
    profile = load_profile(args.cluster, args.cluster_set)
    check_executor(args.executor, profile)
    return Dispatch(args.executor, profile, parallel)


def _cmd_run(args) -> None:
    from mec_eval.runs import check_output_dir
    from mec_eval.tasks.specs import resolve_task_config

    resolve_task_config(args.task, args.overrides)  # task and config errors answer before torch loads
    check_output_dir(args.out)
    from mec_eval.tasks.runner import run_task_all

    for outcome in run_task_all(args.task, args.ckpt, args.out, args.overrides, force=args.force, quiet=args.quiet,
                                arch=args.arch, layout=args.layout):
        _echo(outcome.path)


def _check_suite_flags(args) -> None:
    if (args.ckpt is None) == (args.watch is None):
        raise UserError("give --ckpt A,B,... or --watch PRETRAIN_DIR (exactly one of them)")
    if args.watch is None and args.every is not None:
        raise UserError("--every applies to --watch PRETRAIN_DIR; drop it or add --watch")
    if args.force and args.retry_failed:
        raise UserError("--force re-runs everything and --retry-failed only the failed runs; choose one")
    if args.watch is not None and args.retry_failed:
        raise UserError("--retry-failed applies to --ckpt grids; re-run the --watch command to continue watching")
    if args.executor != "local-parallel" and args.parallel is not None:
        raise UserError("--parallel applies to --executor local-parallel; add it or drop --parallel")


def _cmd_suite(args) -> None:
    from mec_eval.launch.suite import parse_checkpoint_list, parse_task_list
    from mec_eval.runs import check_output_dir
    from mec_eval.tasks.specs import resolve_task_config

    _check_suite_flags(args)
    ckpts = parse_checkpoint_list(args.ckpt) if args.ckpt is not None else []
    tasks = parse_task_list(args.tasks)
    for task in tasks:
        resolve_task_config(task, args.overrides)
    how = _dispatch(args, args.parallel or 2)
    if args.watch is not None:
        from mec_eval.launch.watch import check_watch_dir

        check_watch_dir(args.watch)
    check_output_dir(args.out)
    if args.watch is not None:
        from mec_eval.launch.watch import watch

        outcome = watch(args.watch, args.every or 1, tasks, args.out, args.overrides, how, poll_s=args.poll,
                        quiet=args.quiet, arch=args.arch, layout=args.layout)
    else:
        from mec_eval.launch.suite import run_suite

        outcome = run_suite(ckpts, tasks, args.out, args.overrides, how, force=args.force,
                            retry_failed=args.retry_failed, quiet=args.quiet, arch=args.arch, layout=args.layout)
    for line in outcome.lines:
        _echo(line)
    if outcome.failed:
        raise UserError(f"{len(outcome.failed)} run(s) failed (first: {outcome.failed[0]}); see "
                        f"`mec-eval status {args.out}`, fix, then add --retry-failed")


def _cmd_status(args) -> None:
    from mec_eval.launch.records import collect_states, format_status

    print(format_status(collect_states(args.runs), args.runs))


def _cmd_score(args) -> None:
    from mec_eval.tasks.scoring import check_score_args, score_outputs

    check_score_args(args.task, args.gt, args.pred)  # a typo or a missing path answers before any evaluator loads
    result, path = score_outputs(args.task, args.gt, args.pred, args.out)
    print(" ".join(f"{name}={value:.2f}" if isinstance(value, float) else f"{name}={value}"
                   for name, value in result["metrics"].items()))
    if path is not None:
        print(path)


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


COMMANDS = {"pretrain": _cmd_pretrain, "run": _cmd_run, "suite": _cmd_suite, "status": _cmd_status,
            "score": _cmd_score, "report": _cmd_report,
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
        return _fail(str(err), err)
    except OSError as err:  # the OS refused a path: unwritable, full disk, a file where a folder goes
        return _fail(os_error_line(err), err)
    except KeyboardInterrupt:
        sys.stderr.write("mec-eval: interrupted; re-run the same command to resume\n")
        return 130
    return 0


def _echo(line) -> None:
    """Print a command's output once: on process 0 of a torchrun / SLURM run (every process runs
    the command, and all of them know the same paths)."""
    if is_main_process_env():
        print(line)


def _fail(message: str, err: BaseException | None = None) -> int:
    """The one line a user error prints (exit code 2); never a traceback.

    Under torch.distributed an error every process raised together is printed by process 0 only;
    an error of one process alone is printed by that process.
    """
    from mec_eval.log import drop_announcement

    drop_announcement()
    if err is not None and getattr(err, SHARED_WITH_PEERS, False) and not is_main_process_env():
        return 2
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
