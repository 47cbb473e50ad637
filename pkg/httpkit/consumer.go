package httpkit

import (
	"context"
	"net/http"
	"strings"
	"unicode"
	"unicode/utf8"
)

// ConsumerHeader is the header Kong's key-auth plugin sets on the upstream
// request to the custom_id of the consumer whose API key it accepted. Kong
// overwrites (or, for a consumer without a custom_id, removes) a value the
// client sent, so behind Kong it names the authenticated caller. The
// services trust it because only Kong can reach them (docs/security.md).
const ConsumerHeader = "X-Consumer-Custom-ID"

// MaxConsumerIDLen bounds a consumer id, in characters: the customer id
// rule of the API (1-64 printable characters).
const MaxConsumerIDLen = 64

type consumerKey struct{}

// WithConsumer returns a context carrying the caller's consumer id.
func WithConsumer(ctx context.Context, id string) context.Context {
	return context.WithValue(ctx, consumerKey{}, id)
}

// Consumer returns the caller's consumer id that RequireConsumer put in the
// context, and whether there is one.
func Consumer(ctx context.Context) (string, bool) {
	id, ok := ctx.Value(consumerKey{}).(string)
	return id, ok && id != ""
}

// RequireConsumer lets a request through only when it names its caller in
// exactly one ConsumerHeader holding a valid consumer id (1-64 printable
// characters, not only spaces, valid UTF-8), which it puts in the context
// for Consumer. Otherwise it answers 401 unauthenticated: a request that
// reached the service without passing Kong's authentication is refused
// before any handler reads its input.
func RequireConsumer(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		values := r.Header.Values(ConsumerHeader)
		if len(values) != 1 || !ValidConsumerID(values[0]) {
			w.Header().Set("WWW-Authenticate", `Key realm="orderflow"`)
			Error(w, r, http.StatusUnauthorized, "unauthenticated",
				"the request carries no authenticated caller: send it through the gateway with an API key")
			return
		}
		next.ServeHTTP(w, r.WithContext(WithConsumer(r.Context(), values[0])))
	})
}

// ValidConsumerID reports whether id is a valid consumer id: 1 to
// MaxConsumerIDLen printable characters of valid UTF-8, not only spaces.
func ValidConsumerID(id string) bool {
	if id == "" || !utf8.ValidString(id) || utf8.RuneCountInString(id) > MaxConsumerIDLen {
		return false
	}
	for _, c := range id {
		if !unicode.IsPrint(c) {
			return false
		}
	}
	return strings.TrimSpace(id) != ""
}
