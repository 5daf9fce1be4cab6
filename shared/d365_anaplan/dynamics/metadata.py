"""``/data/$metadata`` (CSDL, OData v4) reduced to what discovery needs: entity sets, their keys and
property types, and enum types (dynamics-fo.md §2.1, §2.3)."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass, field

from d365_anaplan.errors import DynamicsBadResponse


@dataclass(frozen=True)
class EntitySetInfo:
    name: str
    entity_type: str
    keys: tuple[str, ...]
    properties: dict[str, str] = field(default_factory=dict)  # name -> Edm type (or enum type full name)

    def has(self, *names: str) -> bool:
        return all(n in self.properties for n in names)


@dataclass(frozen=True)
class ServiceMetadata:
    entity_sets: dict[str, EntitySetInfo]
    enums: dict[str, tuple[str, ...]]  # short enum type name -> member names

    def has_set(self, name: str) -> bool:
        return name in self.entity_sets

    def entity_set(self, name: str) -> EntitySetInfo | None:
        return self.entity_sets.get(name)

    def has_property(self, entity_set: str, prop: str) -> bool:
        info = self.entity_sets.get(entity_set)
        return info is not None and prop in info.properties


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def parse_metadata(xml_text: str) -> ServiceMetadata:
    head = xml_text[:4096].upper()
    if "<!DOCTYPE" in head or "<!ENTITY" in xml_text.upper():
        raise DynamicsBadResponse(
            "GET $metadata: the document declares a DTD or entities; refusing to parse it"
        )
    try:
        root = ET.fromstring(xml_text)  # noqa: S314 - no DTD (checked above)
    except ET.ParseError as exc:
        raise DynamicsBadResponse(f"GET $metadata: not well-formed XML ({exc})") from None
    if _local(root.tag) != "Edmx":
        raise DynamicsBadResponse(f"GET $metadata: expected an edmx:Edmx document, got <{_local(root.tag)}>")
    types: dict[str, tuple[tuple[str, ...], dict[str, str]]] = {}
    enums: dict[str, tuple[str, ...]] = {}
    sets: list[tuple[str, str]] = []
    for schema in root.iter():
        if _local(schema.tag) != "Schema":
            continue
        namespace = schema.get("Namespace", "")
        for child in schema:
            kind = _local(child.tag)
            name = child.get("Name", "")
            if kind == "EntityType":
                keys: tuple[str, ...] = ()
                props: dict[str, str] = {}
                for part in child:
                    pk = _local(part.tag)
                    if pk == "Key":
                        keys = tuple(ref.get("Name", "") for ref in part if _local(ref.tag) == "PropertyRef")
                    elif pk == "Property":
                        props[part.get("Name", "")] = part.get("Type", "")
                types[f"{namespace}.{name}"] = (keys, props)
                types.setdefault(name, (keys, props))
            elif kind == "EnumType":
                enums[name] = tuple(m.get("Name", "") for m in child if _local(m.tag) == "Member")
            elif kind == "EntityContainer":
                sets.extend(
                    (s.get("Name", ""), s.get("EntityType", ""))
                    for s in child
                    if _local(s.tag) == "EntitySet"
                )
    entity_sets: dict[str, EntitySetInfo] = {}
    for set_name, type_name in sets:
        keys, props = types.get(type_name, types.get(type_name.rsplit(".", 1)[-1], ((), {})))
        entity_sets[set_name] = EntitySetInfo(set_name, type_name, keys, dict(props))
    if not entity_sets:
        raise DynamicsBadResponse("GET $metadata: the document lists no entity sets")
    return ServiceMetadata(entity_sets, enums)
