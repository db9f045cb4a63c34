"""Server reflection that also serves the protos' comments.

The descriptors compiled into the generated ``*_pb2`` modules carry no source
info, so plain reflection shows operators no documentation: ``grpcurl
describe`` would print bare fields. ``make proto`` also writes
``hookkeeper/notifications/descriptors.binpb`` (protoc ``--include_source_info``); this
servicer answers with those richer copies of our own files and leaves every
other file (google/*, grpc/*) as the standard servicer serves it.
"""

from __future__ import annotations

import logging
from importlib import resources
from typing import Any

import grpc
from google.protobuf import descriptor_pb2
from grpc_reflection.v1alpha import reflection_pb2_grpc
from grpc_reflection.v1alpha._async import ReflectionServicer as AioReflectionServicer

_log = logging.getLogger(__name__)

DESCRIPTOR_SET = "descriptors.binpb"


def load_commented_files(package: str = "hookkeeper.notifications") -> dict[str, bytes]:
    """file name → serialized FileDescriptorProto with source info (empty if absent)."""
    try:
        data = resources.files(package).joinpath(DESCRIPTOR_SET).read_bytes()
    except (FileNotFoundError, ModuleNotFoundError):
        _log.warning("%s not found: reflection will serve protos without comments", DESCRIPTOR_SET)
        return {}
    files = descriptor_pb2.FileDescriptorSet.FromString(data).file
    return {f.name: f.SerializeToString() for f in files}


class CommentedReflectionServicer(AioReflectionServicer):  # type: ignore[misc]
    """The standard asyncio reflection servicer, with commented descriptors
    substituted for our own files."""

    def __init__(self, service_names: tuple[str, ...], commented: dict[str, bytes]) -> None:
        super().__init__(service_names)
        self._commented = commented

    def _with_comments(self, response: Any) -> Any:
        if not self._commented or not response.HasField("file_descriptor_response"):
            return response
        files = response.file_descriptor_response.file_descriptor_proto
        for index, raw in enumerate(files):
            name = descriptor_pb2.FileDescriptorProto.FromString(raw).name
            if name in self._commented:
                files[index] = self._commented[name]
        return response

    def _file_by_filename(self, request: Any, filename: str) -> Any:
        return self._with_comments(super()._file_by_filename(request, filename))

    def _file_containing_symbol(self, request: Any, fully_qualified_name: str) -> Any:
        response = super()._file_containing_symbol(request, fully_qualified_name)
        if response.HasField("error_response"):
            # The descriptor pool does not index methods, so `grpcurl describe
            # pkg.Service.Method` would fail: answer with the service's file.
            service, _, method = fully_qualified_name.rpartition(".")
            try:
                found = self._pool.FindServiceByName(service).FindMethodByName(method)
            except KeyError:
                found = None
            if found is not None:
                response = super()._file_containing_symbol(request, service)
        return self._with_comments(response)

    def _file_containing_extension(
        self, request: Any, containing_type: str, extension_number: int
    ) -> Any:
        return self._with_comments(
            super()._file_containing_extension(request, containing_type, extension_number)
        )


def enable_server_reflection(service_names: tuple[str, ...], server: grpc.aio.Server) -> None:
    """Registers reflection for ``service_names``, comments included."""
    servicer = CommentedReflectionServicer(service_names, load_commented_files())
    reflection_pb2_grpc.add_ServerReflectionServicer_to_server(servicer, server)
