"""Typed exceptions, one family per layer.

Every exception derived from :class:`HarnessError` is an *input or environment*
problem: the CLI prints its message as one line and exits with status 2.  Check
disagreements are never exceptions; they are results (see ``harness.checks``).
"""

from __future__ import annotations


class HarnessError(Exception):
    """Base class: a problem that stops the run before any result is trustworthy."""


class InputError(HarnessError):
    """Bad user input: an unknown board, a malformed matrix, a dangerous cmdline."""


class EnvironmentProblem(HarnessError):
    """Something missing on the host: a toolchain, QEMU, busybox, a source tarball."""


class PatchError(HarnessError):
    """A patch of the series does not apply; the message names it and the hunk.

    ``detail`` holds the rejected hunks (the ``.rej`` text), shown after the
    one-line message.
    """

    def __init__(self, message: str, detail: str = "") -> None:
        super().__init__(message)
        self.detail = detail


class ConfigError(HarnessError):
    """A Kconfig option requested by a fragment did not land in the final .config."""


class BuildError(HarnessError):
    """``make`` failed; the message names the log file holding the full output."""


class BootError(Exception):
    """The guest did not reach a usable shell, or stopped answering.

    Not a :class:`HarnessError`: a boot failure is recorded as the matrix cell's
    ``<error>`` and the run goes on with the next cell.
    """

    def __init__(self, message: str, excerpt: str = "") -> None:
        super().__init__(message)
        self.excerpt = excerpt
