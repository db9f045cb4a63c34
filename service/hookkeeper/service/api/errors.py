"""The one place where errors become gRPC status codes.

``with_error_choke_point`` builds the server's interceptor chain: error
mapping outside everything (access control and auditing included), request
decoding inside everything, on every method handler the server resolves, so
no RPC can be registered without them: a servicer method raises domain
errors and never touches status codes itself.

- Domain errors become their codes (INVALID_ARGUMENT carries a
  ``google.rpc.BadRequest`` naming each bad field).
- A dependency that is down (``Unavailable``) becomes UNAVAILABLE, logged by
  whoever watches the dependency, not once per request.
- A request whose bytes are not a valid encoding of its message becomes
  INVALID_ARGUMENT naming the first bad field (grpc's own deserializer failure
  would answer UNKNOWN or INTERNAL).
- Anything else becomes INTERNAL without its message, and is logged.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import grpc
from google.protobuf import any_pb2
from google.protobuf.descriptor import Descriptor
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

from hookkeeper.service.api.wire import first_bad_field
from hookkeeper.service.domain.errors import (
    AlreadyExists,
    FailedPrecondition,
    FieldViolation,
    InvalidArgument,
    NotFound,
    Unavailable,
)

_log = logging.getLogger(__name__)

Context = grpc.aio.ServicerContext[Any, Any]
Behavior = Callable[[Any, Context], Awaitable[Any]]
Deserializer = Callable[[bytes], Any]
if TYPE_CHECKING:  # grpc's classes are generic only in grpc-stubs
    Handler = grpc.RpcMethodHandler[Any, Any]
    Continuation = Callable[[grpc.HandlerCallDetails], Awaitable[Handler | None]]


def bad_request(error: InvalidArgument) -> status_pb2.Status:
    """The rich INVALID_ARGUMENT status of ``error``: a BadRequest detail
    listing every field violation."""
    detail = error_details_pb2.BadRequest(
        field_violations=[
            error_details_pb2.BadRequest.FieldViolation(field=v.field, description=v.description)
            for v in error.violations
        ]
    )
    packed = any_pb2.Any()
    packed.Pack(detail)
    return status_pb2.Status(code=code_pb2.INVALID_ARGUMENT, message=str(error), details=[packed])


async def abort_with(context: Context, error: BaseException, method: str) -> None:
    """Aborts the call with the status ``error`` stands for (always raises)."""
    if isinstance(error, InvalidArgument):
        status = rpc_status.to_status(bad_request(error))
        await context.abort(status.code, status.details, status.trailing_metadata)
    if isinstance(error, NotFound):
        await context.abort(grpc.StatusCode.NOT_FOUND, str(error))
    if isinstance(error, FailedPrecondition):
        await context.abort(grpc.StatusCode.FAILED_PRECONDITION, str(error))
    if isinstance(error, AlreadyExists):
        await context.abort(grpc.StatusCode.ALREADY_EXISTS, str(error))
    if isinstance(error, Unavailable):
        await context.abort(grpc.StatusCode.UNAVAILABLE, str(error))
    # Type and traceback go to the log (they never hold secrets: every carrier
    # of one redacts its repr); the caller learns nothing internal.
    _log.error("unhandled error in %s", method, exc_info=error)
    await context.abort(grpc.StatusCode.INTERNAL, "internal error")


class Undecodable:
    """Stands in for a request whose bytes did not decode, so the handler can
    answer INVALID_ARGUMENT instead of grpc answering UNKNOWN."""

    __slots__ = ("field",)

    def __init__(self, field: str) -> None:
        self.field = field


def _tolerant(deserializer: Deserializer | None) -> Deserializer | None:
    if deserializer is None:
        return None
    descriptor: Descriptor | None = getattr(
        getattr(deserializer, "__self__", None), "DESCRIPTOR", None
    )

    def deserialize(data: bytes) -> Any:
        try:
            return deserializer(data)
        except Exception:
            field = first_bad_field(descriptor, data) if descriptor is not None else ""
            return Undecodable(field)

    return deserialize


def _undecodable_error(request: Undecodable) -> InvalidArgument:
    field = request.field or "request"
    return InvalidArgument(
        [FieldViolation(field, "is not a valid protobuf encoding (truncated or bad UTF-8)")]
    )


def guard_unary(behavior: Behavior, method: str) -> Behavior:
    """``behavior`` with every error mapped onto its status code."""

    async def guarded(request: Any, context: Context) -> Any:
        try:
            if isinstance(request, Undecodable):
                raise _undecodable_error(request)
            return await behavior(request, context)
        except grpc.aio.AbortError:
            raise
        except Exception as error:
            await abort_with(context, error, method)
        raise AssertionError("unreachable: abort raises")

    return guarded


def _refuse_undecodable(behavior: Behavior) -> Behavior:
    async def checked(request: Any, context: Context) -> Any:
        if isinstance(request, Undecodable):
            raise _undecodable_error(request)
        return await behavior(request, context)

    return checked


def _refuse_undecodable_stream(behavior: Callable[..., Any]) -> Callable[..., Any]:
    async def checked(request: Any, context: Context) -> Any:
        if isinstance(request, Undecodable):
            raise _undecodable_error(request)
        produced = behavior(request, context)
        if inspect.isawaitable(produced):  # a handler that is no generator
            await produced
            return
        async for item in produced:
            yield item

    return checked


def _guard_stream(behavior: Callable[..., Any], method: str) -> Callable[..., Any]:
    # Server-streaming methods (health's Watch, WatchTokenRevocations): the
    # undecodable request, and errors raised before or between messages, are
    # mapped like a unary method's.
    async def guarded(request: Any, context: Context) -> Any:
        try:
            if isinstance(request, Undecodable):
                raise _undecodable_error(request)
            produced = behavior(request, context)
            if inspect.isawaitable(produced):  # a handler that is no generator
                await produced
                return
            async for item in produced:
                yield item
        except grpc.aio.AbortError:
            raise
        except Exception as error:
            await abort_with(context, error, method)

    return guarded


def decoding_handler(handler: Handler) -> Handler:
    """The handler with a deserializer that never raises: an undecodable
    request reaches the behavior as ``Undecodable`` (so interceptors between
    see it, and authentication still comes first) and is refused there."""
    deserializer = _tolerant(handler.request_deserializer)
    serializer = handler.response_serializer
    if handler.unary_unary is not None:
        return grpc.unary_unary_rpc_method_handler(
            _refuse_undecodable(handler.unary_unary),  # type: ignore[arg-type]
            deserializer,
            serializer,
        )
    if handler.unary_stream is not None:
        return grpc.unary_stream_rpc_method_handler(
            _refuse_undecodable_stream(handler.unary_stream), deserializer, serializer
        )
    # Client-streaming methods (reflection) decode each message themselves
    # inside grpc; left as they are.
    return handler


def mapping_handler(handler: Handler, method: str) -> Handler:
    """The handler with every error its behavior raises mapped onto a status."""
    deserializer = handler.request_deserializer
    serializer = handler.response_serializer
    if handler.unary_unary is not None:
        return grpc.unary_unary_rpc_method_handler(
            guard_unary(handler.unary_unary, method),  # type: ignore[arg-type]
            deserializer,
            serializer,
        )
    if handler.unary_stream is not None:
        return grpc.unary_stream_rpc_method_handler(
            _guard_stream(handler.unary_stream, method), deserializer, serializer
        )
    return handler


class _WrappingInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[type-arg]
    def __init__(self) -> None:
        # Registered handlers are long-lived objects: wrap each once.
        self._wrapped: dict[str, tuple[Any, Handler]] = {}

    def _wrap(self, handler: Handler, method: str) -> Handler:
        raise NotImplementedError

    async def intercept_service(
        self, continuation: Continuation, handler_call_details: grpc.HandlerCallDetails
    ) -> Handler:
        """The resolved handler, wrapped (None for an unknown method)."""
        handler = await continuation(handler_call_details)
        if handler is None:
            return None  # type: ignore[return-value]  # grpc's contract: unknown method
        method = handler_call_details.method or ""
        cached = self._wrapped.get(method)
        if cached is not None and cached[0] is handler:
            return cached[1]
        wrapped = self._wrap(handler, method)
        self._wrapped[method] = (handler, wrapped)
        return wrapped


class ErrorMappingInterceptor(_WrappingInterceptor):
    """Maps every error of every handler the server resolves, including
    what the interceptors inside it raise (access checks, auditing)."""

    def _wrap(self, handler: Handler, method: str) -> Handler:
        return mapping_handler(handler, method)


class RequestDecodingInterceptor(_WrappingInterceptor):
    """Innermost: undecodable requests become INVALID_ARGUMENT naming the field."""

    def _wrap(self, handler: Handler, method: str) -> Handler:
        return decoding_handler(handler)


def with_error_choke_point(
    *between: grpc.aio.ServerInterceptor,  # type: ignore[type-arg]
) -> list[grpc.aio.ServerInterceptor]:  # type: ignore[type-arg]
    """The interceptor chain around ``between`` (e.g. access control): error
    mapping outside everything, request decoding inside everything. The
    server is built only through this, so no RPC can lack either."""
    return [ErrorMappingInterceptor(), *between, RequestDecodingInterceptor()]
