"""Reading what scopes and value maps need: the CSV value maps (a local file beside the configuration, or an
object in the config bucket in AWS) and the F&O main account types, plus the mapping verdicts that need
both systems (``check`` prints them; the actuals run reaches the same verdict before its alignment check).

A CSV map is read whole but never more than :data:`MAX_MAP_BYTES`; it must be UTF-8 text with the header
``fo,anaplan`` (see :func:`~d365_anaplan.flows.mapping.parse_map_csv`), anything else is refused with one
line naming the file.

In AWS a map's key must lie under the configuration prefix (``connections/``): the bucket policy lets only
the configuration writers (``ConfigWriterArns``) change objects there, so a map steers a run no more than
the connection YAML does. Anywhere else in the bucket is refused before anything is read.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError

from d365_anaplan.errors import BadInputData, ConfigError
from d365_anaplan.flows.mapping import ScopeFilter, ValueMaps, parse_map_csv, plan_map_names, scope_filter

if TYPE_CHECKING:
    from d365_anaplan.config import ConnectionConfig
    from d365_anaplan.dynamics.reader import DynamicsReader
    from d365_anaplan.steps.context import StepContext

MAX_MAP_BYTES = 5_000_000

VALUE_MAP_REMEDY = (
    "fix mapping.value_maps as the message says: map every F&O code to an existing Anaplan member (or set "
    "unmapped: passthrough), and where several F&O codes share one member add reverse: {member: code} so plans "
    "know which F&O code to write"
)
SCOPE_REMEDY = "widen mapping.scopes (types, include, exclude) so the flow's accounts are in scope"


@dataclass(frozen=True)
class MapSource:
    """Where CSV maps are read: a folder (local configuration) or a bucket (AWS)."""

    base_dir: Path | None = None
    s3: Any = None
    bucket: str | None = None
    prefix: str = "connections/"  # in the bucket: the configuration prefix only config writers may change

    def outside_prefix(self, name: str) -> bool:
        """Is ``name`` a bucket key outside the protected configuration prefix?"""
        return self.bucket is not None and not name.startswith(self.prefix)

    def read(self, name: str) -> tuple[bytes, str]:
        """The bytes of map file ``name`` (at most MAX_MAP_BYTES + 1) and how to name it."""
        if self.bucket is not None:
            where = f"s3://{self.bucket}/{name}"
            try:
                body = self.s3.get_object(Bucket=self.bucket, Key=name)["Body"]
            except ClientError as exc:
                code = exc.response.get("Error", {}).get("Code", "ClientError")
                raise BadInputData(f"{where}: the value map cannot be read ({code})") from None
            try:
                return body.read(MAX_MAP_BYTES + 1), where
            finally:
                body.close()
        path = (self.base_dir or Path.cwd()) / name
        try:
            with path.open("rb") as f:
                return f.read(MAX_MAP_BYTES + 1), str(path)
        except OSError as exc:
            raise BadInputData(f"{path}: the value map cannot be read ({exc.strerror})") from None


def step_value_maps(ctx: StepContext) -> ValueMaps:
    """The connection's value maps in a run: CSV maps are keys in the config bucket."""
    return load_value_maps(ctx.cfg, bucket_source(ctx))


def bucket_source(ctx: StepContext) -> MapSource:
    """CSV maps in a run: keys under the configuration prefix of the config bucket."""
    return MapSource(s3=ctx.s3, bucket=ctx.env.config_bucket, prefix=ctx.env.config_prefix)


def read_map_csv(source: MapSource, name: str, map_name: str | None = None) -> dict[str, str]:
    """One CSV map, size-capped and strictly decoded, parsed by :func:`parse_map_csv` (errors name
    ``mapping.value_maps.<map_name>`` when given)."""
    data, where = source.read(name)
    if map_name is not None:
        where = f"mapping.value_maps.{map_name} ({where})"
    if len(data) > MAX_MAP_BYTES:
        raise BadInputData(f"{where}: the value map is larger than {MAX_MAP_BYTES:,} bytes; refused")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BadInputData(f"{where}: not UTF-8 text (byte {exc.start + 1}); refused") from None
    return parse_map_csv(text, source=where)


def load_value_maps(cfg: ConnectionConfig, source: MapSource) -> ValueMaps:
    """Every value map of the connection with its CSV rows; BadInputData/ConfigError name the problem."""
    outside = [
        f"mapping.value_maps.{name}.csv: {vm.csv!r} is outside {source.prefix!r} of the config bucket, where only "
        f"the configuration writers (ConfigWriterArns) may change objects; store the CSV under {source.prefix} "
        f"and name that key (e.g. csv: {source.prefix}maps/{name}.csv)"
        for name, vm in cfg.mapping.value_maps.items()
        if vm.csv is not None and source.outside_prefix(vm.csv)
    ]
    if outside:
        raise ConfigError(outside, "value maps")
    loaded = {
        name: read_map_csv(source, vm.csv, name)
        for name, vm in cfg.mapping.value_maps.items()
        if vm.csv is not None
    }
    return ValueMaps.build(cfg.mapping, loaded)


def account_types(reader: DynamicsReader) -> dict[str, str]:
    """F&O main account id (upper case) -> MainAccountType."""
    return {a.account.upper(): a.account_type for a in reader.main_accounts()}


def needs_account_types(cfg: ConnectionConfig) -> bool:
    """Does the actuals flow need the main account types (a restricted scope or natural sign)?"""
    m = cfg.mapping
    return not m.scopes.actuals.unrestricted or m.actuals.sign == "natural"


def actuals_scope(cfg: ConnectionConfig, types: Mapping[str, str]) -> ScopeFilter:
    """The actuals scope; BadInputData when it selects no main account at all (nothing would be loaded)."""
    scope = scope_filter(cfg.mapping, "actuals", types)
    if not scope.scope.unrestricted and types and not scope.accounts():
        raise BadInputData(
            f"{scope.setting}: selects none of the {len(types)} F&O main accounts; nothing would be loaded"
        )
    return scope


def coverage_dimensions(cfg: ConnectionConfig) -> list[str]:
    """Dimensions whose value map is checked against an Anaplan list: mapped, with a list name, and a list
    the connector does not load itself."""
    m = cfg.mapping
    return [d.name for d in m.dimensions if d.name in m.value_maps and d.list_name and not d.list_import]


def coverage_fo_codes(cfg: ConnectionConfig, reader: DynamicsReader) -> dict[str, list[str]]:
    """F&O values of the :func:`coverage_dimensions` whose map passes unmapped codes through."""
    m = cfg.mapping
    return {
        name: [v.value for v in reader.dimension_values(name).values]
        for name in coverage_dimensions(cfg)
        if m.value_maps[name].unmapped == "passthrough"
    }


def coverage_problems(
    cfg: ConnectionConfig,
    maps: ValueMaps,
    members: Mapping[str, Collection[str]],
    fo_codes: Mapping[str, Collection[str]],
) -> list[str]:
    """Value-map coverage against Anaplan lists the connector does not load itself (a loaded list receives
    the mapped codes): every mapped member must exist, and with ``unmapped: passthrough`` every F&O code
    missing from the map must exist as a member too, unless ``mapping.actuals.unmapped_policy: map`` sends
    it to the dimension's unmapped member. ``members``: dimension name -> Anaplan member codes (lists that
    were read); ``fo_codes``: dimension name -> F&O values."""
    problems: list[str] = []
    m = cfg.mapping
    wanted = coverage_dimensions(cfg)
    for d in m.dimensions:
        if d.name not in wanted or d.name not in members:
            continue
        vm = maps.get(d.name)
        have = set(members[d.name])
        absent = sorted({t for t in vm.forward.values() if t not in have})
        if absent:
            problems.append(f"{vm.setting}: member(s) {absent} are not in the Anaplan list {d.list_name!r}")
        fallback = m.actuals.unmapped_policy == "map" and d.unmapped_member
        if vm.unmapped == "passthrough" and not fallback:
            loose = sorted(
                {
                    c
                    for c in fo_codes.get(d.name, ())
                    if c and c.casefold() not in vm.forward and c not in have
                }
            )
            if loose:
                shown = loose[:10] + (["..."] if len(loose) > 10 else [])
                problems.append(
                    f"{vm.setting}: F&O value(s) {shown} are not in the map (unmapped: passthrough) and not "
                    f"members of the Anaplan list {d.list_name!r}"
                )
    return problems


def require_coverage(
    cfg: ConnectionConfig,
    maps: ValueMaps,
    members: Mapping[str, Collection[str]],
    fo_codes: Mapping[str, Collection[str]],
) -> None:
    problems = coverage_problems(cfg, maps, members, fo_codes)
    if problems:
        raise BadInputData(f"value map coverage: {'; '.join(problems)} (remedy: {VALUE_MAP_REMEDY})")


def plan_reverse_problems(cfg: ConnectionConfig, maps: ValueMaps) -> list[str]:
    """One line per Anaplan member plans cannot reverse (several F&O codes, no ``reverse`` entry)."""
    return maps.ambiguities(plan_map_names(cfg.mapping))
