"""Hypothesis strategies for any protobuf request, built from its descriptor.

Every field type is covered: strings (plausible values per field name, random
text, hostile text, deep and non-portable JSON for ``*_json`` fields), bytes,
every integer width at its extremes, floats with NaN and infinities, unknown
enum values, nested and well-known messages (Timestamp and Duration far out
of range, FieldMask with unknown paths), repeated fields. On top of a valid
encoding, ``wire_bytes`` may append a string field holding invalid UTF-8 (a
lone surrogate as CESU-8), truncate the message, or send random bytes: what
a hostile caller can put on the wire but the protobuf library refuses to
build.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from google.protobuf import message_factory
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from hypothesis import strategies as st

T = FieldDescriptor
_INT_RANGES = {
    T.TYPE_INT32: (-(2**31), 2**31 - 1),
    T.TYPE_SINT32: (-(2**31), 2**31 - 1),
    T.TYPE_SFIXED32: (-(2**31), 2**31 - 1),
    T.TYPE_INT64: (-(2**63), 2**63 - 1),
    T.TYPE_SINT64: (-(2**63), 2**63 - 1),
    T.TYPE_SFIXED64: (-(2**63), 2**63 - 1),
    T.TYPE_UINT32: (0, 2**32 - 1),
    T.TYPE_FIXED32: (0, 2**32 - 1),
    T.TYPE_UINT64: (0, 2**64 - 1),
    T.TYPE_FIXED64: (0, 2**64 - 1),
}
# A lone surrogate (U+D800) encoded as if it were a scalar value: not UTF-8.
LONE_SURROGATE_BYTES = b"\xed\xa0\x80"

HOSTILE_TEXT = [
    "",
    "\x00",
    "a\x00b",
    " ",
    "\u202e\u200b",
    "🎉" * 50,
    "x" * 5000,
    "partners/../x",
    "%00%ff",
    "' OR 1=1 --",
    "\\",
    "null",
]

HOSTILE_JSON = [
    "[" * 100_000,
    "{" * 100_000,
    '{"a":' * 50_000,
    '{"a":' + "[" * 65 + "]" * 65 + "}",
    '{"a":"\\ud800"}',
    '{"\\udfff":1}',
    '{"a":NaN}',
    '{"a":Infinity}',
    '{"a":1e999}',
    '{"a":' + "9" * 5000 + "}",
    '{"a":"\\u0000"}',
    "[1,2,3]",
    "{",
    '{"a":1}' + " " * 10,
    '{"a":' + "1," * 10 + "}",
    '{"big":"' + "x" * 300_000 + '"}',
]


@dataclass(frozen=True)
class Plausible:
    """Values worth trying per field name (e.g. names of existing resources),
    so the campaign reaches past the first validation."""

    by_name: Mapping[str, Sequence[str]]

    def for_field(self, name: str, message: str = "") -> Sequence[str]:
        """The plausible values of field ``name`` of ``message`` (keyed
        ``Message.field`` first, then ``field``; may be empty)."""
        return self.by_name.get(f"{message}.{name}") or self.by_name.get(name, ())


def _sub(field: FieldDescriptor) -> Descriptor:
    """The message type of a message field."""
    assert field.message_type is not None, field.full_name
    return field.message_type


def _owner(field: FieldDescriptor) -> str:
    assert field.containing_type is not None, field.full_name
    return field.containing_type.name


def _text(field: FieldDescriptor, plausible: Plausible) -> st.SearchStrategy[str]:
    options: list[st.SearchStrategy[str]] = [
        st.text(max_size=40),
        st.sampled_from(HOSTILE_TEXT),
    ]
    if values := plausible.for_field(field.name, _owner(field)):
        # Weighted towards the plausible: three entries of them.
        options += [st.sampled_from(list(values))] * 3
    if field.name.endswith("_json"):
        options += [
            st.sampled_from(HOSTILE_JSON),
            st.recursive(
                st.none() | st.booleans() | st.integers() | st.text(max_size=8),
                lambda inner: (
                    st.lists(inner, max_size=3)
                    | st.dictionaries(st.text(max_size=5), inner, max_size=3)
                ),
                max_leaves=10,
            ).map(lambda value: __import__("json").dumps({"v": value})),
        ]
    return st.one_of(options)


def _scalar(field: FieldDescriptor, plausible: Plausible) -> st.SearchStrategy[Any]:
    kind = field.type
    if kind == T.TYPE_STRING:
        return _text(field, plausible)
    if kind == T.TYPE_BYTES:
        return st.binary(max_size=300)
    if kind == T.TYPE_BOOL:
        return st.booleans()
    if kind in (T.TYPE_FLOAT, T.TYPE_DOUBLE):
        return st.floats(width=32 if kind == T.TYPE_FLOAT else 64)
    if kind == T.TYPE_ENUM:
        return st.integers(-3, 20)  # proto3 enums are open: unknown numbers arrive
    low, high = _INT_RANGES[kind]
    return st.one_of(st.integers(low, high), st.sampled_from([low, high, 0, -1 if low else 1]))


def _well_known(descriptor: Descriptor, plausible: Plausible) -> st.SearchStrategy[Any] | None:
    full = descriptor.full_name
    cls = message_factory.GetMessageClass(descriptor)
    if full in ("google.protobuf.Timestamp", "google.protobuf.Duration"):
        seconds = st.one_of(
            st.integers(-(2**63), 2**63 - 1),
            st.sampled_from([0, 1_768_478_400, -62_135_596_801, 253_402_300_800]),
        )
        return st.builds(cls, seconds=seconds, nanos=st.integers(-(2**31), 2**31 - 1))
    if full == "google.protobuf.FieldMask":
        paths = st.one_of(
            st.sampled_from(list(plausible.for_field("update_mask")) or ["*"]), st.text(max_size=20)
        )
        return st.builds(cls, paths=st.lists(paths, max_size=4))
    return None


def message(descriptor: Descriptor, plausible: Plausible, depth: int = 0) -> st.SearchStrategy[Any]:
    """Messages of ``descriptor`` with any subset of fields set to anything."""
    special = _well_known(descriptor, plausible)
    if special is not None:
        return special
    cls = message_factory.GetMessageClass(descriptor)
    values: dict[str, st.SearchStrategy[Any]] = {}
    for field in descriptor.fields:
        if field.type == T.TYPE_MESSAGE:
            if depth >= 3:
                continue
            value: st.SearchStrategy[Any] = message(_sub(field), plausible, depth + 1)
        else:
            value = _scalar(field, plausible)
        if field.is_repeated:
            value = st.lists(value, max_size=3)
        values[field.name] = value

    def build(chosen: dict[str, Any]) -> Any:
        built = cls()
        for name, value in chosen.items():
            target = getattr(built, name)
            if isinstance(value, list):
                if value and hasattr(value[0], "SerializeToString"):
                    for item in value:
                        target.add().CopyFrom(item)
                else:
                    target.extend(value)
            elif hasattr(value, "SerializeToString"):
                target.CopyFrom(value)
            else:
                setattr(built, name, value)
        return built

    return st.fixed_dictionaries({}, optional=values).map(build)


def _hostile_ints(kind: int) -> list[int]:
    low, high = _INT_RANGES[kind]
    picks = [low, high, -1, 0, 1, 61, 2**31 - 1, -(2**31), 2**32 - 1, 2**53 + 1]
    return sorted({v for v in picks if low <= v <= high})


def hostile_values(field: FieldDescriptor) -> list[Any]:
    """What a hostile caller puts in a field of this type."""
    kind = field.type
    if kind == T.TYPE_STRING:
        return [*HOSTILE_TEXT, *(HOSTILE_JSON if field.name.endswith("_json") else [])]
    if kind == T.TYPE_BYTES:
        return [b"", b"\x00" * 16, b"\xff" * 4096, bytes(range(256))]
    if kind == T.TYPE_BOOL:
        return [True, False]
    if kind in (T.TYPE_FLOAT, T.TYPE_DOUBLE):
        return [float("nan"), float("inf"), -0.0, 1e308]
    if kind == T.TYPE_ENUM:
        return [-1, 0, 99]
    if kind == T.TYPE_MESSAGE:
        cls = message_factory.GetMessageClass(_sub(field))
        full = _sub(field).full_name
        if full in ("google.protobuf.Timestamp", "google.protobuf.Duration"):
            return [
                cls(seconds=s, nanos=n)
                for s, n in [
                    (-(2**63), 0),
                    (2**63 - 1, 0),
                    (253_402_300_800, 0),
                    (-62_135_596_801, 0),
                    (0, -1),
                    (0, 10**9),
                    (0, 0),
                ]
            ]
        if full == "google.protobuf.FieldMask":
            return [cls(paths=p) for p in (["nope"], ["*", "callback_url"], [""], ["a" * 1000])]
        return [cls()]
    return _hostile_ints(kind)


def leaf_paths(descriptor: Descriptor, depth: int = 0) -> list[tuple[FieldDescriptor, ...]]:
    """Every path to a scalar or well-known field (nested up to two levels)."""
    paths: list[tuple[FieldDescriptor, ...]] = []
    for field in descriptor.fields:
        is_message = field.type == T.TYPE_MESSAGE
        well_known = is_message and _sub(field).full_name.startswith("google.protobuf.")
        if is_message and not well_known and not field.is_repeated and depth < 2:
            paths += [(field, *rest) for rest in leaf_paths(_sub(field), depth + 1)]
        else:
            # Scalars, well-known messages and repeated fields (a repeated
            # message gets one hostile element) are leaves.
            paths.append((field,))
    return paths


def base_message(descriptor: Descriptor, plausible: Plausible, depth: int = 0) -> Any:
    """A request with the first plausible value in every field that has one
    (nested messages included): the well-formed base a hostile field is put into."""
    built = message_factory.GetMessageClass(descriptor)()
    for field in descriptor.fields:
        values = plausible.for_field(field.name, descriptor.name)
        full = _sub(field).full_name if field.type == T.TYPE_MESSAGE else ""
        if full and depth < 2 and not full.startswith("google."):
            nested = base_message(_sub(field), plausible, depth + 1)
            if field.is_repeated:
                # One well-formed entry (a batch of requests must hold one).
                getattr(built, field.name).add().CopyFrom(nested)
            else:
                getattr(built, field.name).CopyFrom(nested)
        elif full == "google.protobuf.FieldMask" and values:
            getattr(built, field.name).paths.append(values[0])
        elif full == "google.protobuf.Timestamp" and values:
            getattr(built, field.name).FromJsonString(values[0])
        elif field.type == T.TYPE_STRING and not field.is_repeated and values:
            setattr(built, field.name, values[0])
    return built


def with_value(base: Any, path: tuple[FieldDescriptor, ...], value: Any) -> Any:
    """A copy of ``base`` with the field on ``path`` set to ``value``."""
    copy = type(base)()
    copy.CopyFrom(base)
    target = copy
    for field in path[:-1]:
        target = getattr(target, field.name)
        if field.is_repeated:
            # Into a repeated message field: its first entry (the base has one).
            target = target[0] if len(target) else target.add()
    last = path[-1]
    if last.is_repeated:
        container = getattr(target, last.name)
        del container[:]
        if last.type == T.TYPE_MESSAGE:
            container.add().CopyFrom(value)
        else:
            container.append(value)
    elif last.type == T.TYPE_MESSAGE:
        getattr(target, last.name).CopyFrom(value)
    else:
        setattr(target, last.name, value)
    return copy


def hostile_cases(descriptor: Descriptor, plausible: Plausible) -> list[tuple[str, Any]]:
    """Every field of the well-formed base set, in turn, to every hostile
    value of its type: (field path, request)."""
    base = base_message(descriptor, plausible)
    cases = []
    for path in leaf_paths(descriptor):
        values = hostile_values(path[-1])
        current = _value_at(base, path)
        if isinstance(current, str) and current:
            # A well-formed value spoilt at its end: reaches past the shape
            # check of resource names into lookups (e.g. a NUL in an id).
            values += [current + suffix for suffix in SUFFIXES]
        cases += [(".".join(f.name for f in path), with_value(base, path, v)) for v in values]
    return cases


SUFFIXES = ["\x00", "x" * 300, "%00", "\u202e", "/", "é"]


def _value_at(message: Any, path: tuple[FieldDescriptor, ...]) -> Any:
    target = message
    for i, field in enumerate(path):
        target = getattr(target, field.name)
        if field.is_repeated and i < len(path) - 1:
            target = target[0]  # into a repeated message: its first entry
    return target


def focused(descriptor: Descriptor, plausible: Plausible) -> st.SearchStrategy[Any]:
    """The well-formed base with one field drawn from anything its type
    allows (hostile values weighted in)."""
    base = base_message(descriptor, plausible)

    def one_field(path: tuple[FieldDescriptor, ...]) -> st.SearchStrategy[Any]:
        field = path[-1]
        if field.type == T.TYPE_MESSAGE:
            anything = message(_sub(field), plausible, depth=2)
        else:
            anything = _scalar(field, plausible)
        value = st.one_of(st.sampled_from(hostile_values(field)), anything)
        return value.map(lambda v: with_value(base, path, v))

    return st.sampled_from(leaf_paths(descriptor)).flatmap(one_field)


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def string_paths(descriptor: Descriptor, depth: int = 0) -> list[tuple[FieldDescriptor, ...]]:
    """Every path of field descriptors that ends in a string field."""
    paths: list[tuple[FieldDescriptor, ...]] = []
    for field in descriptor.fields:
        if field.type == T.TYPE_STRING:
            paths.append((field,))
        elif field.type == T.TYPE_MESSAGE and depth < 2:
            paths += [(field, *rest) for rest in string_paths(_sub(field), depth + 1)]
    return paths


def with_bad_utf8(path: tuple[FieldDescriptor, ...], prefix: bytes) -> bytes:
    """A string field on ``path`` holding ``prefix`` + a lone surrogate, encoded
    as a field to append to a message (the parser merges it in)."""
    inner = prefix + LONE_SURROGATE_BYTES
    encoded = _varint(path[-1].number << 3 | 2) + _varint(len(inner)) + inner
    for field in reversed(path[:-1]):
        encoded = _varint(field.number << 3 | 2) + _varint(len(encoded)) + encoded
    return encoded


@dataclass(frozen=True)
class Case:
    """One request on the wire and, for injected bad UTF-8, the field it is in."""

    body: bytes
    kind: str
    bad_field: str = ""


def wire_bytes(descriptor: Descriptor, plausible: Plausible) -> st.SearchStrategy[Case]:
    """Valid encodings, invalid UTF-8 in a string field, truncations, noise."""
    messages = message(descriptor, plausible)
    near = focused(descriptor, plausible).map(lambda m: Case(m.SerializeToString(), "focused"))
    anything = messages.map(lambda m: Case(m.SerializeToString(), "message"))
    strategies: list[st.SearchStrategy[Case]] = [near, near, near, anything]
    paths = string_paths(descriptor)
    if paths:

        def inject(args: tuple[Any, tuple[FieldDescriptor, ...], bytes]) -> Case:
            built, path, prefix = args
            body = built.SerializeToString() + with_bad_utf8(path, prefix)
            return Case(body, "bad-utf8", ".".join(f.name for f in path))

        strategies.append(
            st.tuples(messages, st.sampled_from(paths), st.binary(max_size=8).filter(_ascii)).map(
                inject
            )
        )

    def truncate(args: tuple[Any, int]) -> Case:
        body = args[0].SerializeToString()
        return Case(body[: args[1] % (len(body) or 1)], "truncated")

    strategies.append(st.tuples(messages, st.integers(0, 10_000)).map(truncate))
    strategies.append(st.binary(max_size=64).map(lambda b: Case(b, "noise")))
    return st.one_of(strategies)


def _ascii(data: bytes) -> bool:
    return data.isascii()


Factory = Callable[[Descriptor, Plausible], st.SearchStrategy[Case]]
