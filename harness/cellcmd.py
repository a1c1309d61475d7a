"""``cma-harness cell`` and ``cma-harness judge``: one cell job, run here or judged from its log.

``cell JOB.json -o DIR`` runs exactly one :class:`~harness.job.CellJob` on this
machine (its boot files by path, relative paths beside the job file, each
checked against its SHA-256 first) and writes, in DIR, the console log
``<slug>.log``, the result ``<slug>.result.json`` and the JUnit testsuite
``<slug>.xml`` -- the unit a remote executor ships.  Exit status as ``run``: 0
the cell met its expectation, 1 it did not, 2 bad input.

``judge LOG --job JOB.json [--result RESULT.json] [-o OUT.xml]`` recomputes the
cell's testsuite from a saved console log (:func:`harness.judge.judge`): with
the result the live run wrote, it uses its record of how the guest stopped
(and its retries); without, a log that ends mid-step reads as "the guest
stopped".  It prints one line per testcase.

``add_parser`` registers the subcommands on an argparse ``sub`` object;
``python -m harness.cellcmd cell JOB.json -o DIR`` runs them stand-alone.
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
from pathlib import Path

from harness import results
from harness.boards import read_input_bytes
from harness.cell import run_job
from harness.cellresult import CellResult, Mark
from harness.errors import EnvironmentProblem, HarnessError
from harness.job import CellJob
from harness.judge import judge
from harness.runner import apply_xfail, skip_result, skipped_result


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``cell`` and ``judge`` subcommands to ``sub`` (see :func:`cmd_cell`, :func:`cmd_judge`)."""
    c = sub.add_parser("cell", help="run one cell job (JSON) here: log, result JSON and testsuite out")
    c.add_argument("job", type=Path, help="the cell job file (JSON)")
    c.add_argument("-o", "--out-dir", type=Path, required=True,
                   help="where to write <slug>.log, <slug>.result.json and <slug>.xml")
    j = sub.add_parser("judge", help="recompute a cell's testsuite from its saved console log")
    j.add_argument("log", type=Path, help="the cell's console log")
    j.add_argument("--job", type=Path, required=True, help="the cell job file (JSON) it ran")
    j.add_argument("--result", type=Path, help="the live run's result JSON: how the guest stopped")
    j.add_argument("-o", "--output", type=Path, help="write the testsuite (JUnit XML) here")


def write_outputs(result: CellResult, job: CellJob, out_dir: Path, timestamp: dt.datetime) -> Path:
    """Write ``result``'s JSON and testsuite beside its log in ``out_dir``; the testsuite's path.

    Raises:
        EnvironmentProblem: a file cannot be written.
    """
    slug = job.cell.slug
    results.save(out_dir / f"{slug}.result.json", result.to_json(out_dir).encode())
    suite = results.cell_testsuite(result, job.provenance, job.kernel_cmdline, timestamp)
    xml = results.single_suite(suite)
    path = out_dir / f"{slug}.xml"
    results.save(path, xml)
    return path


def cmd_cell(args: argparse.Namespace) -> int:
    """``cell JOB -o DIR``: run the job, write its log, result and testsuite; 0 pass, 1 fail.

    Raises:
        InputError: the job is unreadable or malformed, or a boot file differs.
        EnvironmentProblem: DIR cannot be written.
    """
    job = CellJob.load(args.job)
    spec = None if job.cell.skip else job.spec(verify=True)
    out_dir: Path = args.out_dir
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise EnvironmentProblem(f"cannot create {out_dir}: {exc.strerror or exc}") from exc
    log = out_dir / f"{job.cell.slug}.log"
    result = skipped_result(job.cell, log) if spec is None else apply_xfail(run_job(job, log, spec))
    path = write_outputs(result, job, out_dir, dt.datetime.now(dt.UTC))
    print(f"{job.cell.name}: {result.status.value.upper()} ({len(result.checks)} checks, "
          f"{result.seconds:.1f}s); testsuite {path}")
    return results.exit_status([result])


def rejudge(log: Path, job: CellJob, recorded: CellResult | None = None) -> CellResult:
    """The cell's result from its saved console ``log``, as the runner reported it.

    ``recorded``: the live run's result, whose ending (how the guest stopped)
    and retries are reused; the verdicts all come from the log.

    Raises:
        InputError: the log cannot be read.
    """
    if job.cell.skip:
        return skip_result(job.cell, log)
    result = judge(read_input_bytes(log, "console log"), job, recorded.ending if recorded else None, log)
    if recorded is not None and recorded.mark in (Mark.FLAKY, Mark.RETRIED):
        flaky = [c for c in recorded.checks if c.name == "flaky"] if recorded.mark is Mark.FLAKY else []
        result.checks += flaky
        result.mark, result.attempts = recorded.mark, recorded.attempts
    return apply_xfail(result)


def cmd_judge(args: argparse.Namespace) -> int:
    """``judge LOG --job JOB [--result RESULT] [-o OUT.xml]``: print the testcases; 0 pass, 1 fail.

    Raises:
        InputError: the log, job or result is unreadable or malformed.
        EnvironmentProblem: OUT.xml cannot be written.
    """
    job = CellJob.load(args.job)
    result = rejudge(args.log, job, CellResult.load(args.result) if args.result else None)
    for check in result.checks:
        print(f"{check.status.value.upper():5} {check.name}: {check.message}")
    if args.output is not None:
        recorded_at = dt.datetime.now(dt.UTC)
        suite = results.cell_testsuite(result, job.provenance, job.kernel_cmdline, recorded_at)
        results.save(args.output, results.single_suite(suite))
    return results.exit_status([result])


def main(argv: list[str] | None = None) -> int:
    """``python -m harness.cellcmd {cell,judge} ...``: as ``cma-harness``, exit 2 on bad input."""
    parser = argparse.ArgumentParser(prog="python -m harness.cellcmd")
    sub = parser.add_subparsers(dest="command", required=True)
    add_parser(sub)
    args = parser.parse_args(argv)
    try:
        return {"cell": cmd_cell, "judge": cmd_judge}[args.command](args)
    except HarnessError as exc:
        print(f"cma-harness: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
