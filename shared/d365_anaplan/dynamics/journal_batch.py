"""Sending journal and budget register lines to F&O: ``$batch`` changesets of whole vouchers, lines an entry
already holds skipped, per-line errors captured (the base of :class:`~d365_anaplan.dynamics.journal.JournalWriter`)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from d365_anaplan.dynamics import filters as F
from d365_anaplan.dynamics.batch import ChangesetResponse, Operation, decode_batch, encode_batch
from d365_anaplan.dynamics.journal_readback import JournalReadback
from d365_anaplan.dynamics.journal_records import LINES, JournalWriteResult, LineError
from d365_anaplan.dynamics.odata_shapes import Query, dumps_exact, parse_error
from d365_anaplan.errors import DynamicsBadResponse, DynamicsUnavailable

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PreparedLine:
    key: str
    voucher: str
    body: dict[str, Any]
    source: str


# (result, line bodies by line key, line keys the entry already holds): sends the missing lines instead of OData
LinesSender = Callable[["JournalWriteResult", dict[str, list[PreparedLine]], set[str]], None]


class JournalBatches(JournalReadback):
    """Sends prepared lines in ``$batch`` changesets (one voucher per changeset) and records the outcome."""

    sleep: Callable[[float], None]
    write_attempts: int
    batch_size: int

    def _existing_line_keys(
        self, entity_set: str, company: str, number_field: str, number: str, text_field: str
    ) -> set[str]:
        flt = F.and_(F.eq("dataAreaId", company.lower()), F.eq(number_field, number))
        keys: set[str] = set()
        for row in self.client.iter_rows(Query(entity_set, filter=flt, select=(text_field,))):
            text = row.get(text_field)
            if isinstance(text, str) and text.startswith("L"):
                keys.add(text.split(" ", 1)[0])
        return keys

    def _write_lines(
        self,
        result: JournalWriteResult,
        entity_set: str,
        vouchers: dict[str, list[PreparedLine]],
        present: set[str],
    ) -> None:
        pending: list[list[PreparedLine]] = []
        for lst in vouchers.values():
            todo = [p for p in lst if p.key not in present]
            result.lines_skipped += len(lst) - len(todo)
            if todo:
                pending.append(todo)
        batch: list[list[PreparedLine]] = []
        size = 0
        for cs in pending:
            if batch and size + len(cs) > self.batch_size:
                self._send(result, entity_set, batch)
                batch, size = [], 0
            batch.append(cs)
            size += len(cs)
        if batch:
            self._send(result, entity_set, batch)

    def _send(
        self, result: JournalWriteResult, entity_set: str, changesets: list[list[PreparedLine]]
    ) -> None:
        ops = [
            [Operation("POST", entity_set, p.body, str(n)) for n, p in enumerate(cs, start=1)]
            for cs in changesets
        ]
        content_type, body = encode_batch(self.client.base, ops, dumps_exact)
        what = f"$batch {entity_set} ({result.journal_batch_number}, {sum(len(c) for c in changesets)} lines)"
        for attempt in range(self.write_attempts):
            try:
                resp = self.client.request(
                    "POST",
                    f"{self.client.base}/$batch",
                    what=what,
                    headers={"Content-Type": content_type},
                    data=body,
                    ok=(200, 202),
                    idempotent=False,
                )
                break
            except DynamicsUnavailable:
                if attempt + 1 >= self.write_attempts:
                    raise
                # Unknown outcome: find out which vouchers landed and send only the rest.
                self.sleep(2.0 * (attempt + 1))
                number_field = "JournalBatchNumber" if entity_set == LINES else "EntryNumber"
                text_field = "Text" if entity_set == LINES else "Comment"
                present = self._existing_line_keys(
                    entity_set, result.company, number_field, result.journal_batch_number, text_field
                )
                changesets = [[p for p in cs if p.key not in present] for cs in changesets]
                result.lines_skipped += sum(1 for cs in ops for _ in cs) - sum(len(cs) for cs in changesets)
                changesets = [cs for cs in changesets if cs]
                if not changesets:
                    result.batches += 1
                    return
                ops = [
                    [Operation("POST", entity_set, p.body, str(n)) for n, p in enumerate(cs, start=1)]
                    for cs in changesets
                ]
                content_type, body = encode_batch(self.client.base, ops, dumps_exact)
        result.batches += 1
        responses = decode_batch(resp.headers.get("Content-Type", ""), resp.content)
        if len(responses) != len(changesets):
            raise DynamicsBadResponse(f"{what}: {len(changesets)} changesets sent, {len(responses)} answered")
        for cs, answer in zip(changesets, responses, strict=True):
            self._record(result, cs, answer)

    def _record(self, result: JournalWriteResult, cs: list[PreparedLine], answer: ChangesetResponse) -> None:
        if answer.ok:
            result.lines_written += len(cs)
            result.vouchers_written += 1
            return
        result.vouchers_failed += 1
        failed = next((p for p in answer.parts if p.status >= 300), answer.parts[0])
        err = parse_error(failed.status, failed.body)
        culprit: int | None = None
        if failed.content_id and failed.content_id.isdigit() and 1 <= int(failed.content_id) <= len(cs):
            culprit = int(failed.content_id) - 1
        for i, p in enumerate(cs):
            if culprit is None or i == culprit:
                message = err.text()
            else:
                message = (
                    f"not written: voucher {p.voucher} rolled back because line {cs[culprit].key} failed"
                )
            result.errors.append(LineError(p.key, p.voucher, message, p.source))
        log.warning("F&O rejected voucher %s: %s", cs[0].voucher, err.text()[:300])
