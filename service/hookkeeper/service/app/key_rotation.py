"""Re-encrypts every sealed value under the keyring's newest key.

Online and safe to repeat: it works in small transactions with row locks
(skipping rows another rotation holds), and a row already under the newest key
is never touched.
"""

from __future__ import annotations

from hookkeeper.service.app import audit as trail
from hookkeeper.service.app.context import AppContext, api_key_aad, secret_aad
from hookkeeper.service.domain import audit

BATCH = 200


async def rotate_keys(ctx: AppContext) -> int:
    """Reseals rows under older keys; returns how many values were resealed."""
    keyring = ctx.keyring
    total = 0
    while True:
        async with ctx.unit_of_work() as uow:
            configs, secrets = await uow.configs.sealed_under_other_keys(
                keyring.primary_key_id, BATCH
            )
            for config in configs:
                aad = api_key_aad(config.id)
                sealed = keyring.seal(keyring.open(config.api_key, aad), aad)
                await uow.configs.update_config(config.id, {"api_key": sealed})
                uow.changed(config.id)
            for secret in secrets:
                aad = secret_aad(secret.id, secret.callback_config_id)
                await uow.configs.reseal_secret(
                    secret.id, keyring.seal(keyring.open(secret.sealed, aad), aad)
                )
                uow.changed(secret.callback_config_id)
            changed = {c.id for c in configs} | {s.callback_config_id for s in secrets}
            if changed:
                resource = f"masterKeys/{keyring.primary_key_id}"
                await trail.record(
                    ctx,
                    uow.conn,
                    audit.Draft(audit.MASTER_KEY_ROTATE, resource, None, count=len(changed)),
                )
        done = len(configs) + len(secrets)
        total += done
        if done == 0:
            return total
