#!/usr/bin/env bash
# Copies the GraphiQL page's assets from node_modules (versions pinned in
# package-lock.json) into gateway/hookkeeper/gateway/static/graphiql/, which the gateway serves
# itself: partners' browsers may not reach a CDN. Run by `make install`.
set -euo pipefail
cd "$(dirname "$0")/.."
out=gateway/hookkeeper/gateway/static/graphiql
mkdir -p "$out"
cp node_modules/graphiql/graphiql.min.js node_modules/graphiql/graphiql.min.css "$out/"
cp node_modules/react/umd/react.production.min.js "$out/"
cp node_modules/react-dom/umd/react-dom.production.min.js "$out/"
cp node_modules/graphiql/LICENSE "$out/LICENSE.graphiql"
cp node_modules/react/LICENSE "$out/LICENSE.react"
echo "vendor-graphiql: $(node -p 'require("./node_modules/graphiql/package.json").version') -> $out"
