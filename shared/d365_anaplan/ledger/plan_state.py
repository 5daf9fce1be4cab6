"""Approved-plan state: what this connector has made F&O hold, per export x company x period x account x
dimension values (docs/ledger.md "plan cell").

Item (ledger table): ``pk = PLAN#<connection>#<export tag>``, ``sk = CELL#<company>#<yyyy-mm>#<account>#<dims>``
(``dims`` = ``name=value`` pairs joined by ``;``, blanks left out); attributes ``company``, ``account``,
``dimensions`` (map), ``period`` (``yyyy-mm``), ``amount`` (Number, ledger sign), ``run_id`` (the run that
reconciled it), ``updated_at``.

F&O is the truth: each plans run reads back what F&O holds from the connector and writes only the difference;
this state is what the connector last *reconciled* in F&O. A run compares it with the read-back and reports
cells where they disagree (an entry deleted or edited in F&O, a partially failed run) before writing, and
replaces it with the approved plan once reconciliation has passed.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from datetime import date
from decimal import Decimal

from d365_anaplan.ledger._dynamo import Item, TableItems, iso, put_all, query_all, to_item

CellKey = tuple[str, str, tuple[tuple[str, str], ...], date]  # company, account, dimension values, period


def _pk(connection: str, tag: str) -> str:
    if not connection or not tag:
        raise ValueError(
            f"plan state: connection and export tag must be non-empty, got {connection!r}, {tag!r}"
        )
    return f"PLAN#{connection}#{tag}"


def _sk(key: CellKey) -> str:
    company, account, dims, period = key
    dim_text = ";".join(f"{k}={v}" for k, v in dims)
    return f"CELL#{company}#{period:%Y-%m}#{account}#{dim_text}"


class PlanState(TableItems):
    """The approved-plan cells this connector has reconciled in F&O (ledger table, env ``LEDGER_TABLE``)."""

    def load(
        self, connection: str, tag: str, company: str, first: date, last: date
    ) -> dict[CellKey, Decimal]:
        """Cells of one export and company in the months ``first``..``last``."""
        items = query_all(
            self.client,
            TableName=self.table_name,
            KeyConditionExpression="pk = :pk AND sk BETWEEN :lo AND :hi",
            ExpressionAttributeValues={
                ":pk": {"S": _pk(connection, tag)},
                ":lo": {"S": f"CELL#{company}#{first:%Y-%m}#"},
                ":hi": {"S": f"CELL#{company}#{last:%Y-%m}#\uffff"},
            },
            ConsistentRead=True,
        )
        out: dict[CellKey, Decimal] = {}
        for item in items:
            y, m = str(item["period"]).split("-")
            dims = tuple(sorted((str(k), str(v)) for k, v in dict(item.get("dimensions") or {}).items()))
            out[(str(item["company"]), str(item["account"]), dims, date(int(y), int(m), 1))] = Decimal(
                item["amount"]
            )
        return out

    def save(self, connection: str, tag: str, cells: Mapping[CellKey, Decimal], run_id: str) -> int:
        """Put every cell (a zero cell is kept: F&O holds its reversal). Returns the number written."""
        pk = _pk(connection, tag)
        now = iso(self._clock())

        def items() -> Iterator[Item]:
            for key, amount in sorted(cells.items()):
                company, account, dims, period = key
                yield to_item({
                    "pk": pk, "sk": _sk(key), "company": company, "account": account, "dimensions": dict(dims),
                    "period": f"{period:%Y-%m}", "amount": amount, "run_id": run_id, "updated_at": now,
                })  # fmt: skip

        return put_all(self.client, self.table_name, items())
