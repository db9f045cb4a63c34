"""GraphQL documents before they run: parsed once per request under hard
limits, sized up (how many fields the operation expands to, how many
mutations it asks for), and cached in a cache bounded in bytes.

Why here and not only in validation: graphql-core's validation rules (and
strawberry's depth limiter) walk fragment spreads recursively and without
memoisation, so 300 chained fragments overflow the stack and 20 fragments
that each spread the next one twice take seconds of CPU. The walk below is
memoised per fragment and refuses such documents before validation starts.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

import cachetools
from graphql import (
    DocumentNode,
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLError,
    InlineFragmentNode,
    OperationDefinitionNode,
    OperationType,
    SelectionSetNode,
    parse,
)
from strawberry.extensions import SchemaExtension
from strawberry.schema.schema import validate_document

from hookkeeper.gateway import errors

# graphql-core stops lexing after this many tokens (what strawberry's
# MaxTokensLimiter sets); comments and whitespace are not tokens.
MAX_TOKENS = 5_000
MAX_FRAGMENTS = 50
# Selection sets, inline fragments and spreads inside one another.
MAX_NESTING = 32
# Fields after every fragment is expanded: bounds validation and execution
# work however the document is folded.
MAX_EXPANDED_FIELDS = 1_000
# Only documents up to this size are cached: a unique 2 MB query is parsed
# for its one request and then forgotten.
MAX_CACHED_QUERY_BYTES = 16 * 1024
# A parsed document (with locations) takes about 50 times its text in memory.
_AST_BYTES_PER_CHARACTER = 64


class DocumentRefused(Exception):
    """A document the gateway will not run; ``code`` is ``extensions.code``."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class Prepared:
    """A parsed document and what the gateway needs to know before running it."""

    document: DocumentNode = field(repr=False)
    # The selected operation is a mutation.
    is_mutation: bool
    # Root fields of the selected operation after expanding fragments
    # (aliases included): the number of mutations a request asks for.
    root_fields: int
    # Validation errors once known (cached with the document).
    validation: list[GraphQLError] | None = field(default=None, repr=False)


def _selected(document: DocumentNode, operation_name: str | None) -> OperationDefinitionNode:
    operations = [d for d in document.definitions if isinstance(d, OperationDefinitionNode)]
    if operation_name is not None:
        operations = [o for o in operations if o.name and o.name.value == operation_name]
        if not operations:
            raise DocumentRefused(
                errors.OPERATION_RESOLUTION_FAILURE, f"Unknown operation named '{operation_name}'."
            )
    if len(operations) != 1:
        raise DocumentRefused(
            errors.OPERATION_RESOLUTION_FAILURE,
            "Must provide operation name if query contains multiple operations."
            if operations
            else "The document holds no operation.",
        )
    return operations[0]


class _Sizer:
    """Counts fields with every fragment expanded, memoised per fragment."""

    def __init__(self, fragments: dict[str, FragmentDefinitionNode]) -> None:
        self._fragments = fragments
        self._sizes: dict[str, int] = {}
        self._open: set[str] = set()

    def fields(self, selection_set: SelectionSetNode, depth: int) -> int:
        """Fields under ``selection_set`` (each field and everything below it)."""
        if depth > MAX_NESTING:
            raise DocumentRefused(
                errors.GRAPHQL_VALIDATION_FAILED,
                f"the document nests selections deeper than {MAX_NESTING} levels",
            )
        total = 0
        for selection in selection_set.selections:
            if isinstance(selection, FieldNode):
                total += 1
                if selection.selection_set is not None:
                    total += self.fields(selection.selection_set, depth + 1)
            elif isinstance(selection, InlineFragmentNode):
                total += self.fields(selection.selection_set, depth + 1)
            elif isinstance(selection, FragmentSpreadNode):
                total += self._fragment(selection.name.value, depth + 1)
            if total > MAX_EXPANDED_FIELDS:
                raise DocumentRefused(
                    errors.GRAPHQL_VALIDATION_FAILED,
                    f"the operation expands to more than {MAX_EXPANDED_FIELDS} fields",
                )
        return total

    def _fragment(self, name: str, depth: int) -> int:
        if name in self._sizes:
            return self._sizes[name]
        fragment = self._fragments.get(name)
        if fragment is None or name in self._open:
            return 0  # unknown or cyclic: validation reports it
        self._open.add(name)
        size = self.fields(fragment.selection_set, depth)
        self._open.discard(name)
        self._sizes[name] = size
        return size

    def root_fields(self, selection_set: SelectionSetNode) -> int:
        """Root fields, aliases included, with fragments on the root expanded."""
        return sum(1 for _ in self._root(selection_set, 0))

    def _root(self, selection_set: SelectionSetNode, depth: int) -> Iterator[FieldNode]:
        if depth > MAX_NESTING:
            return
        for selection in selection_set.selections:
            if isinstance(selection, FieldNode):
                if not selection.name.value.startswith("__"):
                    yield selection
            elif isinstance(selection, InlineFragmentNode):
                yield from self._root(selection.selection_set, depth + 1)
            elif isinstance(selection, FragmentSpreadNode):
                fragment = self._fragments.get(selection.name.value)
                if fragment is not None and selection.name.value not in self._open:
                    self._open.add(selection.name.value)
                    yield from self._root(fragment.selection_set, depth + 1)
                    self._open.discard(selection.name.value)


def prepare(query: str, operation_name: str | None) -> Prepared:
    """Parses and sizes one request's document; DocumentRefused when it is
    malformed or beyond the limits."""
    try:
        document = parse(query, max_tokens=MAX_TOKENS)
    except GraphQLError as error:
        raise DocumentRefused(errors.GRAPHQL_PARSE_FAILED, error.message) from None
    fragments = {
        d.name.value: d for d in document.definitions if isinstance(d, FragmentDefinitionNode)
    }
    if len(fragments) > MAX_FRAGMENTS:
        raise DocumentRefused(
            errors.GRAPHQL_VALIDATION_FAILED,
            f"the document defines {len(fragments)} fragments; at most {MAX_FRAGMENTS} are allowed",
        )
    operation = _selected(document, operation_name)
    sizer = _Sizer(fragments)
    sizer.fields(operation.selection_set, 1)
    return Prepared(
        document=document,
        is_mutation=operation.operation == OperationType.MUTATION,
        root_fields=sizer.root_fields(operation.selection_set),
    )


def _cost(entry: Prepared) -> int:
    return int(entry.document.loc.end if entry.document.loc else 0) * _AST_BYTES_PER_CHARACTER


class DocumentCache:
    """Prepared documents by (query text, operation name), bounded in bytes.

    Only documents up to MAX_CACHED_QUERY_BYTES are kept; each entry is
    charged an estimate of its parsed size, and the least recently used ones
    go when the budget is spent.
    """

    def __init__(self, max_bytes: int) -> None:
        self._entries: cachetools.LRUCache[tuple[str, str | None], Prepared] = cachetools.LRUCache(
            maxsize=max_bytes, getsizeof=_cost
        )

    @property
    def size_bytes(self) -> int:
        """The estimated bytes held."""
        return int(self._entries.currsize)

    def prepare(self, query: str, operation_name: str | None) -> Prepared:
        """The prepared document, from the cache when the query is small."""
        key = (query, operation_name)
        found = self._entries.get(key)
        if found is not None:
            return found
        prepared = prepare(query, operation_name)
        if len(query) <= MAX_CACHED_QUERY_BYTES:
            self._entries[key] = prepared
        return prepared

    def remember_validation(
        self, query: str, operation_name: str | None, found: list[GraphQLError]
    ) -> None:
        """Keeps the validation outcome with the cached document (if cached)."""
        key = (query, operation_name)
        entry = self._entries.get(key)
        if entry is not None and entry.validation is None:
            self._entries[key] = Prepared(
                entry.document, entry.is_mutation, entry.root_fields, list(found)
            )


class UsePrepared(SchemaExtension):
    """Runs the document the gateway already prepared instead of parsing the
    query text again, and reuses its cached validation outcome."""

    def __init__(self, cache: DocumentCache) -> None:
        super().__init__()
        self._cache = cache

    def _prepared(self) -> Prepared | None:
        found = getattr(self.execution_context.context, "prepared", None)
        return found if isinstance(found, Prepared) else None

    def on_parse(self) -> Iterator[None]:
        """Hands strawberry the prepared document."""
        prepared = self._prepared()
        if prepared is not None:
            self.execution_context.graphql_document = prepared.document
        yield

    def on_validate(self) -> Iterator[None]:
        """Validates once per cached document."""
        context = self.execution_context
        prepared = self._prepared()
        if prepared is not None and context.graphql_document is prepared.document:
            found = prepared.validation
            if found is None:
                found = validate_document(
                    context.schema._schema, prepared.document, context.validation_rules
                )
                self._cache.remember_validation(context.query or "", context.operation_name, found)
            context.pre_execution_errors = found
        yield
