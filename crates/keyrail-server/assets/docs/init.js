// Starts Swagger UI on keyrail's /docs page. Its own file, not an inline script: the page's
// Content-Security-Policy allows scripts from this server only.
"use strict";
window.ui = SwaggerUIBundle({
  // The document of the server that serves this page, and no other: the URL is not read from
  // the query string, and there is no top bar to type another one into.
  url: "/api/v1/openapi.json",
  queryConfigEnabled: false,
  dom_id: "#swagger-ui",
  presets: [SwaggerUIBundle.presets.apis],
  layout: "BaseLayout",
  // Operations grouped by tag, in the order the document lists them; a filter box by tag.
  filter: true,
  docExpansion: "list",
  defaultModelsExpandDepth: 0,
  deepLinking: true,
  displayOperationId: false,
  displayRequestDuration: true,
  showExtensions: false,
  // "Try it out" is open from the start and sends the request to this server with what the
  // Authorize dialog holds (a key or token as Bearer, a key or client credentials as Basic).
  tryItOutEnabled: true,
  // Credentials stay in the page's memory: nothing in localStorage, gone on reload.
  persistAuthorization: false,
  // No schema validator badge: it would send the document to validator.swagger.io.
  validatorUrl: null,
});
