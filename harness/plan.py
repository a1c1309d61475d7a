"""Planning a run: the request, its cells, their kernels, and one job per cell.

The stages, each a plain function on frozen data, nothing run or written:

* :class:`RunRequest`: what ``cma-harness run`` was asked (built from argparse
  once; ``--resume`` makes a new one from the run's run.json, :func:`resume_request`);
* :func:`select_cells`: the request's matrix, boards and cells, every input
  checked (a :class:`Selection`);
* :func:`plan_run`: the host checked, each distinct kernel and initramfs built
  (:func:`prepare`), the cma= oracle's prediction made: a :class:`RunPlan` with
  one :class:`PlannedCell` per cell, all an executor and the results writer need.

:mod:`harness.run` executes the plan.
"""

from __future__ import annotations

import platform
import subprocess
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from harness import kbuild, oracle, paths, qemu, results, rootfs
from harness.boards import Board, load_board, read_input_text
from harness.cache import file_digest
from harness.cmdline import validate_cmdline
from harness.doctor import preflight
from harness.errors import InputError
from harness.expectation import Expectation, mark_unbootable, plan_expectation
from harness.hosts import Host, check_host_files
from harness.integrity import recorded_digests
from harness.job import Artifact, CellJob
from harness.matrix import Cell, Matrix, filter_cells, load_matrix
from harness.progress import Reporter
from harness.series import Series, parse_series, with_extra_patches


@dataclass(frozen=True)
class KernelInputs:
    """What every kernel of a command is built from.

    Attributes:
        source: a kernel tarball or source directory (``--kernel-src``).
        series: the quilt series file (``--series``).
        patches: patches applied after the series (``--patch``), in order.
        build_jobs: ``make -j`` (``--build-jobs``; checked to be >= 1 by :func:`prepare`).
    """

    source: Path
    series: Path
    patches: tuple[Path, ...]
    build_jobs: int


@dataclass(frozen=True)
class RunRequest:
    """What ``cma-harness run`` was asked to do, as parsed (checked by :func:`select_cells`).

    Attributes:
        matrix: the matrix TOML file.
        board, cmdline: filters (None: every board / every cmdline).
        kernel: the kernel's inputs.
        jobs: guests at once (``-j``); retries: reruns of a failed cell.
        results: the results root (``-o``).
        resume: the unfinished run directory to complete, or None.
        hosts: SSH hosts that run cells too (``--hosts``); with hosts, ``jobs`` may be 0.
    """

    matrix: Path
    board: str | None
    cmdline: str | None
    kernel: KernelInputs
    jobs: int
    retries: int
    results: Path
    resume: Path | None = None
    hosts: tuple[Host, ...] = ()


@dataclass(frozen=True)
class Selection:
    """The cells a request runs, all input checked; nothing built or written yet.

    Attributes:
        request: the request (after ``--resume``: the one made from run.json).
        matrix: the loaded matrix; cells: its cells left by the filters, in order.
        boards: every board the cells use, loaded, by name.
        resumed_keys: ``--resume``: the build key each board's kernel had (run.json), else empty.
    """

    request: RunRequest
    matrix: Matrix
    cells: tuple[Cell, ...]
    boards: Mapping[str, Board]
    resumed_keys: Mapping[str, object]


@dataclass(frozen=True)
class Prepared:
    """A board with its kernel and initramfs ready to boot, and the oracle's view of its boot.

    ``request`` is what the kernel was built from (defconfig, fragments, patches).
    """

    board: Board
    kernel: kbuild.KernelBuild
    initramfs: rootfs.Initramfs
    boot: oracle.CmaBoot | oracle.UnmodelledKernel  # the latter: no predictions, and why
    request: kbuild.BuildRequest


@dataclass(frozen=True)
class Artifacts:
    """The files a boot reads, named by content: SHA-256 hex digests.

    ``dtb`` is None when QEMU generates the device tree (virt).
    """

    zimage: str
    dtb: str | None
    initrd: str


@dataclass(frozen=True)
class PlannedCell:
    """One cell, ready to run anywhere and to be written as it finishes.

    The cell, its expectation, provenance and whole kernel command line are the
    job's (one copy of each); ``spec`` and ``artifacts`` are the same boot on this host.

    Attributes:
        spec: its boot: files (host paths) and the whole kernel command line.
        artifacts: ``spec``'s files by content hash.
        job: the :class:`harness.job.CellJob`, the unit any executor runs (board file
            text embedded, boot files by path and SHA-256, the expectation chosen at
            plan time by :func:`harness.expectation.plan_expectation`).
    """

    spec: qemu.BootSpec
    artifacts: Artifacts
    job: CellJob

    @property
    def cell(self) -> Cell:
        """The matrix cell (suites, area suites, required subtests, xfail/skip)."""
        return self.job.cell

    @property
    def expectation(self) -> Expectation:
        """The ``cma-reservation`` expectation: the matrix's ``expect``, else the oracle's."""
        return self.job.expectation

    @property
    def provenance(self) -> results.Provenance:
        """The JUnit properties of its kernel and QEMU."""
        return self.job.provenance

    @property
    def slug(self) -> str:
        """The cell's file name stem (``cells/<slug>.xml``, ``logs/<slug>.log``)."""
        return self.cell.slug

    @property
    def kernel_cmdline(self) -> str:
        """The whole kernel command line the guest boots with."""
        return self.job.kernel_cmdline


@dataclass(frozen=True)
class RunPlan:
    """A run, planned: one job per cell (matrix order) and the provenance for run.json.

    Attributes:
        request: the request (after ``--resume``: the resumed run's).
        matrix: the matrix the cells come from.
        jobs: one :class:`PlannedCell` per selected cell, in matrix order.
        info: run.json's content but ``run_id`` and ``timestamp`` (invocation,
            kernels by board, QEMU, toolchain, host, harness version).
        board_files: the board files used, copied into the results directory.
    """

    request: RunRequest
    matrix: Matrix
    jobs: tuple[PlannedCell, ...]
    info: Mapping[str, object]
    board_files: tuple[Path, ...]


HostCheck = Callable[[Sequence[Board]], None]
Builder = Callable[[Mapping[str, Board], KernelInputs, Reporter], dict[str, Prepared]]


def resume_request(request: RunRequest) -> tuple[RunRequest, Mapping[str, object]]:
    """``run --resume DIR``: matrix, filters, source, series and patches from DIR/run.json.

    ``jobs``, ``retries``, ``build_jobs`` and the results root stay the request's.

    Returns:
        The new request (matrix: ``DIR/matrix.toml``) and the build key each
        board's kernel had in the run (run.json's ``kernels``); without
        ``--resume``, ``request`` itself and ``{}``.

    Raises:
        InputError: DIR is not an unfinished run, or its run.json lacks or mistypes a field.
    """
    if request.resume is None:
        return request, {}
    info = results.ResultsDir.unfinished(request.resume)
    run = results.resume_invocation(info, request.resume)
    kernel = replace(request.kernel, source=Path(run["kernel_src"]), series=Path(run["series"]),
                     patches=tuple(Path(p) for p in run.get("patches", [])))
    kernels = info.get("kernels")
    keys = {name: k.get("build_key") for name, k in kernels.items()} if isinstance(kernels, dict) else {}
    return replace(request, matrix=request.resume / "matrix.toml", board=run.get("board"),
                   cmdline=run.get("cmdline"), kernel=kernel), keys


def check_full_cmdlines(where: str, cells: Sequence[Cell], loaded: Mapping[str, Board],
                        interactive: bool = False) -> None:
    """Refuse a cell whose WHOLE kernel command line exceeds ARM's COMMAND_LINE_SIZE (1024 bytes).

    The whole line is what ``-append`` gets (:func:`harness.qemu.kernel_cmdline`):
    the board's console arguments, the harness's, then the cell's; the matrix
    checked the cell's part alone.  ``interactive``: as ``boot`` builds it.

    Raises:
        InputError: ``<where>: cell '<board:cmdline>': with board <b>'s arguments and the
            harness's, kernel cmdline is N bytes; ARM allows at most 1023`` (a cell
            name over 80 characters is cut, with the cmdline's length).
    """
    for cell in cells:
        try:
            validate_cmdline(qemu.kernel_cmdline(loaded[cell.board], cell.cmdline, interactive))
        except InputError as exc:
            name = cell.name if len(cell.name) <= 80 else f"{cell.name[:72]}... ({len(cell.cmdline)} bytes)"
            raise InputError(f"{where}: cell {name!r}: with board {cell.board}'s arguments and "
                             f"the harness's, {exc}") from exc


def select_cells(request: RunRequest) -> Selection:
    """The matrix and the cells ``request`` runs (``--resume``: its run.json first), all input checked.

    Raises:
        InputError: a bad matrix, board, filter, resume directory, a whole
            kernel command line too long, bad ``-j``/``--retries``; nothing is written.
    """
    request, resumed_keys = resume_request(request)
    mat = load_matrix(request.matrix)
    if request.board is not None:
        load_board(request.board)  # an unknown board is named as such
    if request.cmdline is not None:
        validate_cmdline(request.cmdline)
    cells = filter_cells(mat, request.board, request.cmdline)
    # A broken board file is refused before anything runs.
    loaded = {name: load_board(name) for name in dict.fromkeys(c.board for c in cells)}
    check_full_cmdlines(str(mat.path), cells, loaded)
    if request.jobs < (0 if request.hosts else 1):
        raise InputError("-j/--jobs must be at least 1 (0 only with --hosts: cells on the hosts only)")
    check_host_files(request.hosts)
    if request.retries < 0:
        raise InputError("--retries must be 0 or more")
    return Selection(request, mat, tuple(cells), loaded, resumed_keys)


def _oracle_boot(board: Board, kernel: kbuild.KernelBuild, initramfs: rootfs.Initramfs,
                 rep: Reporter) -> oracle.CmaBoot | oracle.UnmodelledKernel:
    """What the cma= oracle needs to know of ``board`` booting ``kernel`` (RAM, image, initrd, dtb).

    A kernel version the oracle does not model is not an error of the run: the
    returned :class:`~harness.oracle.UnmodelledKernel` says why there are no
    predictions, and ``rep`` warns once per board.
    """
    with tempfile.TemporaryDirectory(prefix="cma-harness-dtb-") as tmp:
        dtb = kernel.dtb(board.dtb) if board.dtb else qemu.dump_dtb(board, Path(tmp) / "qemu.dtb")
        try:
            return _boot_facts(board, kernel, initramfs, dtb)
        except oracle.UnmodelledKernel as exc:
            rep.step(f"warning: {board.name}: {exc}; cells without 'expect' "
                     "will be errors")
            return exc


def _boot_facts(board: Board, kernel: kbuild.KernelBuild, initramfs: rootfs.Initramfs,
                dtb: Path) -> oracle.CmaBoot:
    """:func:`harness.oracle.boot_from_files` for ``board`` booting ``kernel`` with ``dtb``."""
    return oracle.boot_from_files(
        ram=board.ram, release=kernel.release, config=kernel.directory / "config",
        system_map=kernel.directory / "System.map", dtb=dtb, initrd=initramfs.path,
        zimage=kernel.zimage, dtb_total_size=None if board.dtb else dtb.stat().st_size,
        loader=board.loader)


def _build_request(name: str, board: Board, source: kbuild.KernelSource, series: Series,
                   jobs: int) -> kbuild.BuildRequest:
    """:func:`harness.kbuild.board_request` for ``board``; a missing fragment names the board file."""
    try:
        return kbuild.board_request(board.defconfig, board.fragments, source, series, jobs,
                                    (board.file.parent,) if board.file else ())
    except InputError as exc:
        raise InputError(f"{board.file or name}: {exc}") from exc


def prepare(loaded: Mapping[str, Board], inputs: KernelInputs, rep: Reporter) -> dict[str, Prepared]:
    """Build each distinct kernel of ``loaded``'s boards once, and its initramfs (or take them cached).

    Returns:
        A :class:`Prepared` per board name.

    Raises:
        InputError: a bad source, series, patch, fragment or ``--build-jobs``; a
            board's dtb that its kernel did not build.
        EnvironmentProblem, PatchError, ConfigError, BuildError: see
            :func:`harness.kbuild.build_kernel` and :func:`harness.rootfs.build_initramfs`.
    """
    source = kbuild.resolve_source(kbuild.install_debian_source(inputs.source, rep))
    series = with_extra_patches(parse_series(inputs.series, source.version), list(inputs.patches))
    if inputs.build_jobs < 1:
        raise InputError("--build-jobs must be at least 1")
    prepared: dict[str, Prepared] = {}
    built: dict[tuple[str, tuple[Path, ...]], tuple[kbuild.KernelBuild, rootfs.Initramfs]] = {}
    for name, board in loaded.items():
        request = _build_request(name, board, source, series, inputs.build_jobs)
        key = (board.defconfig, request.fragments)
        if key not in built:
            rep.step(f"kernel for {name}: {board.defconfig} + {', '.join(board.fragments)}, "
                     f"{len(series.patches)} patch(es) from {inputs.series}"
                     + (f" + {', '.join(p.name for p in inputs.patches)}" if inputs.patches else ""))
            kernel = kbuild.build_kernel(request, rep)
            rep.step(f"kernel {kernel.release} ready ({kernel.directory})")
            initramfs = rootfs.build_initramfs(kernel)
            rep.step(f"initramfs ready ({initramfs.path})")
            built[key] = (kernel, initramfs)
        kernel, initramfs = built[key]
        if board.dtb:
            kernel.dtb(board.dtb)  # fail early on a board whose dtb this kernel lacks
        prepared[name] = Prepared(board, kernel, initramfs, _oracle_boot(board, kernel, initramfs, rep),
                                  request)
    return prepared


def boot_spec(ready: Prepared, cmdline: str, interactive: bool = False) -> qemu.BootSpec:
    """The boot of ``ready``'s board with the cell's ``cmdline`` (the whole kernel line made here)."""
    dtb = ready.kernel.dtb(ready.board.dtb) if ready.board.dtb else None
    return qemu.BootSpec(ready.board, ready.kernel.zimage, dtb,
                         ready.initramfs.path, qemu.kernel_cmdline(ready.board, cmdline, interactive))


def _digest(path: Path, recorded: Mapping[str, str], directory: Path) -> str:
    """SHA-256 of ``path``: from its cache entry's manifest when listed there, else read."""
    rel = str(path.relative_to(directory)) if path.is_relative_to(directory) else ""
    return recorded.get(rel) or file_digest(path)


def artifacts_of(ready: Prepared) -> Artifacts:
    """The content hashes of the files ``ready``'s board boots (zImage, dtb, initramfs)."""
    kdir, rdir = ready.kernel.directory, ready.initramfs.path.parent
    kernel_sums, rootfs_sums = recorded_digests(kdir), recorded_digests(rdir)
    dtb = ready.kernel.dtb(ready.board.dtb) if ready.board.dtb else None
    return Artifacts(_digest(ready.kernel.zimage, kernel_sums, kdir),
                     _digest(dtb, kernel_sums, kdir) if dtb else None,
                     _digest(ready.initramfs.path, rootfs_sums, rdir))


def harness_version() -> str:
    """``git describe`` of a checkout, else the installed package's version."""
    if paths.is_checkout():
        try:
            return subprocess.run(["git", "-C", str(paths.DATA_ROOT), "describe", "--always", "--dirty"],
                                  capture_output=True, text=True, check=True).stdout.strip()
        except (OSError, subprocess.CalledProcessError):
            pass
    return paths.harness_version()


def _kernel_info(ready: Prepared) -> dict[str, object]:
    """run.json's ``kernels.<board>`` table: the kernel and what it was built from."""
    k, req = ready.kernel, ready.request
    return {"release": k.release, "source": k.source, "source_identity": k.source_identity,
            "series_hash": k.series_hash, "config_hash": k.config_hash, "build_key": k.key,
            "patches": [{"name": p.name, "sha256": p.sha256} for p in req.series.patches],
            "defconfig": req.defconfig, "fragments": [f.name for f in req.fragments]}


def run_info(sel: Selection, prepared: Mapping[str, Prepared], qemu_version: str) -> dict[str, object]:
    """run.json's content but ``run_id`` and ``timestamp`` (see :class:`RunPlan`)."""
    req = sel.request
    return {
        "invocation": {"matrix": str(sel.matrix.path), "board": req.board, "cmdline": req.cmdline,
                       "kernel_src": str(req.kernel.source), "series": str(req.kernel.series.resolve()),
                       "patches": [str(p.resolve()) for p in req.kernel.patches], "jobs": req.jobs,
                       "retries": req.retries},
        "matrix": sel.matrix.name, "kernels": {n: _kernel_info(p) for n, p in prepared.items()},
        "qemu": qemu_version, "toolchain": next(iter(prepared.values())).kernel.toolchain,
        "host": platform.node(), "harness_version": harness_version(),
    }


def _refuse_changed_kernels(sel: Selection, prepared: Mapping[str, Prepared]) -> None:
    """``--resume``: refuse a board whose kernel's build key differs from the run's.

    Raises:
        InputError: ``--resume DIR: the kernel for <boards> changed since the run started ...``.
    """
    changed = [n for n, p in prepared.items()
               if n in sel.resumed_keys and sel.resumed_keys[n] != p.kernel.key]
    if changed:
        raise InputError(f"--resume {sel.request.resume}: the kernel for {', '.join(changed)} changed "
                         "since the run started (series, config or source); start a new run")


def _planned(cell: Cell, ready: Prepared, provenance: results.Provenance, artifacts: Artifacts,
             board_toml: str) -> PlannedCell:
    """The job of ``cell`` on ``ready``'s board: its boot, expectation and :class:`CellJob`."""
    spec = boot_spec(ready, cell.cmdline)
    expectation = plan_expectation(cell, spec.cmdline, ready.boot)
    cell = mark_unbootable(cell, expectation)
    job = CellJob(cell, replace(spec.board, file=None), board_toml, Artifact(spec.zimage, artifacts.zimage),
                  None if spec.dtb is None or artifacts.dtb is None else Artifact(spec.dtb, artifacts.dtb),
                  Artifact(spec.initrd, artifacts.initrd), spec.cmdline, expectation, provenance)
    return PlannedCell(spec, artifacts, job)


def plan_run(sel: Selection, rep: Reporter, host_check: HostCheck = preflight,
             build: Builder = prepare) -> RunPlan:
    """Check the results root and the host, build, predict: the :class:`RunPlan` of ``sel``.

    ``host_check`` and ``build`` default to :func:`harness.doctor.preflight` and :func:`prepare`.

    Raises:
        InputError: the results root (or ``--resume``'s directory) cannot take
            results; a bad kernel input; ``--resume`` and a kernel changed since.
        HostNotReady, EnvironmentProblem, PatchError, ConfigError, BuildError:
            the host check or the build.
    """
    req = sel.request
    for root in (req.resume.parent, req.resume) if req.resume is not None else (req.results,):
        results.check_results_root(root)  # before the build: a run could not keep its results
    host_check(list(sel.boards.values()))
    qemu_version = qemu.qemu_version()
    prepared = build(sel.boards, req.kernel, rep)
    _refuse_changed_kernels(sel, prepared)
    provenance = {name: results.Provenance(p.kernel.release, p.kernel.source, p.kernel.series_hash,
                                           p.kernel.config_hash, p.kernel.toolchain, qemu_version)
                  for name, p in prepared.items()}
    artifacts = {name: artifacts_of(p) for name, p in prepared.items()}
    texts = {name: read_input_text(p.board.file, "board") if p.board.file else ""
             for name, p in prepared.items()}
    jobs = tuple(_planned(c, prepared[c.board], provenance[c.board], artifacts[c.board], texts[c.board])
                 for c in sel.cells)
    files = tuple(p.board.file for p in prepared.values() if p.board.file)
    return RunPlan(req, sel.matrix, jobs, run_info(sel, prepared, qemu_version), files)
