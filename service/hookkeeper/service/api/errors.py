"""Maps domain errors onto gRPC status codes with rich error details."""

from __future__ import annotations

import functools
import logging
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import grpc
from google.protobuf import any_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

from hookkeeper.service.domain.errors import (
    AlreadyExists,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
)

_log = logging.getLogger(__name__)

Req = TypeVar("Req")
Resp = TypeVar("Resp")
Handler = Callable[[Any, Req, grpc.aio.ServicerContext[Any, Any]], Awaitable[Resp]]


def _bad_request(error: InvalidArgument) -> status_pb2.Status:
    detail = error_details_pb2.BadRequest(
        field_violations=[
            error_details_pb2.BadRequest.FieldViolation(field=v.field, description=v.description)
            for v in error.violations
        ]
    )
    packed = any_pb2.Any()
    packed.Pack(detail)
    return status_pb2.Status(code=code_pb2.INVALID_ARGUMENT, message=str(error), details=[packed])


def maps_errors(handler: Handler[Req, Resp]) -> Handler[Req, Resp]:
    """Decorates an RPC so domain errors become their status codes and anything
    unexpected becomes INTERNAL without leaking its message."""

    @functools.wraps(handler)
    async def wrapper(self: Any, request: Req, context: grpc.aio.ServicerContext[Any, Any]) -> Resp:
        try:
            return await handler(self, request, context)
        except InvalidArgument as error:
            status = rpc_status.to_status(_bad_request(error))
            await context.abort(status.code, status.details, status.trailing_metadata)
        except NotFound as error:
            await context.abort(grpc.StatusCode.NOT_FOUND, str(error))
        except FailedPrecondition as error:
            await context.abort(grpc.StatusCode.FAILED_PRECONDITION, str(error))
        except AlreadyExists as error:
            await context.abort(grpc.StatusCode.ALREADY_EXISTS, str(error))
        except grpc.aio.AbortError:
            raise
        except Exception:
            # Type and traceback go to the log (they never hold secrets: every
            # carrier of one redacts its repr); the caller learns nothing internal.
            _log.exception("unhandled error in %s", handler.__qualname__)
            await context.abort(grpc.StatusCode.INTERNAL, "internal error")
        raise AssertionError("unreachable: abort raises")

    return wrapper
