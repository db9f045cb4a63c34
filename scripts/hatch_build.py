"""Hatch build hook: refuses to build a wheel or sdist without GraphiQL's
assets. They are git-ignored build output (``make install`` vendors them from
node_modules with scripts/vendor-graphiql.sh), so a build from a bare
checkout would otherwise give a gateway that cannot serve GraphiQL, silently.
Editable installs (``make install`` itself, before it vendors) are let through.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hatchling.builders.hooks.plugin.interface import BuildHookInterface

ASSET = "gateway/hookkeeper/gateway/static/graphiql/graphiql.min.js"


class GraphiqlAssetsHook(BuildHookInterface):  # type: ignore[type-arg]
    """Fails the build when GraphiQL's assets are missing."""

    PLUGIN_NAME = "graphiql-assets"

    def initialize(self, version: str, build_data: dict[str, Any]) -> None:
        """Checks for the assets before any file is collected."""
        if version == "editable":
            return
        if not (Path(self.root) / ASSET).is_file():
            raise RuntimeError(
                f"{ASSET} is missing: run `make install` (or scripts/vendor-graphiql.sh"
                " after `npm ci`) before building, or the gateway cannot serve GraphiQL"
            )
