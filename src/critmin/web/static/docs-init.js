// Swagger UI on the app's own OpenAPI spec (served with the package: no CDN).
window.ui = SwaggerUIBundle({url: "/openapi.json", dom_id: "#swagger-ui", deepLinking: true, persistAuthorization: false});
