"""JSON shapes shared by cell jobs and cell results: checked readers and the matrix cell.

Everything a job or a result file holds is read through :class:`Fields`, so a
missing or mistyped field is one :class:`~harness.errors.InputError` naming the
file and the field, never a ``KeyError`` from deep inside.
"""

from __future__ import annotations

from typing import Any

from harness.checks import CheckResult, CmaExpectation, Status
from harness.errors import InputError
from harness.matrix import Cell


class Fields:
    """A JSON object read field by field; errors name ``where`` (file and path to the object).

    Raises (every method):
        InputError: ``<where>: '<key>' must be <what>`` for a missing or mistyped field.
    """

    def __init__(self, data: object, where: str) -> None:
        if not isinstance(data, dict):
            raise InputError(f"{where}: must be a JSON object")
        self.data: dict[str, Any] = data
        self.where = where

    def _get(self, key: str, kind: type | tuple[type, ...], what: str, default: object = ...) -> Any:
        if key not in self.data:
            if default is not ...:
                return default
            raise InputError(f"{self.where}: '{key}' is missing")
        value = self.data[key]
        if not isinstance(value, kind) or (isinstance(value, bool) and kind in (int, float, (int, float))):
            raise InputError(f"{self.where}: '{key}' must be {what}")
        return value

    def text(self, key: str, default: str | None = None) -> str:
        """A string field."""
        return str(self._get(key, str, "a string", ... if default is None else default))

    def integer(self, key: str) -> int:
        """An integer field (not a bool)."""
        return int(self._get(key, int, "an integer"))

    def number(self, key: str) -> float:
        """A number field (int or float)."""
        return float(self._get(key, (int, float), "a number"))

    def optional_number(self, key: str) -> float | None:
        """A number or null (absent: null)."""
        value = self.data.get(key)
        return None if value is None else self.number(key)

    def strings(self, key: str) -> tuple[str, ...]:
        """A list of strings (absent: empty)."""
        value = self._get(key, list, "a list of strings", [])
        if not all(isinstance(x, str) for x in value):
            raise InputError(f"{self.where}: '{key}' must be a list of strings")
        return tuple(value)

    def obj(self, key: str) -> Fields:
        """A nested object."""
        return Fields(self._get(key, dict, "an object"), f"{self.where}.{key}")

    def objects(self, key: str) -> list[Fields]:
        """A list of objects (absent: empty)."""
        items = self._get(key, list, "a list of objects", [])
        return [Fields(x, f"{self.where}.{key}[{i}]") for i, x in enumerate(items)]

    def string_map(self, key: str) -> dict[str, str]:
        """An object of strings (absent: empty), order kept."""
        value = self._get(key, dict, "an object of strings", {})
        if not all(isinstance(v, str) for v in value.values()):
            raise InputError(f"{self.where}: '{key}' must be an object of strings")
        return dict(value)


def cell_to_dict(cell: Cell) -> dict[str, Any]:
    """A matrix cell as a JSON object (:func:`cell_from_dict` reads it back equal)."""
    expect = None if cell.expect is None else {"cma": str(cell.expect.kind), "size_mib": cell.expect.size_mib}
    return {"board": cell.board, "cmdline": cell.cmdline, "expect": expect,
            "description": cell.description, "suites": list(cell.suites),
            "area_suites": list(cell.area_suites), "required_subtests": list(cell.required),
            "xfail": cell.xfail, "skip": cell.skip}


def cell_from_dict(f: Fields) -> Cell:
    """The inverse of :func:`cell_to_dict`.

    Raises:
        InputError: a missing or mistyped field, or an unknown expected outcome.
    """
    expect = None
    if f.data.get("expect") is not None:
        raw = f.obj("expect")
        size = raw.data.get("size_mib")
        try:
            expect = CmaExpectation(raw.text("cma"), None if size is None else raw.integer("size_mib"))
        except ValueError as exc:
            raise InputError(f"{raw.where}: 'cma' must be reserved, failed or none") from exc
    return Cell(f.text("board"), f.text("cmdline"), expect, f.text("description", ""), f.strings("suites"),
                f.strings("required_subtests"), f.strings("area_suites"), f.text("xfail", ""),
                f.text("skip", ""))


def check_to_dict(check: CheckResult) -> dict[str, Any]:
    """One check result as a JSON object."""
    return {"name": check.name, "status": check.status.value, "message": check.message,
            "details": check.details, "seconds": check.seconds, "infrastructure": check.infrastructure}


def check_from_dict(f: Fields) -> CheckResult:
    """The inverse of :func:`check_to_dict`.

    Raises:
        InputError: a missing or mistyped field, or an unknown status.
    """
    try:
        status = Status(f.text("status"))
    except ValueError as exc:
        raise InputError(f"{f.where}: 'status' must be one of pass, fail, error, skip") from exc
    infra = f.data.get("infrastructure", False)
    if not isinstance(infra, bool):
        raise InputError(f"{f.where}: 'infrastructure' must be true or false")
    return CheckResult(f.text("name"), status, f.text("message"), f.text("details", ""), f.number("seconds"),
                       infra)


def check_schema(f: Fields, kind: str, version: int) -> None:
    """Refuse a JSON document that is not a ``kind`` of schema ``version``.

    Raises:
        InputError: ``<where>: not a cma-harness <kind> (schema ...)``.
    """
    if f.data.get("kind") != kind or f.data.get("schema") != version:
        raise InputError(f"{f.where}: not a {kind} of schema {version} "
                         f"(kind {f.data.get('kind')!r}, schema {f.data.get('schema')!r})")
