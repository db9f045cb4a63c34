// Starts GraphiQL (vendored UMD build) against this gateway's endpoint.
// Kept in a file, not inline, so the page's CSP can forbid inline scripts.
(function () {
  "use strict";
  var container = document.getElementById("graphiql");
  var endpoint = new URL(container.dataset.endpoint, window.location.href).toString();
  var fetcher = GraphiQL.createFetcher({ url: endpoint });
  var defaultQuery = [
    "# Put your partner token in the Headers tab below, then run:",
    "mutation {",
    "  createNotificationCallbackConfig(",
    "    input: {",
    '      callbackUrl: "https://testcallbackurl.com"',
    '      apiKey: "newapikey"',
    "      requestTimeoutSeconds: 50",
    '      contactEmail: "partner@email.com"',
    "    }",
    "  ) {",
    "    callbackConfig { id callbackUrl secretExpirationDateTime requestTimeoutSeconds contactEmail }",
    "    secret",
    "  }",
    "}",
    "",
  ].join("\n");
  ReactDOM.createRoot(container).render(
    React.createElement(GraphiQL, {
      fetcher: fetcher,
      defaultQuery: defaultQuery,
      defaultHeaders: '{\n  "Authorization": "Bearer <partner token>"\n}',
      defaultEditorToolsVisibility: "headers",
      // Tokens stay out of the browser's localStorage.
      shouldPersistHeaders: false,
    })
  );
})();
