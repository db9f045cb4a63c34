"""Finds where a protobuf encoding goes wrong, to name the field in the error.

Only called after the real decoder has refused the bytes, so it favours
clarity over speed; it walks the wire format iteratively (a stack of nested
messages, no recursion) and reports the first field it cannot read.
"""

from __future__ import annotations

from google.protobuf.descriptor import Descriptor, FieldDescriptor

_VARINT, _I64, _LEN, _SGROUP, _EGROUP, _I32 = 0, 1, 2, 3, 4, 5
_MAX_NESTING = 100  # the decoder's own limit


class _Bad(Exception):
    """The encoding is broken at the field being read."""


def _varint(data: bytes, pos: int, end: int) -> tuple[int, int]:
    value = shift = 0
    while pos < end and shift < 70:
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, pos
        shift += 7
    raise _Bad


def _join(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if prefix else name


def first_bad_field(descriptor: Descriptor, data: bytes) -> str:
    """The dotted path of the first unreadable field of ``data`` as a
    ``descriptor`` message; "" when the fault is not inside a known field."""
    # Each frame: (message descriptor or None for unknown, end offset, path).
    stack: list[tuple[Descriptor | None, int, str]] = [(descriptor, len(data), "")]
    pos = 0
    while stack:
        message, end, prefix = stack[-1]
        if pos >= end:
            if pos > end:
                return prefix
            stack.pop()
            continue
        field_path = prefix
        try:
            key, pos = _varint(data, pos, end)
            number, wire_type = key >> 3, key & 7
            field = message.fields_by_number.get(number) if message is not None else None
            if field is not None:
                field_path = _join(prefix, field.name)
            if number == 0:
                raise _Bad
            if wire_type == _VARINT:
                _, pos = _varint(data, pos, end)
            elif wire_type in (_I64, _I32):
                pos += 8 if wire_type == _I64 else 4
                if pos > end:
                    raise _Bad
            elif wire_type == _LEN:
                length, pos = _varint(data, pos, end)
                stop = pos + length
                if stop > end:
                    raise _Bad
                if field is not None and field.type == FieldDescriptor.TYPE_STRING:
                    data[pos:stop].decode("utf-8")
                    pos = stop
                elif field is not None and field.type == FieldDescriptor.TYPE_MESSAGE:
                    if len(stack) >= _MAX_NESTING:
                        raise _Bad
                    stack.append((field.message_type, stop, field_path))
                else:
                    pos = stop
            else:
                raise _Bad
        except (_Bad, UnicodeDecodeError):
            return field_path
    return ""
