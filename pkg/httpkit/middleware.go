package httpkit

import (
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"runtime/debug"

	"github.com/google/uuid"

	"github.com/orderflow/orderflow/pkg/observability"
)

// maxCorrelationIDLen bounds a client-supplied correlation id, which ends up
// in every log line and event.
const maxCorrelationIDLen = 128

// CorrelationID takes the request's X-Correlation-ID (set by Kong's
// correlation-id plugin) or makes one, puts it in the request context and
// echoes it in the response.
func CorrelationID(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id := r.Header.Get(observability.CorrelationHeader)
		if !validCorrelationID(id) {
			id = uuid.NewString()
		}
		w.Header().Set(observability.CorrelationHeader, id)
		next.ServeHTTP(w, r.WithContext(observability.WithCorrelationID(r.Context(), id)))
	})
}

func validCorrelationID(id string) bool {
	if id == "" || len(id) > maxCorrelationIDLen {
		return false
	}
	for _, c := range id {
		if c < 0x21 || c > 0x7e {
			return false
		}
	}
	return true
}

// Recoverer turns a handler panic into a logged 500 problem, so that one bad
// request never takes the process down.
func Recoverer(log *slog.Logger) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			defer func() {
				if v := recover(); v != nil {
					if err, ok := v.(error); ok && errors.Is(err, http.ErrAbortHandler) {
						panic(v)
					}
					Internal(w, r, log, fmt.Errorf("panic: %v\n%s", v, debug.Stack()))
				}
			}()
			next.ServeHTTP(w, r)
		})
	}
}
