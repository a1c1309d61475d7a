"""The one expectation of a cell's default CMA area, chosen at plan time.

A cell's ``cma-reservation`` testcase is judged either against the cma=
oracle's :class:`~harness.oracle.Prediction` or against the matrix's
hand-written ``expect`` (:class:`~harness.checks.CmaExpectation`); a cell the
oracle cannot predict, or one with neither, is an ERROR saying so.  Whichever
it is, :class:`Expectation` is data: it serializes to JSON (a cell job carries
it to the host that runs the cell) and judges a boot with :meth:`Expectation.judge`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from enum import StrEnum
from typing import Any

from harness import oracle
from harness.checks import CheckResult, CmaBootReport, CmaExpectation, Status, check_cma_reservation
from harness.errors import InputError
from harness.matrix import Cell

NO_EXPECTATION = "the cell has no expectation (neither oracle nor 'expect')"


class ExpectationSource(StrEnum):
    """Where a cell's expectation came from."""

    ORACLE = "oracle"  # the cma= oracle's prediction
    MATRIX = "matrix"  # the matrix's hand-written ``expect``
    UNPREDICTABLE = "unpredictable"  # the oracle could not predict the cell (``error`` says why)
    MISSING = "missing"  # neither


@dataclass(frozen=True)
class Expectation:
    """What the cell expects of the default CMA area, and the judge of its ``cma-reservation``.

    Build one with :meth:`from_oracle`, :meth:`hand_written`, :meth:`unpredictable`
    or :meth:`missing` (or :func:`plan_expectation`).  Calling it is
    :meth:`judge`, so it is also a ``ReservationCheck`` (:mod:`harness.cell`).

    Attributes:
        source: see :class:`ExpectationSource`.
        prediction: the oracle's prediction (``ORACLE`` only).
        expect: the hand-written expectation (``MATRIX`` only).
        error: why there is none (``UNPREDICTABLE`` only).
        memory: the boot's physical memory map from the oracle's replay (drawn by
            reports), None when the oracle could not replay the boot.
    """

    source: ExpectationSource
    prediction: oracle.Prediction | None = None
    expect: CmaExpectation | None = None
    error: str = ""
    memory: oracle.MemoryMap | None = None

    @classmethod
    def from_oracle(cls, prediction: oracle.Prediction) -> Expectation:
        """Judge against the cma= oracle's ``prediction``."""
        return cls(ExpectationSource.ORACLE, prediction=prediction)

    @classmethod
    def hand_written(cls, expect: CmaExpectation) -> Expectation:
        """Judge against the matrix's ``expect``."""
        return cls(ExpectationSource.MATRIX, expect=expect)

    @classmethod
    def unpredictable(cls, error: str) -> Expectation:
        """No expectation: ``cma-reservation`` is an ERROR with message ``error``."""
        return cls(ExpectationSource.UNPREDICTABLE, error=error)

    @classmethod
    def missing(cls) -> Expectation:
        """Neither oracle nor ``expect``: ``cma-reservation`` is an ERROR saying so."""
        return cls(ExpectationSource.MISSING)

    def judge(self, report: CmaBootReport, records: Sequence[str]) -> CheckResult:
        """The ``cma-reservation`` check of a boot: its parsed ``cma:`` lines and kernel records.

        Against the oracle it fails (printing prediction and the kernel's ``cma:``
        lines) when the boot log disagrees: outcome, size, base or range, DT CMA
        pools, or the order of the predicted ``cma:`` messages
        (:func:`harness.oracle.check_against_oracle`).
        """
        name = "cma-reservation"
        if self.prediction is not None:
            ok, message = oracle.check_against_oracle(self.prediction, "\n".join(records))
            if ok:
                return CheckResult(name, Status.PASS, message)
            first, _, rest = message.partition("\n")
            return CheckResult(name, Status.FAIL, first, rest)
        if self.expect is not None:
            return check_cma_reservation(self.expect, report)
        return CheckResult(name, Status.ERROR, self.error or NO_EXPECTATION)

    def __call__(self, report: CmaBootReport, records: list[str]) -> CheckResult:
        return self.judge(report, records)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict; :meth:`from_dict` reads it back unchanged."""
        data: dict[str, Any] = {"source": self.source.value}
        if self.prediction is not None:
            data["prediction"] = asdict(self.prediction)
        if self.expect is not None:
            data["expect"] = expect_to_dict(self.expect)
        if self.error:
            data["error"] = self.error
        if self.memory is not None:
            data["memory"] = self.memory.to_dict()
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Expectation:
        """The inverse of :meth:`to_dict`.

        Raises:
            InputError: a field is missing or of the wrong type.
        """
        try:
            source = ExpectationSource(data["source"])
            raw = data.get("prediction")
            prediction = _prediction(raw) if raw is not None else None
            expect = expect_from_dict(data["expect"]) if data.get("expect") is not None else None
            memory = oracle.MemoryMap.from_dict(data["memory"]) if data.get("memory") is not None else None
            return cls(source, prediction, expect, str(data.get("error", "")), memory)
        except (KeyError, TypeError, ValueError) as exc:
            raise InputError(f"expectation: malformed ({exc!r})") from exc


def _prediction(raw: dict[str, Any]) -> oracle.Prediction:
    pools = tuple(oracle.DtCmaPool(**p) for p in raw.get("dt_pools", ()))
    return oracle.Prediction(**{**raw, "log": tuple(raw["log"]), "dt_pools": pools,
                                "notes": tuple(raw.get("notes", ()))})


def expect_to_dict(expect: CmaExpectation) -> dict[str, Any]:
    """A hand-written expectation as ``{"cma": outcome, "size_mib": N or null}``."""
    return {"cma": expect.kind.value, "size_mib": expect.size_mib}


def expect_from_dict(data: dict[str, Any]) -> CmaExpectation:
    """The inverse of :func:`expect_to_dict`.

    Raises:
        ValueError, KeyError: not such a dict.
    """
    size = data["size_mib"]
    if size is not None and (not isinstance(size, int) or isinstance(size, bool)):
        raise ValueError(f"size_mib must be an integer or null, got {size!r}")
    return CmaExpectation(str(data["cma"]), size)


def plan_expectation(cell: Cell, full_cmdline: str,
                     boot: oracle.CmaBoot | oracle.UnmodelledKernel) -> Expectation:
    """The cell's expectation: the matrix's ``expect`` if given, else the oracle's prediction.

    ``full_cmdline`` is the whole kernel command line the guest boots with;
    ``boot`` the oracle's view of the board booting the built kernel.  A cell the
    oracle cannot predict (:class:`~harness.errors.InputError`) gets an
    ``UNPREDICTABLE`` expectation naming why.  Whenever the oracle can replay
    the boot, the expectation carries its memory map (also for ``expect`` cells).
    """
    if isinstance(boot, oracle.UnmodelledKernel):
        if cell.expect is not None:
            return Expectation.hand_written(cell.expect)
        return Expectation.unpredictable(f"the cma= oracle cannot predict this cell: {boot}")
    try:
        prediction, memory = oracle.predict_boot(full_cmdline, boot)
    except InputError as exc:
        if cell.expect is not None:
            return Expectation.hand_written(cell.expect)
        return Expectation.unpredictable(f"the cma= oracle cannot predict this cell: {exc}")
    if cell.expect is not None:
        return replace(Expectation.hand_written(cell.expect), memory=memory)
    return replace(Expectation.from_oracle(prediction), memory=memory)


def mark_unbootable(cell: Cell, expectation: Expectation) -> Cell:
    """``cell`` marked ``xfail`` when the oracle predicts its guest cannot reach the shell.

    E.g. a ``mem=`` that ends below the initrd QEMU loaded: arm_memblock_init()
    prints "INITRD: ... is not a memory region - disabling initrd" and there is
    no initramfs to run (the prediction's ``unbootable``).  A cell the matrix
    already marks ``xfail`` or ``skip`` keeps its own mark.
    """
    prediction = expectation.prediction
    if prediction is None or not prediction.unbootable or cell.xfail or cell.skip:
        return cell
    return replace(cell, xfail=f"the cma= oracle predicts no shell: {prediction.unbootable}")
