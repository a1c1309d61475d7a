"""The executor of ``run --lava URL``: every cell a LAVA job, judged here from LAVA's console log.

:class:`LavaExecutor` serves the run's boot files over HTTP itself
(:class:`ArtifactServer`, content-addressed: ``/<sha256>``; or the user gives a
URL prefix where they already are), submits one job per cell
(:func:`harness.lava.job_definition`) through LAVA's REST API (:class:`LavaClient`,
``/api/v0.2/``), and polls them.  A finished job's log is fetched, its ``target``
records (what the guest printed) become the cell's console log, and
:func:`harness.judge.judge` gives the testcases, exactly as for a local cell.
LAVA's health is not the verdict: ``Complete`` only means the lab worked.
``Incomplete`` and ``Canceled`` (a LAVA-side timeout among them) are the cell's
infrastructure ``<error>`` with LAVA's failure comment and the job's URL.

The submitted job ids are kept in the run's directory (``lava-jobs.json``), so
``--resume`` re-attaches to them instead of submitting again; Ctrl-C (or an
error) cancels every job whose cell is not written yet and forgets it, so
``--resume`` submits those again.
"""

from __future__ import annotations

import http.server
import json
import shutil
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console

from harness import lava, results
from harness.cellresult import CellResult
from harness.errors import EnvironmentProblem, InputError
from harness.executor import LogPath, OnResult
from harness.judge import judge
from harness.plan import PlannedCell
from harness.runner import CellProgress, apply_xfail, skipped_result
from harness.slots import infra_error

TOKEN_ENV = "CMA_HARNESS_LAVA_TOKEN"
POLL_S = 2.0  # between two looks at the unfinished jobs
JOBS_FILE = "lava-jobs.json"  # {slug: LAVA job id} in the run's directory
FINISHED = "Finished"
CANCEL_CHECK_S = 2.0  # after cancelling, until a look at whether LAVA took it


class LavaClient:
    """LAVA's REST API (``/api/v0.2/``) with a token; every failure an :class:`EnvironmentProblem`.

    Attributes:
        url: the server's base URL, e.g. ``http://127.0.0.1:8000/``.
    """

    def __init__(self, url: str, token: str, timeout_s: float = 30.0) -> None:
        import requests
        from requests.adapters import HTTPAdapter
        from urllib3.util.retry import Retry

        self.url = url if url.endswith("/") else url + "/"
        self._session = requests.Session()
        # The lab's web service may drop a kept-alive connection or answer 502-504 while it
        # restarts: GETs (status, log, cancel) are retried; a POST (a submission) never is.
        retry = Retry(total=5, backoff_factor=0.5, status_forcelist=(502, 503, 504),
                      allowed_methods=frozenset({"GET"}))
        self._session.mount("http://", HTTPAdapter(max_retries=retry))
        self._session.mount("https://", HTTPAdapter(max_retries=retry))
        self._session.headers["Authorization"] = f"Token {token}"
        self._timeout = timeout_s

    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        import requests

        try:
            resp = self._session.request(method, self.url + path, timeout=self._timeout, **kwargs)
        except requests.RequestException as exc:
            raise EnvironmentProblem(f"LAVA {self.url}: {method} {path}: {exc}") from exc
        return resp

    def submit(self, definition: str) -> int:
        """Submit one job definition; its job id.

        Raises:
            EnvironmentProblem: LAVA refused it or could not be reached (its message).
        """
        resp = self._call("POST", "api/v0.2/jobs/", json={"definition": definition})
        if resp.status_code != 201:
            raise EnvironmentProblem(f"LAVA {self.url} refused the job ({resp.status_code}): "
                                     f"{resp.text[:300]}")
        return int(resp.json()["job_ids"][0])

    def job(self, job_id: int) -> dict[str, Any]:
        """The job's record: ``state``, ``health``, ``failure_comment``, ``actual_device``...

        Raises:
            EnvironmentProblem: not found, or LAVA not reachable.
        """
        resp = self._call("GET", f"api/v0.2/jobs/{job_id}/")
        if resp.status_code != 200:
            raise EnvironmentProblem(f"LAVA {self.url}: job {job_id}: {resp.status_code} {resp.text[:200]}")
        data: dict[str, Any] = resp.json()
        return data

    def logs(self, job_id: int) -> str:
        """The job's log (YAML, one record a line); ``""`` before its first flush."""
        resp = self._call("GET", f"api/v0.2/jobs/{job_id}/logs/")
        return str(resp.text) if resp.status_code == 200 else ""

    def failure(self, job_id: int) -> tuple[str, str]:
        """LAVA's ``error_type`` and ``error_msg`` of a failed job ("" each if it gave none).

        They are in the metadata (YAML text) of the ``job`` testcase of the job's
        ``lava`` results suite (``/api/v0.2/jobs/<id>/tests/``).  Never raises.
        """
        import yaml

        try:
            resp = self._call("GET", f"api/v0.2/jobs/{job_id}/tests/")
            tests = resp.json().get("results", []) if resp.status_code == 200 else []
            for test in tests:
                meta = yaml.safe_load(test.get("metadata") or "") if test.get("name") == "job" else None
                if isinstance(meta, dict) and "error_type" in meta:
                    return str(meta["error_type"]), " ".join(str(meta.get("error_msg", "")).split())
        except (EnvironmentProblem, ValueError, yaml.YAMLError):
            pass
        return "", ""

    def cancel(self, job_id: int) -> None:
        """Cancel the job (LAVA takes a GET); never raises."""
        try:
            self._call("GET", f"api/v0.2/jobs/{job_id}/cancel/")
        except EnvironmentProblem:
            pass

    def cancel_all(self, job_ids: Sequence[int], rounds: int = 3) -> None:
        """Cancel the jobs, and again those still not ``Canceling`` or finished after a moment:
        LAVA 2023.01 can lose a cancel that comes as a worker starts the job (seen here: the job
        ran on).  At most ``rounds`` * :data:`CANCEL_CHECK_S` seconds; never raises."""
        pending = list(job_ids)
        for _ in range(rounds):
            for job_id in pending:
                self.cancel(job_id)
            time.sleep(CANCEL_CHECK_S if pending else 0)
            try:
                pending = [j for j in pending if self.job(j).get("state") not in ("Canceling", FINISHED)]
            except EnvironmentProblem:
                return
            if not pending:
                return

    def job_url(self, job_id: int) -> str:
        """The job's page for a person."""
        return f"{self.url}scheduler/job/{job_id}"


def console_of(log_yaml: str) -> bytes:
    """The guest's console from a LAVA job log: the ``msg`` of each ``lvl: target`` record, a line each.

    LAVA logs the console line by line without the line ends; each record is a
    flow mapping on one line, ``- {"dt": ..., "lvl": "target", "msg": "..."}``,
    which is JSON (other levels may carry YAML tags, and are not read).
    """
    lines = []
    for raw in log_yaml.splitlines():
        if '"lvl": "target"' not in raw or not raw.startswith("- {"):
            continue
        try:
            record = json.loads(raw[2:])
        except ValueError:
            continue
        msg = record.get("msg")
        if isinstance(msg, str):
            lines.append(msg)
    return ("\n".join(lines) + "\n").encode() if lines else b""


class ArtifactServer:
    """An HTTP server of the run's boot files at ``/<sha256>``, in a thread of its own.

    ``bind``: ``HOST:PORT`` (port 0: any free one).  :attr:`url` is the prefix the
    workers use: give an address they can reach (not 127.0.0.1 for a remote lab).
    """

    def __init__(self, bind: str, files: Mapping[str, Path]) -> None:
        host, _, port = bind.rpartition(":")
        if not host or not port.isdigit():
            raise InputError(f"--lava-serve {bind!r}: expected HOST:PORT")
        table = dict(files)

        class Handler(http.server.BaseHTTPRequestHandler):
            def _head(self) -> Path | None:
                path = table.get(self.path.lstrip("/"))
                if path is None:
                    self.send_error(404)
                    return None
                self.send_response(200)
                self.send_header("Content-Length", str(path.stat().st_size))
                self.send_header("Content-Type", "application/octet-stream")
                self.end_headers()
                return path

            def do_HEAD(self) -> None:  # noqa: N802 - the stdlib's name (LAVA asks the size first)
                self._head()

            def do_GET(self) -> None:  # noqa: N802 - the stdlib's name
                path = self._head()
                if path is not None:
                    with path.open("rb") as fh:
                        shutil.copyfileobj(fh, self.wfile)

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the stdlib's name
                pass

        class Server(http.server.ThreadingHTTPServer):
            def handle_error(self, request: Any, client_address: Any) -> None:
                pass  # a worker that hangs up mid-file (it had what it needed) is not our error

        try:
            self._server = Server((host, int(port)), Handler)
        except OSError as exc:
            raise EnvironmentProblem(f"--lava-serve {bind}: {exc.strerror or exc}") from exc
        self.url = f"http://{host}:{self._server.server_address[1]}/"
        threading.Thread(target=self._server.serve_forever, daemon=True, name="artifacts").start()

    def close(self) -> None:
        """Stop serving."""
        self._server.shutdown()
        self._server.server_close()


@dataclass
class LavaExecutor:
    """Cells as LAVA jobs (see the module docstring).

    Attributes:
        client: the lab's REST API.
        settings: device type, tags, timeouts, artifact URL ("" with ``serve``).
        serve: ``HOST:PORT`` to serve the boot files from here, or "" (``settings.artifact_url``).
        console: where progress goes.
    """

    client: LavaClient
    settings: lava.LavaSettings
    serve: str
    console: Console
    submitted: dict[str, int] = field(default_factory=dict)

    def describe(self, cells: int) -> str:
        """``as LAVA jobs on <url> (device type qemu)``."""
        return f"as LAVA jobs on {self.client.url} (device type {self.settings.device_type})"

    def run(self, jobs: Sequence[PlannedCell], log_path: LogPath, on_result: OnResult) -> list[CellResult]:
        """See :meth:`harness.executor.Executor.run`: submit (or re-attach), poll, judge each.

        Raises:
            EnvironmentProblem: LAVA refused a job or cannot be reached; the artifacts
                cannot be served.  Jobs already submitted are cancelled first.
        """
        if not jobs:
            return []
        state = log_path(jobs[0].slug).parent.parent / JOBS_FILE
        self.submitted = json.loads(state.read_text()) if state.is_file() else {}
        server = self._server(jobs)
        try:
            with CellProgress(self.console, len(jobs)) as progress:
                return self._run(jobs, log_path, on_result, progress, state,
                                 server.url if server else self.settings.artifact_url)
        except BaseException:
            self._cancel(jobs, log_path, state)
            raise
        finally:
            if server is not None:
                server.close()

    def _cancel(self, jobs: Sequence[PlannedCell], log_path: LogPath, state: Path) -> None:
        """Cancel the jobs of the cells not written yet, and forget them: ``--resume``
        submits those again (a job left running, e.g. after a crash, is re-attached)."""
        cancelled = [self.submitted.pop(pj.slug) for pj in jobs
                     if pj.slug in self.submitted and not log_path(pj.slug).exists()]
        results.save(state, json.dumps(self.submitted, indent=1).encode())
        if cancelled:
            self.console.print(f"cancelling {len(cancelled)} LAVA job(s) of cells not finished", markup=False)
            self.client.cancel_all(cancelled)

    def _server(self, jobs: Sequence[PlannedCell]) -> ArtifactServer | None:
        if not self.serve:
            return None
        files = {a.sha256: a.resolve(j.job.base_dir) for j in jobs
                 for a in j.job.boot_files}
        return ArtifactServer(self.serve, files)

    def _run(self, jobs: Sequence[PlannedCell], log_path: LogPath, on_result: OnResult,
             progress: CellProgress, state: Path, prefix: str) -> list[CellResult]:
        done: dict[str, CellResult] = {}

        def finish(result: CellResult) -> None:
            done[result.cell.slug] = result
            on_result(result)
            progress.finished(result)

        for pj in jobs:
            if pj.cell.skip:
                finish(skipped_result(pj.cell, log_path(pj.slug)))
            elif pj.slug not in self.submitted:
                definition = lava.job_definition(pj.job, self.settings, lava.artifact_urls(pj.job, prefix))
                self.submitted[pj.slug] = self.client.submit(lava.job_yaml(definition))
                results.save(state, json.dumps(self.submitted, indent=1).encode())
        while len(done) < len(jobs):
            for pj in jobs:
                if pj.slug not in done:
                    info = self.client.job(self.submitted[pj.slug])
                    if info.get("state") == FINISHED:
                        finish(self._result(pj, info, log_path(pj.slug)))
            if len(done) < len(jobs):
                time.sleep(POLL_S)
        return [done[j.slug] for j in jobs]

    def _result(self, pj: PlannedCell, info: Mapping[str, Any], log: Path) -> CellResult:
        """The cell's result from its finished LAVA job (log written to ``log``)."""
        job_id = self.submitted[pj.slug]
        console = console_of(self.client.logs(job_id))
        log.write_bytes(console)
        device = str(info.get("actual_device") or "?")
        extra = {"host": f"lava:{device}", "lava.job_id": str(job_id),
                 "lava.url": self.client.job_url(job_id)}
        health = str(info.get("health"))
        if health != "Complete":
            error_type, error_msg = self.client.failure(job_id)
            comment = (f"{error_type} error: {error_msg}" if error_type else
                       str(info.get("failure_comment") or "LAVA gave no reason"))
            extra["lava.error_type"] = error_type
            result = infra_error(pj.cell, log, f"lava:{device}", f"LAVA job {job_id} {health}: {comment} "
                                 f"({self.client.job_url(job_id)})")
            log.write_bytes(console or f"not booted: LAVA job {job_id} {health}: {comment}\n".encode())
        else:
            result = apply_xfail(judge(console, pj.job, None, log))
        result.extra = {**extra, **result.extra, "lava.health": health}
        return result
