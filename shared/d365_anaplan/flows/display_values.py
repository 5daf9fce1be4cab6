"""Account display values built by position from the active dimension format's segment order, and split back."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from d365_anaplan.errors import BadInputData, ConfigError

MAIN_ACCOUNT = "MainAccount"


def account_display_value(
    account: str,
    dims: Mapping[str, str],
    segment_order: Sequence[str],
    delimiter: str = "-",
    *,
    where: str = "record",
) -> str:
    """The ``AccountDisplayValue`` of a ledger account: segments by position in ``segment_order``.

    ``segment_order`` is the active dimension format, e.g. ``["MainAccount", "BusinessUnit", "CostCenter",
    "Department"]``; segments without a value stay blank (``601500--CC01-``). Raises BadInputData naming
    ``where`` when the account is empty, a value contains ``delimiter``, or ``dims`` has a non-blank value
    for a dimension that is not a segment (more segments than the format: F&O would drop it silently).
    ConfigError when the format has no ``MainAccount`` segment or names a segment twice.
    """
    if not delimiter:
        raise ConfigError(["dimension segment delimiter: must not be empty"])
    if MAIN_ACCOUNT not in segment_order:
        raise ConfigError([f"ledger dimension format {list(segment_order)!r}: has no {MAIN_ACCOUNT} segment"])
    if len(set(segment_order)) != len(segment_order):
        raise ConfigError([f"ledger dimension format {list(segment_order)!r}: names a segment twice"])
    if not account:
        raise BadInputData(f"{where}: field 'account' is empty")
    extra = sorted(k for k, v in dims.items() if v and k not in segment_order)
    if extra:
        raise BadInputData(
            f"{where}: has value(s) for {', '.join(f'{k}={dims[k]!r}' for k in extra)}, which the ledger "
            f"dimension format {delimiter.join(segment_order)} has no segment for (more segments than the "
            "format; F&O would drop them silently)"
        )
    values = {MAIN_ACCOUNT: account, **{k: v for k, v in dims.items() if k != MAIN_ACCOUNT}}
    for name, value in values.items():
        if delimiter in value:
            field_name = "account" if name == MAIN_ACCOUNT else f"dimensions.{name}"
            raise BadInputData(
                f"{where}: field {field_name!r} value {value!r} contains the segment delimiter {delimiter!r}"
            )
    return delimiter.join(values.get(s, "") for s in segment_order)


def split_display_value(
    display: str, segment_order: Sequence[str], delimiter: str = "-", *, where: str = "record"
) -> dict[str, str]:
    """Segments of a display value by position; BadInputData when it has more segments than the format."""
    parts = display.split(delimiter)
    if len(parts) > len(segment_order):
        raise BadInputData(
            f"{where}: display value {display!r} has {len(parts)} segments; the dimension format "
            f"{delimiter.join(segment_order)} has {len(segment_order)}"
        )
    return {s: (parts[i] if i < len(parts) else "") for i, s in enumerate(segment_order)}
