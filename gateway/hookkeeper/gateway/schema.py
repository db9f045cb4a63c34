"""The public GraphQL schema, assembled from one module per capability.

How to add operations from your own module (e.g. ``gateway/event_types.py``):

1. Write strawberry classes there: ``Query`` and/or ``Mutation`` holding your
   root fields, and, to add fields to the partner's ``NotificationProfile``,
   a ``ProfileFields`` class whose resolvers take
   ``root: strawberry.Parent[gateway.profile.ProfileRoot]`` (it carries the
   authenticated partner). Resolvers reach the service through
   ``info.context`` (a ``gateway.context.GatewayContext``: ``.partner``,
   ``.rpc.call(...)``) and raise ``gateway.errors`` errors.
2. Add the module to ``CAPABILITIES`` below. Nothing else changes: the root
   types and ``NotificationProfile`` are merged from every listed module.
"""

from __future__ import annotations

from types import ModuleType

import strawberry
from graphql import GraphQLError
from strawberry.extensions import AddValidationRules, MaxAliasesLimiter, QueryDepthLimiter
from strawberry.schema.config import StrawberryConfig
from strawberry.tools import merge_types
from strawberry.types import ExecutionContext
from strawberry.types.base import get_object_definition

from hookkeeper.gateway import (
    audit_log,
    callback_configs,
    delivery_log,
    endpoint_health,
    notifications,
    profile,
)
from hookkeeper.gateway.documents import DocumentCache, UsePrepared
from hookkeeper.gateway.scalars import SCALAR_MAP

# Each module may define Query, Mutation and ProfileFields (all optional).
CAPABILITIES: tuple[ModuleType, ...] = (
    callback_configs,
    notifications,
    delivery_log,
    endpoint_health,
    audit_log,
)

# Deepest selection the public API needs is 3 (profile → configs → field);
# 10 leaves room for later additions and stops abusive nesting early.
MAX_QUERY_DEPTH = 10
# Estimated bytes of parsed documents kept (see gateway.documents).
DOCUMENT_CACHE_BYTES = 8 * 1024 * 1024
# Aliases let one request repeat a mutation; each costs an RPC.
MAX_ALIASES = 20


def _parts(attribute: str) -> tuple[type, ...]:
    return tuple(
        getattr(module, attribute) for module in CAPABILITIES if hasattr(module, attribute)
    )


class GatewaySchema(strawberry.Schema):
    """The schema without strawberry's default error logging: the gateway
    logs unexpected errors itself (``errors.classify``); expected ones are
    answers, not incidents. ``documents`` is its cache of prepared documents
    (the gateway prepares each request's document there first)."""

    documents: DocumentCache

    def process_errors(
        self, errors: list[GraphQLError], execution_context: ExecutionContext | None = None
    ) -> None:
        """Logs nothing here (see the class docstring)."""


def build_schema(
    max_depth: int = MAX_QUERY_DEPTH, document_cache_bytes: int = DOCUMENT_CACHE_BYTES
) -> GatewaySchema:
    """The schema with every capability's operations merged in."""
    profile_type = merge_types("NotificationProfile", _parts("ProfileFields"))
    get_object_definition(profile_type, strict=True).description = profile.PROFILE_DESCRIPTION
    query = merge_types("Query", (profile.query_type(profile_type), *_parts("Query")))
    mutation = merge_types("Mutation", _parts("Mutation"))
    # The limiters' rule classes are built once: a per-request limiter would
    # make new rule classes each time, and the validation cache (keyed by the
    # rules) would never hit.
    limits = [
        *QueryDepthLimiter(max_depth=max_depth).validation_rules,
        *MaxAliasesLimiter(max_alias_count=MAX_ALIASES).validation_rules,
    ]
    documents = DocumentCache(document_cache_bytes)
    schema = GatewaySchema(
        query=query,
        mutation=mutation,
        config=StrawberryConfig(scalar_map=SCALAR_MAP),
        extensions=[
            # Factories: a fresh extension per request; the document cache
            # (parse and validation outcomes, bounded in bytes) persists.
            lambda: AddValidationRules(limits),
            lambda: UsePrepared(documents),
        ],
    )
    schema.documents = documents
    return schema
