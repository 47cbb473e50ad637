package httpapi

import (
	_ "embed" // the OpenAPI document
	"net/http"
)

// openAPIDocument is the service's OpenAPI 3.1 document. Tests hold the
// handlers' real requests and responses against it, so it cannot drift.
//
//go:embed openapi.yaml
var openAPIDocument []byte

// OpenAPIContentType is the media type GET /openapi.yaml is served with.
const OpenAPIContentType = "application/yaml"

// serveOpenAPI serves the OpenAPI document.
func serveOpenAPI(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", OpenAPIContentType)
	w.Header().Set("X-Content-Type-Options", "nosniff")
	_, _ = w.Write(openAPIDocument)
}
