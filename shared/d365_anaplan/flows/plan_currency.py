"""The currency each company's plan lines are written in: the company's ledger accounting currency as F&O
reports it (``Ledgers.AccountingCurrency``). A configured currency (``dynamics.journal.currency_codes`` or
``currency_code``) is only a check: one that differs from the ledger's is refused, naming the company, both
currencies and the remedy, so a GBP plan is never written as USD. Pure: the step reads the ledgers and
passes their currencies in; ``check`` calls the same function and so reports the same line."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from d365_anaplan.config import JournalSettings
from d365_anaplan.errors import ConfigError


def plan_currencies(
    settings: JournalSettings, companies: Iterable[str], ledger_currency: Mapping[str, str]
) -> dict[str, str]:
    """Company (upper case) -> currency of its plan lines. ``ledger_currency``: company -> the accounting
    currency of its ledger in F&O (empty when F&O names none). Raises ConfigError, one line per company."""
    out: dict[str, str] = {}
    problems: list[str] = []
    for company in companies:
        co = company.strip().upper()
        ledger = (ledger_currency.get(co) or "").strip().upper()
        configured = settings.currency_for(co)
        setting = (
            f"dynamics.journal.currency_codes.{co}"
            if co in settings.currency_codes
            else "dynamics.journal.currency_code"
        )
        if configured is None:
            if not ledger:
                problems.append(
                    f"{co}: the ledger in F&O names no accounting currency (Ledgers.AccountingCurrency) and "
                    f"dynamics.journal.currency_codes has no entry for {co}; set the ledger's accounting "
                    "currency in F&O (General ledger > Ledger setup > Ledger)"
                )
                continue
            out[co] = ledger
        elif ledger and configured != ledger:
            problems.append(
                f"{co}: {setting} is {configured} but the ledger's accounting currency in F&O is {ledger} "
                f"(Ledgers.AccountingCurrency); remove {setting} (plan lines then use {ledger}) or correct it"
            )
        else:
            out[co] = configured
    if problems:
        raise ConfigError(problems, source="plan currencies")
    return out
