"""Partner accounts and tokens on both databases: the use cases and
PartnerService.AuthenticatePartner over a real in-process gRPC server."""

from __future__ import annotations

import grpc
import pytest
from sqlalchemy import select

from hookkeeper.notifications.v1 import partner_pb2 as pb
from hookkeeper.notifications.v1 import partner_pb2_grpc as pb_grpc
from hookkeeper.service.app.context import AppContext
from hookkeeper.service.app.partners import Partners
from hookkeeper.service.domain.errors import InvalidArgument, NotFound
from hookkeeper.service.domain.partner_tokens import token_hash
from hookkeeper.service.server import start_server
from hookkeeper.service.store.partner_tables import partner_tokens
from hookkeeper.service.store.tables import partners as partner_rows

TOKEN = "test-token-0123456789abcdef"
AUTH = (("authorization", f"Bearer {TOKEN}"),)


async def test_create_stores_the_partner_and_only_the_token_hash(
    app_context: AppContext,
) -> None:
    issued = await Partners(app_context).create("  Acme Hotels ")
    assert issued.partner.display_name == "Acme Hotels"
    assert issued.token not in repr(issued)
    async with app_context.database.read() as conn:
        stored = (await conn.execute(select(partner_tokens))).mappings().all()
        profiles = (await conn.execute(select(partner_rows.c.id))).scalars().all()
    assert [row["token_sha256"] for row in stored] == [token_hash(issued.token)]
    assert all(issued.token not in str(value) for row in stored for value in row.values())
    assert profiles == [issued.partner.partner_id]  # the notification profile exists


async def test_authenticate_issue_and_revoke(app_context: AppContext) -> None:
    partners = Partners(app_context)
    first = await partners.create("Acme")
    other = await partners.create("Other")
    assert (await partners.authenticate(first.token)).partner_id == first.partner.partner_id
    second = await partners.issue_token(first.partner.name)
    assert (await partners.authenticate(second.token)).partner_id == first.partner.partner_id

    assert await partners.revoke_token(first.token) == 1
    assert await partners.revoke_token(first.token) == 0
    with pytest.raises(NotFound):
        await partners.authenticate(first.token)
    assert (await partners.authenticate(second.token)).display_name == "Acme"

    assert await partners.revoke_partner(first.partner.partner_id) == 1
    with pytest.raises(NotFound):
        await partners.authenticate(second.token)
    assert (await partners.authenticate(other.token)).display_name == "Other"
    for unknown in ("", "hkp_nope", "x" * 10_000):
        with pytest.raises(NotFound):
            await partners.authenticate(unknown)


async def test_bad_names_and_unknown_partners(app_context: AppContext) -> None:
    partners = Partners(app_context)
    with pytest.raises(InvalidArgument):
        await partners.create("")
    with pytest.raises(NotFound):
        await partners.issue_token("00000000-0000-4000-8000-000000000000")
    with pytest.raises(NotFound):
        await partners.revoke_partner("00000000-0000-4000-8000-000000000000")


async def test_authenticate_partner_rpc(app_context: AppContext) -> None:
    issued = await Partners(app_context).create("Acme")
    running = await start_server(app_context, "127.0.0.1:0", f"tests={TOKEN}")
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{running.port}") as channel:
            stub = pb_grpc.PartnerServiceStub(channel)
            reply = await stub.AuthenticatePartner(
                pb.AuthenticatePartnerRequest(token=issued.token), metadata=AUTH
            )
            assert reply.partner.name == issued.partner.name
            assert reply.partner.display_name == "Acme"
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await stub.AuthenticatePartner(
                    pb.AuthenticatePartnerRequest(token=issued.token + "x"), metadata=AUTH
                )
            assert caught.value.code() == grpc.StatusCode.NOT_FOUND
            assert issued.token not in (caught.value.details() or "")
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await stub.AuthenticatePartner(pb.AuthenticatePartnerRequest(token=issued.token))
            assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED
    finally:
        await running.stop(0)
