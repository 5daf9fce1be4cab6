"""``/data/$metadata`` (CSDL, OData v4) reduced to what discovery needs: entity sets, their keys and
property types, and enum types (dynamics-fo.md §2.1, §2.3)."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from typing import Any

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


MAX_DEPTH = 32  # CSDL nests about 6 levels deep


def _parse_tree(xml_text: str) -> ET.Element:
    """Parse without DTDs or entities (refused wherever they appear) and without deep nesting."""
    upper = xml_text.upper()
    if "<!DOCTYPE" in upper or "<!ENTITY" in upper:
        raise DynamicsBadResponse(
            "GET $metadata: the document declares a DTD or entities; refusing to parse it"
        )
    parser: ET.XMLPullParser[ET.Element] = ET.XMLPullParser(events=("start", "end"))
    depth = 0
    root: ET.Element | None = None
    try:
        for start in range(0, len(xml_text), 1 << 16):
            parser.feed(xml_text[start : start + (1 << 16)])
            events: Any = parser.read_events()  # typeshed's element type is narrower than the events
            for event, element in events:
                if event == "start":
                    depth += 1
                    if root is None and isinstance(element, ET.Element):
                        root = element
                    if depth > MAX_DEPTH:
                        raise DynamicsBadResponse(
                            f"GET $metadata: elements nest deeper than {MAX_DEPTH} levels; refusing to parse it"
                        )
                else:
                    depth -= 1
        parser.close()
    except ET.ParseError as exc:
        raise DynamicsBadResponse(f"GET $metadata: not well-formed XML ({exc})") from None
    if root is None:
        raise DynamicsBadResponse("GET $metadata: the document is empty")
    return root


def parse_metadata(xml_text: str) -> ServiceMetadata:
    root = _parse_tree(xml_text)
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
