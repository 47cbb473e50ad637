package testkit

import (
	"net/url"
	"testing"
)

// ProxiedURL returns rawURL (a PostgreSQL or RabbitMQ URL) with its host
// replaced by a Proxy's, and the proxy: a test cuts one process off its
// database or broker with proxy.Cut without disturbing the tests that share
// the server.
func ProxiedURL(tb testing.TB, rawURL string) (string, *Proxy) {
	tb.Helper()
	u, err := url.Parse(rawURL)
	if err != nil {
		tb.Fatalf("parse url: %v", err)
	}
	p := NewProxy(tb, u.Host)
	u.Host = p.Addr()
	return u.String(), p
}
