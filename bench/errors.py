"""Errors the suite raises for bad input: one line, naming what is wrong and where."""

from __future__ import annotations


class BenchError(Exception):
    """A user-facing error: the CLI prints ``error: <message>`` and exits with status 2."""


class DataError(BenchError):
    """A data file is missing, malformed, or lacks a field.

    The message names the file, and where known the row (0-based) and the field.
    """

    def __init__(self, path: object, message: str, row: int | None = None, field: str | None = None):
        where = str(path)
        if row is not None:
            where += f", row {row}"
        if field is not None:
            where += f", field '{field}'"
        super().__init__(f"{where}: {message}")
        self.path, self.row, self.field, self.message = path, row, field, message
        self.hinted = False  # set by bench.data.data_hint once "what to do" is appended
