// Package httpkit holds the HTTP plumbing both services share: RFC 9457
// problem documents, JSON responses, request decoding rules, correlation ids,
// the authenticated caller (RequireConsumer), and the health endpoints.
package httpkit

import (
	"encoding/json"
	"log/slog"
	"net/http"
	"strings"

	"github.com/go-chi/chi/v5"
)

// ProblemContentType is the media type of RFC 9457 problem documents.
const ProblemContentType = "application/problem+json"

// Problem is an RFC 9457 problem document with the stable Code extension
// member clients switch on.
type Problem struct {
	Type     string `json:"type"`
	Title    string `json:"title"`
	Status   int    `json:"status"`
	Detail   string `json:"detail,omitempty"`
	Instance string `json:"instance,omitempty"`
	Code     string `json:"code"`
	// Errors lists field-level problems of an invalid request.
	Errors []FieldError `json:"errors,omitempty"`
}

// FieldError names one invalid field of a request.
type FieldError struct {
	Field   string `json:"field"`
	Message string `json:"message"`
}

// WriteProblem writes a problem document. The type is a URN built from the
// code, so it is stable and needs no documentation server.
func WriteProblem(w http.ResponseWriter, r *http.Request, p Problem) {
	if p.Type == "" {
		p.Type = "urn:orderflow:problem:" + p.Code
	}
	if p.Title == "" {
		p.Title = http.StatusText(p.Status)
	}
	if p.Instance == "" && r != nil {
		p.Instance = r.URL.Path
	}
	w.Header().Set("Content-Type", ProblemContentType)
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(p.Status)
	_ = json.NewEncoder(w).Encode(p)
}

// Error writes a problem with the given status, code and detail.
func Error(w http.ResponseWriter, r *http.Request, status int, code, detail string) {
	WriteProblem(w, r, Problem{Status: status, Code: code, Detail: detail})
}

// Internal logs err and writes a 500 problem that reveals nothing of it.
func Internal(w http.ResponseWriter, r *http.Request, log *slog.Logger, err error) {
	log.ErrorContext(r.Context(), "request failed", "error", err, "method", r.Method, "path", r.URL.Path)
	Error(w, r, http.StatusInternalServerError, "internal", "internal error")
}

// JSON writes v as a JSON response.
func JSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// NotFound answers unknown routes with a problem document.
func NotFound(w http.ResponseWriter, r *http.Request) {
	Error(w, r, http.StatusNotFound, "route_not_found", "no route for "+r.Method+" "+r.URL.Path)
}

// MethodNotAllowed answers a known route with a wrong method. It lists the
// route's methods in Allow (RFC 9110 §15.5.6), which chi's own 405 handler
// does and a custom one must do itself.
func MethodNotAllowed(w http.ResponseWriter, r *http.Request) {
	if rctx := chi.RouteContext(r.Context()); rctx != nil && rctx.Routes != nil {
		var allow []string
		for _, m := range []string{http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete, http.MethodOptions} {
			if rctx.Routes.Match(chi.NewRouteContext(), m, r.URL.Path) {
				allow = append(allow, m)
			}
		}
		if len(allow) > 0 {
			w.Header().Set("Allow", strings.Join(allow, ", "))
		}
	}
	Error(w, r, http.StatusMethodNotAllowed, "method_not_allowed", r.Method+" is not allowed on "+r.URL.Path)
}

// OpenAPIContentType is the media type the services' OpenAPI documents are
// served with.
const OpenAPIContentType = "application/yaml"

// OpenAPIDocument serves a service's OpenAPI document (embedded in the
// binary) at GET /openapi.yaml.
func OpenAPIDocument(doc []byte) http.HandlerFunc {
	return func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", OpenAPIContentType)
		w.Header().Set("X-Content-Type-Options", "nosniff")
		_, _ = w.Write(doc)
	}
}
