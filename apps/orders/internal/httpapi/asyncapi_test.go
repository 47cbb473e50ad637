package httpapi_test

import (
	"net/http"
	"testing"

	"github.com/stretchr/testify/assert"

	"github.com/orderflow/orderflow/apps/orders/internal/httpapi"
	"github.com/orderflow/orderflow/pkg/events"
)

func TestRoutes_serve_the_AsyncAPI_document(t *testing.T) {
	t.Parallel()
	rec := do(t, newHandler(t, &fakeApp{}), http.MethodGet, "/asyncapi.yaml", "", "", nil)
	assert.Equal(t, http.StatusOK, rec.Code)
	assert.Equal(t, httpapi.OpenAPIContentType, rec.Header().Get("Content-Type"))
	assert.Equal(t, events.AsyncAPIContentType, rec.Header().Get("Content-Type"))
	assert.Equal(t, string(events.AsyncAPI()), rec.Body.String())
}
