"""A fake guest that answers a cell script from a table and prints the console log it would.

It runs :mod:`harness.script`'s steps the way the guest shell does -- guards,
loops over the debugfs listing and cma-dev's areas, nested markers with
uptimes -- so the judge can be tested on logs no QEMU printed.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from harness.job import CellJob
from harness.script import AREA_NAME, Step, suite_step_ids

BOOT = ("[    0.000000] Booting Linux on physical CPU 0x0\r\n"
        "[    0.000000] cma: Reserved 64 MiB at 0x7c000000\r\n"
        "cma-harness: init ready (6.1.0)\r\n")

Answer = str | tuple[str, int]


@dataclass
class FakeGuest:
    """Prints the log of ``job``'s script answered from ``answers`` (step id -> output or (output, status)).

    ``stop``: the (nested) step id the guest dies in (its begin marker is the last thing printed);
    ``extra``: bytes printed inside that step before it dies (e.g. a panic record).
    """

    job: CellJob
    answers: dict[str, Answer] = field(default_factory=dict)
    stop: str = ""
    extra: str = ""
    out: list[str] = field(default_factory=list)
    up: float = 1.0
    vars: set[str] = field(default_factory=set)

    def _marker(self, text: str) -> None:
        self.up += 0.25
        self.out.append(f"\r\n@@{self.job.nonce} {text} {self.up:.2f}\r\n")

    def _step(self, step_id: str, kind: str, run: bool = True) -> int | None:
        """Print one (nested) step; None when the guest died in it."""
        self._marker(f"begin {kind} {step_id}")
        if step_id == self.stop:
            self.out.append(self.extra)
            return None
        answer = self.answers.get(step_id, "")
        text, status = answer if isinstance(answer, tuple) else (answer, 0)
        if run:
            self.out.append(text.replace("\n", "\r\n"))
        self._marker(f"end {step_id} {status if run else '-'}")
        return status

    def _nested(self, step: Step) -> bool:
        """The loops of the script; False when the guest died in one."""
        if step.id == "debugfs-probe":
            listing = self.answers.get("debugfs-list", "")
            names = [] if isinstance(listing, tuple) and listing[1] else str(
                listing[0] if isinstance(listing, tuple) else listing).split()
            fit = [a for a in names if AREA_NAME.fullmatch(a)]
            return all(self._step(f"probe:{a}", "command") is not None for a in fit)
        rows = str(self.answers.get("cma-dev-areas", "")).splitlines()
        areas = [r.split()[1] for r in rows if len(r.split()) == 6 and r.split()[0].isdigit()]
        for area in (a for a in areas if a != "reserved" and AREA_NAME.fullmatch(a)):
            for suite in self.job.cell.area_suites:
                for step_id, kind in zip(suite_step_ids(suite, area), ("command", "suite", "command"),
                                         strict=True):
                    if self._step(step_id, kind) is None:
                        return False
        return True

    def log(self) -> bytes:
        """The whole console log, poweroff included unless the guest died."""
        self.out.append(BOOT)
        self._marker("begin boot shell")
        self._marker("end shell 0")
        for step in self.job.script().steps:
            run = not step.when or step.when in self.vars
            if step.id in ("debugfs-probe", "area-suites") and run:
                self._marker(f"begin {step.kind.value} {step.id}")
                if step.id == self.stop or not self._nested(step):
                    return "".join(self.out).encode()
                self._marker(f"end {step.id} 0")
                continue
            status = self._step(step.id, step.kind.value, run)
            if status is None:
                return "".join(self.out).encode()
            if step.sets and run and status == 0:
                self.vars.add(step.sets)
        self.out.append("[   20.000000] reboot: Power down\r\n")
        return "".join(self.out).encode()
