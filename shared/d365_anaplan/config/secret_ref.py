"""Credential references: a Secrets Manager ARN, an environment variable, a file or a literal (local use)."""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_serializer, model_validator

SECRET_ARN = re.compile(
    r"^arn:aws[a-z-]*:secretsmanager:[a-z0-9-]+:\d{12}:secret:[A-Za-z0-9/_+=.@-]+(#[A-Za-z0-9_.-]+)?$"
)


class Secret(BaseModel):
    """A credential reference. Never printed; ``repr`` shows only the kind of reference.

    Accepted forms (a plain YAML string is parsed into one of these):

    * ``arn:aws:secretsmanager:<region>:<account>:secret:<name>[#<json key>]`` (the only form allowed in AWS)
    * ``env:<VARIABLE>`` - an environment variable (local use)
    * ``file:<path>`` - the contents of a file, e.g. a PEM (local use)
    * anything else - the literal value (local use)
    """

    model_config = ConfigDict(frozen=True)

    kind: Literal["secretsmanager", "env", "file", "inline"]
    ref: str = Field(repr=False)
    json_key: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _parse(cls, value: Any) -> Any:
        if isinstance(value, str):
            if value.startswith("arn:aws") and ":secretsmanager:" in value:
                arn, _, key = value.partition("#")
                return {"kind": "secretsmanager", "ref": arn, "json_key": key or None}
            if value.startswith("env:"):
                return {"kind": "env", "ref": value[4:]}
            if value.startswith("file:"):
                return {"kind": "file", "ref": value[5:]}
            return {"kind": "inline", "ref": value}
        return value

    @model_serializer(mode="plain")
    def _dump(self) -> str:
        """Serialise back to the reference string the YAML holds (round-trips through ``_parse``)."""
        if self.kind == "secretsmanager":
            return self.ref + (f"#{self.json_key}" if self.json_key else "")
        if self.kind in ("env", "file"):
            return f"{self.kind}:{self.ref}"
        return self.ref

    def describe(self) -> str:
        """A printable description that never contains the secret itself."""
        if self.kind == "secretsmanager":
            return self.ref + (f"#{self.json_key}" if self.json_key else "")
        if self.kind in ("env", "file"):
            return f"{self.kind}:{self.ref}"
        return "<inline value>"

    def __str__(self) -> str:
        return self.describe()
