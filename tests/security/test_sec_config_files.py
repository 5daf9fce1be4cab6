"""Hostile configuration files: YAML bombs and deep nesting refused fast with one line; ``tls.ca_bundle``
checked when the file is loaded (a configuration error naming the field, not an unreachable host)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import yaml
from sec_support import SECRET, good

from d365_anaplan.config import load_connections, parse_connection, parse_connections
from d365_anaplan.errors import ConfigError


def one_line(text: str) -> str:
    started = time.perf_counter()
    with pytest.raises(ConfigError) as info:
        parse_connections(text)
    assert time.perf_counter() - started < 1.0
    (line,) = info.value.problems
    return line


def test_alias_bomb_is_refused_at_once() -> None:
    lines = ['a0: &a0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]" for i in range(1, 10)]
    assert "alias bomb" in one_line("\n".join(lines))


def test_deep_nesting_is_one_line_not_a_traceback() -> None:
    assert "nesting deeper than 50 levels" in one_line("name: " + "[" * 20000 + "]" * 20000)


def test_deep_block_nesting_is_refused() -> None:
    text = "".join(f"{'  ' * i}k{i}:\n" for i in range(60)) + "  " * 60 + "v: 1\n"
    assert "nesting deeper" in one_line(text)


def test_recursive_alias_is_refused() -> None:
    assert "recursive alias" in one_line("name: &n [*n]")


def test_oversized_file_is_refused() -> None:
    assert "larger than" in one_line("# " + "x" * 1_100_000)


def test_ordinary_anchors_still_work() -> None:
    text = yaml.safe_dump({"connections": [good()]}).replace("name: contoso", "name: *n")
    assert [c.name for c in parse_connections("n: &n contoso\n" + text)] == ["contoso"]


@pytest.mark.parametrize(
    ("content", "says"),
    [
        (None, "cannot read the CA bundle file"),
        (b"", "holds no PEM certificate"),
        (b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n", "holds no PEM certificate"),
        (b"\x00\x01 not a pem at all", "holds no PEM certificate"),
    ],
)
def test_ca_bundle_is_checked_at_load(content: bytes | None, says: str, tmp_path: Path) -> None:
    bundle = tmp_path / "ca.pem"
    if content is not None:
        bundle.write_bytes(content)
    data = good()
    data["tls"] = {"ca_bundle": str(bundle)}
    with pytest.raises(ConfigError) as info:
        parse_connection(data)
    (line,) = info.value.problems
    assert line.startswith("tls.ca_bundle: ") and says in line
    assert SECRET not in str(info.value)


def test_ca_bundle_error_from_a_file(tmp_path: Path) -> None:
    data = good()
    data["tls"] = {"ca_bundle": str(tmp_path / "missing.pem")}
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    with pytest.raises(ConfigError, match=r"tls\.ca_bundle"):
        load_connections(path)
