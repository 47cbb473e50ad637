// Package openapitest holds a service's HTTP handler to the OpenAPI document
// it serves: every exchange the tests make is validated, request and
// response, against the document with kin-openapi, and the tests can check
// that each documented response was produced and that the router serves
// exactly the documented operations. Import it from tests only.
package openapitest

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/gorillamux"
	"github.com/go-chi/chi/v5"
	"github.com/google/uuid"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/orderflow/orderflow/pkg/httpkit"
)

// Contract is the served OpenAPI document with a router over its operations.
type Contract struct {
	Doc    *openapi3.T
	Router routers.Router
}

// Load fetches GET /openapi.yaml from h, so that the document the tests
// hold the API to is the one the service serves, checks that it is served
// as contentType, and validates it.
func Load(tb testing.TB, h http.Handler, contentType string) Contract {
	tb.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequestWithContext(tb.Context(), http.MethodGet, "/openapi.yaml", nil))
	require.Equal(tb, http.StatusOK, rec.Code)
	require.Equal(tb, contentType, rec.Header().Get("Content-Type"))
	doc, err := openapi3.NewLoader().LoadFromData(rec.Body.Bytes())
	require.NoError(tb, err)
	require.True(tb, doc.IsOpenAPI31OrLater(), "openapi %s", doc.OpenAPI)
	require.NoError(tb, doc.Validate(tb.Context()))
	router, err := gorillamux.NewRouter(doc)
	require.NoError(tb, err)
	return Contract{Doc: doc, Router: router}
}

// Check holds one exchange against the document: the request must be valid
// exactly when reqValid says so (the handler and the document agree on what
// is acceptable), and the response must always match the document. newReq
// is called twice, for the validator and for h. It returns the operation's
// id.
func (c Contract) Check(tb testing.TB, h http.Handler, newReq func() *http.Request, reqValid bool, status int) string {
	tb.Helper()
	ctx := tb.Context()
	opts := &openapi3filter.Options{IncludeResponseStatus: true, MultiError: true, AuthenticationFunc: apiKeyPresent}

	req := newReq()
	route, params, err := c.Router.FindRoute(req)
	require.NoError(tb, err, "the document has no operation for %s %s", req.Method, req.URL.Path)
	in := &openapi3filter.RequestValidationInput{Request: req, PathParams: params, Route: route, Options: opts}
	err = openapi3filter.ValidateRequest(ctx, in)
	if reqValid {
		require.NoError(tb, err, "the document rejects a request the API is meant to accept")
	} else {
		require.Error(tb, err, "the document accepts a request the API rejects")
	}

	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, newReq())
	require.Equal(tb, status, rec.Code, "body: %s", rec.Body.String())
	require.NoError(tb, openapi3filter.ValidateResponse(ctx, &openapi3filter.ResponseValidationInput{
		RequestValidationInput: in,
		Status:                 rec.Code,
		Header:                 rec.Header(),
		Body:                   io.NopCloser(strings.NewReader(rec.Body.String())),
		Options:                opts,
	}), "the response does not match the document; body: %s", rec.Body.String())
	return route.Operation.OperationID
}

// apiKeyPresent is the document's security as a request validator sees it:
// an apiKey scheme in a header is met when the request carries exactly one
// non-empty value of that header. Whether the key or the consumer id is a
// valid one is the gateway's and the service's to say, not the document's.
func apiKeyPresent(_ context.Context, in *openapi3filter.AuthenticationInput) error {
	s := in.SecurityScheme
	if s.Type != "apiKey" || s.In != "header" {
		return fmt.Errorf("security scheme %s: only apiKey in a header is checked here", in.SecuritySchemeName)
	}
	if v := in.RequestValidationInput.Request.Header.Values(s.Name); len(v) != 1 || v[0] == "" {
		return fmt.Errorf("security scheme %s: no %s header", in.SecuritySchemeName, s.Name)
	}
	return nil
}

// GatewayOnly is the extension that marks a response the gateway (Kong)
// sends and the service never does, such as Kong's 429: the service's
// tests cannot produce it, so Cover does not ask for it.
const GatewayOnly = "x-gateway-only"

// DocumentedStatuses lists "operationId status" for every response of the
// document the service itself can produce (not the GatewayOnly ones).
func (c Contract) DocumentedStatuses() []string {
	var out []string
	for _, item := range c.Doc.Paths.Map() {
		for _, op := range item.Operations() {
			for status, ref := range op.Responses.Map() {
				if ref.Value != nil && ref.Value.Extensions[GatewayOnly] == true {
					continue
				}
				out = append(out, op.OperationID+" "+status)
			}
		}
	}
	slices.Sort(out)
	return out
}

// Coverage records which documented responses the exchanges produced. It is
// safe for parallel subtests.
type Coverage struct {
	mu   sync.Mutex
	seen map[string]bool
}

// Cover returns a Coverage that, once tb and all its subtests are done,
// asserts that the exchanges produced each documented response.
func (c Contract) Cover(tb testing.TB) *Coverage {
	tb.Helper()
	cov := &Coverage{}
	tb.Cleanup(func() {
		for _, want := range c.DocumentedStatuses() {
			assert.True(tb, cov.has(want), "no exchange produces the documented response %q", want)
		}
	})
	return cov
}

// Add records that an exchange of operation op produced status.
func (c *Coverage) Add(op string, status int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.seen == nil {
		c.seen = map[string]bool{}
	}
	c.seen[op+" "+strconv.Itoa(status)] = true
}

func (c *Coverage) has(key string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.seen[key]
}

// RequireUndocumented fails tb if the document has an operation for req.
func (c Contract) RequireUndocumented(tb testing.TB, req *http.Request) {
	tb.Helper()
	_, _, err := c.Router.FindRoute(req)
	require.Error(tb, err, "the document describes %s %s", req.Method, req.URL.Path)
}

// RequireProblem checks that rec has status and is a problem document that
// the document's Problem schema accepts.
func (c Contract) RequireProblem(tb testing.TB, rec *httptest.ResponseRecorder, status int) {
	tb.Helper()
	problem := c.Doc.Components.Schemas["Problem"]
	require.NotNil(tb, problem)
	require.Equal(tb, status, rec.Code)
	require.Equal(tb, httpkit.ProblemContentType, rec.Header().Get("Content-Type"))
	var body any
	require.NoError(tb, json.Unmarshal(rec.Body.Bytes(), &body))
	assert.NoError(tb, problem.Value.VisitJSON(body, openapi3.EnableJSONSchema2020()))
}

// AssertServesTheDocument walks h, which must be a chi router: every route
// it serves, but for the undocumented ones, is in the document and every
// operation of the document is served.
func (c Contract) AssertServesTheDocument(tb testing.TB, h http.Handler, undocumented ...string) {
	tb.Helper()
	var served []string
	routes, ok := h.(chi.Routes)
	require.True(tb, ok, "platform.Handler returns a chi router")
	require.NoError(tb, chi.Walk(routes, func(method, route string, _ http.Handler, _ ...func(http.Handler) http.Handler) error {
		if !slices.Contains(undocumented, route) {
			served = append(served, method+" "+route)
		}
		return nil
	}))
	var documented []string
	for path, item := range c.Doc.Paths.Map() {
		for method := range item.Operations() {
			documented = append(documented, method+" "+path)
		}
	}
	assert.ElementsMatch(tb, served, documented)
}

// AssertNotOffered checks that the document offers GET on none of paths at
// server, the URL of one of its servers.
func (c Contract) AssertNotOffered(tb testing.TB, server string, paths ...string) {
	tb.Helper()
	for _, p := range paths {
		req := httptest.NewRequestWithContext(tb.Context(), http.MethodGet, server+p, nil)
		_, _, err := c.Router.FindRoute(req)
		assert.Error(tb, err, "the document offers %s at %s", p, server)
	}
}

// AssertSecured checks that h and the document agree on which operations
// need an authenticated caller: a request to each operation with none of
// the document's security headers gets 401 exactly when the operation has
// security requirements (its own, or the document's), and a problem
// document then. Path parameters are filled with a random UUID.
func (c Contract) AssertSecured(tb testing.TB, h http.Handler) {
	tb.Helper()
	for path, item := range c.Doc.Paths.Map() {
		for method, op := range item.Operations() {
			security := c.Doc.Security
			if op.Security != nil {
				security = *op.Security
			}
			target := pathParam.ReplaceAllString(path, uuid.NewString())
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, httptest.NewRequestWithContext(tb.Context(), method, target, nil))
			if len(security) == 0 {
				assert.NotEqual(tb, http.StatusUnauthorized, rec.Code, "%s %s is open in the document", method, path)
				continue
			}
			if assert.Equal(tb, http.StatusUnauthorized, rec.Code, "%s %s needs a caller in the document", method, path) {
				c.RequireProblem(tb, rec, http.StatusUnauthorized)
			}
		}
	}
}

// pathParam matches a path template's parameter, such as {id}.
var pathParam = regexp.MustCompile(`\{[^}]+\}`)
