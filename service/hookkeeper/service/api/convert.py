"""Conversions between protobuf messages and domain values."""

from __future__ import annotations

from datetime import UTC, datetime

from google.protobuf import timestamp_pb2

from hookkeeper.notifications.v1 import callback_config_pb2 as pb
from hookkeeper.service.domain.callback_config import (
    EXPEDIA_V2,
    STANDARD_WEBHOOKS,
    CallbackConfig,
    ConfigFields,
)
from hookkeeper.service.domain.endpoint_health import DISABLED
from hookkeeper.service.domain.errors import invalid

_SCHEMES = {
    EXPEDIA_V2: pb.SIGNATURE_SCHEME_EXPEDIA_V2,
    STANDARD_WEBHOOKS: pb.SIGNATURE_SCHEME_STANDARD_WEBHOOKS,
}
_SCHEME_NAMES = {number: name for name, number in _SCHEMES.items()}


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def timestamp(moment: datetime) -> timestamp_pb2.Timestamp:
    """A protobuf Timestamp of an aware datetime. Computed from the
    difference to the epoch: ``Timestamp.FromDatetime`` is pure Python
    through ``calendar.timegm`` and was a per cent of a write RPC's CPU
    (three timestamps per configuration)."""
    since = moment - _EPOCH
    return timestamp_pb2.Timestamp(
        seconds=since.days * 86_400 + since.seconds, nanos=since.microseconds * 1000
    )


# The range google.protobuf.Timestamp defines: 0001-01-01 to 9999-12-31.
_MIN_SECONDS, _MAX_SECONDS = -62_135_596_800, 253_402_300_799


def from_timestamp(message: timestamp_pb2.Timestamp, field: str = "timestamp") -> datetime:
    """An aware UTC datetime of a protobuf Timestamp; INVALID_ARGUMENT naming
    ``field`` outside the range the Timestamp type defines."""
    if not _MIN_SECONDS <= message.seconds <= _MAX_SECONDS or not 0 <= message.nanos < 10**9:
        raise invalid(field, "must be between 0001-01-01 and 9999-12-31 with 0-999999999 nanos")
    return message.ToDatetime(tzinfo=UTC)


def config_message(config: CallbackConfig) -> pb.CallbackConfig:
    """The protobuf view of a configuration (never the API key)."""
    message = pb.CallbackConfig(
        name=str(config.name),
        callback_url=config.callback_url,
        contact_email=config.contact_email,
        request_timeout_seconds=config.request_timeout_seconds,
        secret_expire_time=timestamp(config.secret_expire_time),
        create_time=timestamp(config.create_time),
        update_time=timestamp(config.update_time),
        state=(
            pb.CallbackConfig.STATE_DISABLED
            if config.state == DISABLED
            else pb.CallbackConfig.STATE_ACTIVE
        ),
        disable_reason=config.disable_reason or "",
        signature_scheme=_SCHEMES.get(config.signature_scheme, pb.SIGNATURE_SCHEME_UNSPECIFIED),
    )
    if config.disable_time is not None:
        message.disable_time.CopyFrom(timestamp(config.disable_time))
    if config.max_deliveries_per_second is not None:
        message.max_deliveries_per_second = config.max_deliveries_per_second
    return message


def config_fields(message: pb.CallbackConfig) -> ConfigFields:
    """The settable fields of a configuration message."""
    timeout = (
        message.request_timeout_seconds if message.HasField("request_timeout_seconds") else None
    )
    rate = (
        message.max_deliveries_per_second if message.HasField("max_deliveries_per_second") else None
    )
    scheme: str | None = None
    if message.signature_scheme != pb.SIGNATURE_SCHEME_UNSPECIFIED:
        if message.signature_scheme not in _SCHEME_NAMES:
            raise invalid(
                "callback_config.signature_scheme",
                "must be SIGNATURE_SCHEME_EXPEDIA_V2 or SIGNATURE_SCHEME_STANDARD_WEBHOOKS",
            )
        scheme = _SCHEME_NAMES[message.signature_scheme]
    return ConfigFields(
        callback_url=message.callback_url,
        api_key=message.api_key,
        contact_email=message.contact_email,
        request_timeout_seconds=timeout,
        max_deliveries_per_second=rate,
        signature_scheme=scheme,
    )
