package testkit

import (
	"net/url"
	"testing"
)

// ProxiedDatabase returns databaseURL with its host replaced by a Proxy's,
// and the proxy: a test cuts one process off its PostgreSQL database with
// proxy.Cut without disturbing the tests that share the server.
func ProxiedDatabase(tb testing.TB, databaseURL string) (string, *Proxy) {
	tb.Helper()
	u, err := url.Parse(databaseURL)
	if err != nil {
		tb.Fatalf("parse database url: %v", err)
	}
	p := NewProxy(tb, u.Host)
	u.Host = p.Addr()
	return u.String(), p
}
