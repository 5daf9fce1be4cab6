"""``python -m devkit.asl_lint [statelint options] FILE...``: statelint, taught one field it predates.

statelint 3.1.0 knows ``ItemReader.ReaderConfig`` only with ``MaxItems``; AWS documents ``InputType``
(``CSV``, ``JSON``, ``JSONL``, ``MANIFEST``, ``PARQUET``) and ``CSVHeaderLocation`` there
(docs.aws.amazon.com/step-functions/latest/dg/input-output-itemreader.html), and a Distributed Map reading a
JSON array from S3 needs ``InputType: JSON``. Everything else is statelint's own check, unchanged.
"""

from __future__ import annotations

import sys

from statelint import cli
from statelint.fields import Field
from statelint.fields.str_field import EnumStrField
from statelint.nodes import map_state

INPUT_TYPE = EnumStrField("InputType", ["CSV", "JSON", "JSONL", "MANIFEST", "PARQUET"])
CSV_HEADER_LOCATION = EnumStrField("CSVHeaderLocation", ["FIRST_ROW", "GIVEN"])


class _ReaderConfig(map_state.ReaderConfig):  # type: ignore[misc]
    @property
    def optional_fields(self) -> list[Field]:
        return [*super().optional_fields, INPUT_TYPE, CSV_HEADER_LOCATION]


def main(argv: list[str] | None = None) -> int:
    map_state.ReaderConfig = _ReaderConfig
    return int(cli.main(argv))


if __name__ == "__main__":
    sys.exit(main())
