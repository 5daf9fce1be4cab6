"""What steps share about staged objects: a text adapter over a staged S3 writer, recording a staged file in the
ledger, reading a staged JSON object."""

from __future__ import annotations

import json
from typing import Any

from d365_anaplan.staging import S3StreamWriter, StagedFile
from d365_anaplan.steps.context import StepContext


class TextAdapter:
    """Text adapter over a byte writer (csv writes ``str``)."""

    def __init__(self, out: S3StreamWriter) -> None:
        self.out = out

    def write(self, s: str) -> int:
        return self.out.write_text(s)


def record_staged(ctx: StepContext, step: str, staged: StagedFile | None) -> StagedFile:
    assert staged is not None
    ctx.ledger.record_file(
        ctx.run_id, step, staged.bucket, staged.key, staged.bytes, staged.rows, staged.sha256
    )
    return staged


def load_json(ctx: StepContext, key: str) -> Any:
    body = ctx.s3.get_object(Bucket=ctx.env.staging_bucket, Key=key)["Body"]
    try:
        return json.loads(body.read())
    finally:
        body.close()
