package service_test

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/orderflow/orderflow/apps/orders/service"
	"github.com/orderflow/orderflow/pkg/httpkit"
	"github.com/orderflow/orderflow/pkg/testkit"
)

// With RabbitMQ out of reach the outbox only grows: orders are accepted up
// to OUTBOX_MAX_BACKLOG waiting events; then POST /orders waits for room
// and, finding none, is shed with a 503 problem and Retry-After, /readyz
// says why and the shed counter counts. Once the broker is back, every
// accepted order's event is published and orders are accepted again.
func TestOrders_shed_load_over_the_outbox_bound(t *testing.T) {
	testkit.Integration(t)
	t.Parallel()
	broker := testkit.NewVhost(t)
	viaProxy, proxy := testkit.ProxiedURL(t, broker)
	proxy.Cut()
	env := testkit.ServiceEnv(t, viaProxy)
	env["OUTBOX_MAX_BACKLOG"] = "3"
	svc := testkit.StartServiceNoWait(t, service.Name, service.Run, env)
	testkit.Eventually(t, 20*time.Second, 20*time.Millisecond, func() error {
		_, err := testkit.GetReadiness(svc.URL)
		return err
	})
	const body = `{"customer_id":"c-1","amount":1999,"currency":"EUR"}`

	// The backlog is counted every 100 ms: orders go on being accepted until
	// a count finds more than three waiting.
	accepted := 0
	var shed *http.Response
	var problem httpkit.Problem
	testkit.Eventually(t, 10*time.Second, 50*time.Millisecond, func() error {
		resp, b := do(t, http.MethodPost, svc.URL+"/orders", body, nil)
		if resp.StatusCode == http.StatusCreated {
			accepted++
			return fmt.Errorf("%d orders accepted, none shed yet", accepted)
		}
		shed, problem = resp, decode[httpkit.Problem](t, b)
		return nil
	})
	require.Equal(t, http.StatusServiceUnavailable, shed.StatusCode)
	require.Greater(t, accepted, 3, "orders are accepted up to the bound")
	assert.Equal(t, "application/problem+json", shed.Header.Get("Content-Type"))
	assert.Equal(t, "2", shed.Header.Get("Retry-After"))
	assert.Equal(t, "overloaded", problem.Code)
	assert.Contains(t, problem.Detail, "OUTBOX_MAX_BACKLOG")

	resp, b := do(t, http.MethodGet, svc.URL+"/readyz", "", nil)
	require.Equal(t, http.StatusOK, resp.StatusCode, "shedding is not unready: reads and consumers go on")
	ready := decode[struct {
		Status     string            `json:"status"`
		Components map[string]string `json:"components"`
		Details    map[string]string `json:"details"`
	}](t, b)
	assert.Equal(t, httpkit.StateShedding, ready.Components["outbox"])
	assert.Contains(t, ready.Details["outbox"], "POST /orders waits up to 1s for room, then answers 503")

	resp, b = do(t, http.MethodGet, svc.URL+"/metrics", "", nil)
	require.Equal(t, http.StatusOK, resp.StatusCode)
	assert.Regexp(t, `(?m)^orderflow_orders_shed_total\{[^}]*\} [1-9]`, string(b))
	assert.Contains(t, string(b), `orderflow_component_up{component="outbox"`)

	proxy.Restore()
	testkit.Eventually(t, 30*time.Second, 50*time.Millisecond, func() error {
		n, err := testkit.QueueMessages(broker, invoicesQueue)
		if err != nil || n != accepted {
			return fmt.Errorf("%d of the %d accepted orders' events in the invoices queue: %w", n, accepted, err)
		}
		return nil
	})
	testkit.Eventually(t, 10*time.Second, 50*time.Millisecond, func() error {
		resp, b := do(t, http.MethodPost, svc.URL+"/orders", body, nil)
		if resp.StatusCode != http.StatusCreated {
			return fmt.Errorf("POST /orders answered %d after the outbox drained: %s", resp.StatusCode, strings.TrimSpace(string(b)))
		}
		return nil
	})
}
