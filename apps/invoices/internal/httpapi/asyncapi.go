package httpapi

import (
	"github.com/orderflow/orderflow/pkg/events"
	"github.com/orderflow/orderflow/pkg/httpkit"
)

// serveAsyncAPI serves the AsyncAPI 3.0 document of the events
// (pkg/events/asyncapi.yaml) at GET /asyncapi.yaml, YAML like the OpenAPI
// document beside it.
var serveAsyncAPI = httpkit.OpenAPIDocument(events.AsyncAPI())
