package httpkit

import (
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
