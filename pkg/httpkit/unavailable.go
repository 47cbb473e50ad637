package httpkit

import (
	"context"
	"log/slog"
	"net/http"
	"strconv"
	"time"
)

// RetryAfter is how long a 503 asks the client to wait before it retries:
// about how long PostgreSQL takes to restart or fail over.
const RetryAfter = 2 * time.Second

// Unavailable logs err and writes a 503 problem with Retry-After: a
// dependency the request needs (dependency names it: "database") is down, and
// the same request may succeed later. A 500 stays for bugs. The problem
// reveals nothing of err.
func Unavailable(w http.ResponseWriter, r *http.Request, log *slog.Logger, dependency string, err error) {
	log.WarnContext(r.Context(), "request failed: dependency unavailable", "dependency", dependency,
		"error", err, "method", r.Method, "path", r.URL.Path)
	w.Header().Set("Retry-After", strconv.Itoa(int(RetryAfter/time.Second)))
	Error(w, r, http.StatusServiceUnavailable, "unavailable", "the "+dependency+" is unavailable; retry later")
}

// Shed returns a middleware that holds back and sheds load: admit decides
// whether a request may go on, and may wait for room before it answers (it
// ends its wait when the request's context ends). A request admit refuses
// gets a 503 with a problem document (detail is the reason admit gives) and
// Retry-After instead of next, and onShed (if set) is called. Nothing of a
// shed request was done, so the client can retry it as it is, with the same
// Idempotency-Key.
func Shed(admit func(ctx context.Context) (reason string, ok bool), onShed func(r *http.Request)) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			reason, ok := admit(r.Context())
			if ok {
				next.ServeHTTP(w, r)
				return
			}
			if onShed != nil {
				onShed(r)
			}
			w.Header().Set("Retry-After", strconv.Itoa(int(RetryAfter/time.Second)))
			Error(w, r, http.StatusServiceUnavailable, "overloaded", reason+"; retry later")
		})
	}
}
