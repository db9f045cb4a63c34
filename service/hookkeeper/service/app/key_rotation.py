"""Re-encrypts every sealed value under the keyring's newest key.

Online and safe to repeat: it works in small transactions with row locks
(skipping rows another rotation holds), and a row already under the newest key
is never touched.
"""

from __future__ import annotations

from hookkeeper.service.app import audit as trail
from hookkeeper.service.app.context import AppContext, api_key_aad, secret_aad
from hookkeeper.service.domain import audit
from hookkeeper.service.store import callback_configs as store
from hookkeeper.service.store.change_feed import announce

BATCH = 200


async def rotate_keys(ctx: AppContext) -> int:
    """Reseals rows under older keys; returns how many values were resealed."""
    keyring = ctx.keyring
    total = 0
    while True:
        async with ctx.database.write() as conn:
            configs, secrets = await store.sealed_under_other_keys(
                conn, keyring.primary_key_id, BATCH
            )
            for config in configs:
                aad = api_key_aad(config.id)
                sealed = keyring.seal(keyring.open(config.api_key, aad), aad)
                await store.update_config(conn, config.id, {"api_key": sealed})
            for secret in secrets:
                aad = secret_aad(secret.id, secret.callback_config_id)
                await store.reseal_secret(
                    conn, secret.id, keyring.seal(keyring.open(secret.sealed, aad), aad)
                )
            changed = {c.id for c in configs} | {s.callback_config_id for s in secrets}
            for config_id in changed:
                await announce(conn, config_id)
            if changed:
                resource = f"masterKeys/{keyring.primary_key_id}"
                await trail.record(
                    ctx,
                    conn,
                    audit.Draft(audit.MASTER_KEY_ROTATE, resource, None, count=len(changed)),
                )
        for config_id in changed:
            ctx.invalidate(config_id)
        done = len(configs) + len(secrets)
        total += done
        if done == 0:
            return total
