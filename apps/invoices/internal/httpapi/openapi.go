package httpapi

import (
	_ "embed" // the OpenAPI document

	"github.com/orderflow/orderflow/pkg/httpkit"
)

// openAPIDocument is the service's OpenAPI 3.1 document. Tests hold the
// handlers' real requests and responses against it, so it cannot drift.
//
//go:embed openapi.yaml
var openAPIDocument []byte

// OpenAPIContentType is the media type GET /openapi.yaml is served with.
const OpenAPIContentType = httpkit.OpenAPIContentType

// serveOpenAPI serves the OpenAPI document.
var serveOpenAPI = httpkit.OpenAPIDocument(openAPIDocument)
