"""The commented descriptors that reflection serves match the compiled ones."""

from __future__ import annotations

from google.protobuf import descriptor_pb2

from hookkeeper.notifications.v1 import callback_config_pb2, secret_rotation_pb2
from hookkeeper.service.api.reflection import load_commented_files


def _without_extras(raw: bytes) -> descriptor_pb2.FileDescriptorProto:
    """The descriptor minus what only the commented copy carries."""
    proto = descriptor_pb2.FileDescriptorProto.FromString(raw)
    proto.ClearField("source_code_info")
    for message in proto.message_type:
        for field in message.field:
            field.ClearField("json_name")
    return proto


def test_every_compiled_file_has_a_commented_copy_with_comments() -> None:
    commented = load_commented_files()
    for module in (callback_config_pb2, secret_rotation_pb2):
        name = module.DESCRIPTOR.name
        assert name in commented, f"{name} missing: run make proto"
        proto = descriptor_pb2.FileDescriptorProto.FromString(commented[name])
        comments = [loc.leading_comments for loc in proto.source_code_info.location]
        assert any("Bearer" in c for c in comments)


def test_commented_copies_describe_the_same_schema_as_the_compiled_code() -> None:
    commented = load_commented_files()
    for module in (callback_config_pb2, secret_rotation_pb2):
        compiled = descriptor_pb2.FileDescriptorProto()
        module.DESCRIPTOR.CopyToProto(compiled)
        assert _without_extras(commented[module.DESCRIPTOR.name]) == _without_extras(
            compiled.SerializeToString()
        )
