"""Money helpers shared by both flows: strict parsing, bounds, precision and plain formatting.

Amounts are :class:`decimal.Decimal` end to end. Text is parsed with ``Decimal(str)`` only after a strict
pattern check, and written as a plain decimal: optional ``-``, digits, ``.``, exactly ``decimals`` digits,
no thousands separators, no exponent, never ``-0.00``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from decimal import ROUND_HALF_EVEN, Decimal, localcontext

from d365_anaplan.errors import BadInputData

# Anaplan stores numbers as doubles (about 15 significant digits); refuse magnitudes that would lose cents.
MAX_ABS_AMOUNT = Decimal("1000000000000000")  # 1e15

# ISO 4217 minor units that differ from 2 (the common case).
_CURRENCY_DECIMALS: dict[str, int] = {
    "BIF": 0,
    "CLP": 0,
    "DJF": 0,
    "GNF": 0,
    "ISK": 0,
    "JPY": 0,
    "KMF": 0,
    "KRW": 0,
    "PYG": 0,
    "RWF": 0,
    "UGX": 0,
    "UYI": 0,
    "VND": 0,
    "VUV": 0,
    "XAF": 0,
    "XOF": 0,
    "XPF": 0,
    "BHD": 3,
    "IQD": 3,
    "JOD": 3,
    "KWD": 3,
    "LYD": 3,
    "OMR": 3,
    "TND": 3,
    "CLF": 4,
    "UYW": 4,
}

# A plain number: optional leading minus, digits, optional "." and digits. Nothing else.
_PLAIN_NUMBER = re.compile(r"-?[0-9]+(?:\.[0-9]+)?")


def currency_decimals(currency: str) -> int:
    """Minor units of an ISO 4217 currency code (2 unless the currency is known to differ)."""
    return _CURRENCY_DECIMALS.get(currency.strip().upper(), 2)


def amount_decimals(currency: str, at_least: int = 2) -> int:
    """Decimals an amount of ``currency`` may carry and is written with: its minor units (KWD 3), never fewer
    than ``at_least`` (a JPY amount is written ``1234.00``, exactly); ``at_least`` when the currency is not known."""
    return max(at_least, currency_decimals(currency)) if currency.strip() else at_least


def decimals_of(amount: Decimal) -> int:
    """Number of digits after the decimal point as written (``Decimal("1.50")`` -> 2, ``Decimal("12")`` -> 0)."""
    exponent = amount.as_tuple().exponent
    if not isinstance(exponent, int):  # NaN / Infinity
        return 0
    return max(0, -exponent)


def check_amount(amount: Decimal, *, decimals: int, where: str, field: str = "amount") -> Decimal:
    """Validate an amount already held as Decimal; return it with ``-0`` normalised to ``0``.

    Refuses NaN/Infinity, magnitudes of 1e15 or more and more than ``decimals`` significant decimal digits
    (trailing zeros beyond the precision are fine: ``1.500`` is accepted for 2 decimals).
    """
    if not isinstance(amount, Decimal):
        raise BadInputData(f"{where}: field {field!r} must be a Decimal, got {type(amount).__name__}")
    if not amount.is_finite():
        raise BadInputData(f"{where}: field {field!r} is {amount!s}, not a finite number")
    if abs(amount) >= MAX_ABS_AMOUNT:
        raise BadInputData(
            f"{where}: field {field!r} value {str(amount)!r} is too large (limit is below {MAX_ABS_AMOUNT:,f})"
        )
    normal = amount.normalize() if amount != 0 else Decimal(0)
    if decimals_of(normal) > decimals:
        raise BadInputData(
            f"{where}: field {field!r} value {str(amount)!r} has more than {decimals} decimal places "
            "(round it at the source; the connector never rounds money silently)"
        )
    if amount == 0:
        return Decimal(0).quantize(Decimal(1).scaleb(-decimals)) if decimals else Decimal(0)
    return amount


def parse_amount(text: str, *, decimals: int, where: str, field: str = "amount") -> Decimal:
    """Parse a plain decimal number from a file.

    Accepted: ``1234.50``, ``-12``, ``0``, ``-0`` (read as 0). Refused with a message naming ``where`` and
    ``field``: empty, thousands separators (``1,234.50``), comma decimals (``1.234,50``), exponents
    (``12e3``), ``NaN``/``Infinity``, a leading ``+``, accounting negatives ``(12.00)``, currency signs,
    spaces inside, more than ``decimals`` significant decimals, and magnitudes of 1e15 or more.
    Surrounding whitespace is ignored.
    """
    raw = text.strip()
    if raw == "":
        raise BadInputData(f"{where}: field {field!r} is empty; a number is required (write 0 for zero)")
    if not _PLAIN_NUMBER.fullmatch(raw):
        hint = _why_not_plain(raw)
        raise BadInputData(f"{where}: field {field!r} value {raw!r} is not a plain number ({hint})")
    return check_amount(Decimal(raw), decimals=decimals, where=where, field=field)


def _why_not_plain(raw: str) -> str:
    low = raw.lower()
    if raw.startswith("(") and raw.endswith(")"):
        return (
            "accounting negatives in parentheses are not accepted; export the number unformatted, e.g. -12.00"
        )
    if "nan" in low or "inf" in low:
        return "not a finite number"
    if "e" in low and any(c.isdigit() for c in low):
        return "exponent notation is not accepted"
    if "," in raw:
        return "thousands separators or comma decimals are not accepted; expected e.g. 1234.50"
    if raw.startswith("+"):
        return "a leading '+' is not accepted"
    if " " in raw or "\u00a0" in raw or "'" in raw:
        return "spaces or apostrophes inside the number are not accepted"
    if raw.count(".") > 1:
        return "more than one '.'; thousands separators are not accepted"
    return "expected digits with an optional leading '-' and '.' decimals, e.g. -1234.50"


def format_amount(amount: Decimal, decimals: int = 2) -> str:
    """Plain decimal text with exactly ``decimals`` places, ``.`` as separator, no grouping, no ``-0``.

    The value must already fit the precision (see :func:`check_amount`); rounding here would hide a
    difference, so a value with more significant decimals raises ``ValueError`` (a programming error).
    """
    if not amount.is_finite():
        raise ValueError(f"cannot format {amount!s}")
    quantum = Decimal(1).scaleb(-decimals)
    with localcontext() as ctx:
        ctx.prec = 60
        q = amount.quantize(quantum, rounding=ROUND_HALF_EVEN)
        if q != amount:
            raise ValueError(f"{amount!s} has more than {decimals} decimal places")
    if q == 0:
        q = abs(q)
    return f"{q:f}"


def per_currency_text(totals: Mapping[str, Decimal]) -> str:
    """``EUR 567.00; USD 1,234.00``: one figure per currency, sorted by code, never added across; exact (no
    rounding). ``none`` when there is nothing."""
    return "; ".join(f"{cur} {amount:,f}" for cur, amount in sorted(totals.items())) or "none"
