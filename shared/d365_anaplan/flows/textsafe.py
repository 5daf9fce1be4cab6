"""Text safety for values written into CSV files that a spreadsheet might open, and CSV writing.

Two kinds of text reach our files:

* **codes** (company, main account, dimension values, versions, list members): a code starting with
  ``=``, ``+``, ``-``, ``@``, tab or CR, or containing any control character, is refused with
  :class:`~d365_anaplan.errors.BadInputData` naming the record and the field. Such a code cannot be a real
  F&O or Anaplan code and would be a formula when the file is opened in a spreadsheet.
* **free text** (line descriptions): line breaks and other control characters become spaces, and a value
  starting with one of the formula characters gets a leading apostrophe (``'=SUM(A1)``), the usual
  neutralisation that spreadsheets display without evaluating.

CSV files are written with :func:`csv_writer`: comma separated, ``"`` quoting only where needed (commas,
quotes, line breaks), quotes doubled, ``\\n`` line endings.
"""

from __future__ import annotations

import csv
import re
from typing import Any, Protocol

from d365_anaplan.errors import BadInputData

FORMULA_START = frozenset("=+-@\t\r\n")
_CONTROL = re.compile(r"[\x00-\x1f\x7f\u2028\u2029]")
_LINE_BREAKS = re.compile(r"\r\n|\r|\n|\u2028|\u2029")


class TextWriter(Protocol):
    """Anything with ``write(str)``: an open text file, ``io.StringIO``, a streaming S3 text wrapper."""

    def write(self, s: str, /) -> Any: ...


def check_code(value: str, *, where: str, field: str, allow_empty: bool = False) -> str:
    """Return ``value`` if it is a safe code; raise BadInputData naming ``where`` and ``field`` otherwise."""
    if not isinstance(value, str):
        raise BadInputData(f"{where}: field {field!r} must be text, got {type(value).__name__}")
    if value == "":
        if allow_empty:
            return value
        raise BadInputData(f"{where}: field {field!r} is empty")
    if value[0] in FORMULA_START:
        raise BadInputData(
            f"{where}: field {field!r} value {value!r} starts with {value[0]!r}; codes may not start with "
            "=, +, -, @, tab or a line break (it would be read as a spreadsheet formula)"
        )
    if _CONTROL.search(value):
        raise BadInputData(f"{where}: field {field!r} value {value!r} contains a control character")
    if value != value.strip():
        raise BadInputData(f"{where}: field {field!r} value {value!r} has leading or trailing spaces")
    return value


def neutralise_text(value: str) -> str:
    """Make free text safe for a CSV cell: one line, no control characters, no leading formula character."""
    text = _LINE_BREAKS.sub(" ", value)
    text = _CONTROL.sub(" ", text)
    # Also when spaces precede the formula character: some spreadsheets trim before evaluating.
    if value[:1] in FORMULA_START or text.lstrip()[:1] in FORMULA_START:
        text = "'" + text
    return text


def csv_writer(writer: TextWriter) -> Any:
    """A ``csv.writer`` with the connector's dialect (comma, minimal quoting, ``\\n`` line endings)."""
    return csv.writer(writer, delimiter=",", quotechar='"', doublequote=True, lineterminator="\n")
