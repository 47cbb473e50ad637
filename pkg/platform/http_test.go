package platform_test

import (
	"net"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/orderflow/orderflow/pkg/platform"
)

func TestListen_on_the_configured_host(t *testing.T) {
	t.Parallel()
	cfg, err := platform.LoadConfig("orders", 0, env(nil))
	require.NoError(t, err)
	ln, err := platform.Listen(t.Context(), cfg.Host, cfg.Port)
	require.NoError(t, err)
	t.Cleanup(func() { _ = ln.Close() })
	addr := ln.Addr().(*net.TCPAddr)
	assert.True(t, addr.IP.Equal(net.IPv4(127, 0, 0, 1)), "loopback only by default, got %s", addr)

	_, err = platform.Listen(t.Context(), "192.0.2.1", 0)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "listen on 192.0.2.1:0")
}

func TestHealthcheck_asks_loopback_for_an_unspecified_host(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/healthz" {
			http.NotFound(w, r)
		}
	}))
	t.Cleanup(srv.Close)
	port := srv.Listener.Addr().(*net.TCPAddr).Port
	for _, host := range []string{"0.0.0.0", "::", "127.0.0.1"} {
		assert.NoError(t, platform.Healthcheck(t.Context(), host, port), host)
	}
}
