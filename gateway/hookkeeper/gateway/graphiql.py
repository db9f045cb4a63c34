"""The GraphiQL page: an HTML shell loading the vendored assets from
``/graphql/static/`` (copied there by ``scripts/vendor-graphiql.sh``); no CDN.
"""

from __future__ import annotations

from html import escape
from pathlib import Path

STATIC = Path(__file__).parent / "static"
GRAPHIQL_ASSETS = STATIC / "graphiql"

# Scripts only from the gateway itself; GraphiQL sets inline styles.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; font-src 'self' data:; connect-src 'self'; "
    "frame-ancestors 'none'; base-uri 'none'"
)

_PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Hookkeeper GraphQL</title>
<link rel="stylesheet" href="{static}/graphiql/graphiql.min.css">
<style>html, body, #graphiql {{ height: 100%; margin: 0; }}</style>
</head>
<body>
<div id="graphiql" data-endpoint="{endpoint}">Loading GraphiQL…</div>
<script src="{static}/graphiql/react.production.min.js"></script>
<script src="{static}/graphiql/react-dom.production.min.js"></script>
<script src="{static}/graphiql/graphiql.min.js"></script>
<script src="{static}/init-graphiql.js"></script>
</body>
</html>
"""

_MISSING = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Hookkeeper GraphQL</title></head>
<body><p>GraphiQL's assets are not installed on this gateway: run
<code>make install</code> (it runs <code>scripts/vendor-graphiql.sh</code>).
POST GraphQL operations to <code>{endpoint}</code>.</p></body></html>
"""


def graphiql_page(endpoint: str) -> str:
    """The HTML of the GraphiQL page for the GraphQL endpoint at ``endpoint``."""
    path = escape(endpoint, quote=True)
    if not (GRAPHIQL_ASSETS / "graphiql.min.js").is_file():
        return _MISSING.format(endpoint=path)
    return _PAGE.format(endpoint=path, static=f"{path.rstrip('/')}/static")
