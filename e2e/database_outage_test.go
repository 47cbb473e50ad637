package e2e_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/orderflow/orderflow/pkg/httpkit"
	"github.com/orderflow/orderflow/pkg/testkit"
)

// get fetches path as customer (X-Consumer-Custom-ID, as Kong sets it;
// "": nobody) and returns the status, the headers and the body.
func get(ctx context.Context, customer, url string) (int, http.Header, []byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return 0, nil, nil, err
	}
	if customer != "" {
		req.Header.Set(httpkit.ConsumerHeader, customer)
	}
	resp, err := client.Do(req)
	if err != nil {
		return 0, nil, nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, body, err
}

// requireUnavailable checks a 503 problem document with Retry-After.
func requireUnavailable(t *testing.T, status int, header http.Header, body []byte) {
	t.Helper()
	require.Equal(t, http.StatusServiceUnavailable, status, "body: %s", body)
	assert.Equal(t, httpkit.ProblemContentType, header.Get("Content-Type"))
	assert.Equal(t, "2", header.Get("Retry-After"))
	var p httpkit.Problem
	require.NoError(t, json.Unmarshal(body, &p), "body: %s", body)
	assert.Equal(t, "unavailable", p.Code)
	assert.Equal(t, http.StatusServiceUnavailable, p.Status)
	assert.NotContains(t, string(body), "127.0.0.1", "the problem reveals nothing of the error")
}

// TestOutage_database_unreachable_answers_503 cuts each service off its
// PostgreSQL database through a proxy (the shared server keeps running for
// the other tests): requests get 503 problem documents with Retry-After,
// never a 500, /readyz says the database is down, and once the database is
// back every accepted order is invoiced exactly once.
func TestOutage_database_unreachable_answers_503(t *testing.T) {
	testkit.Integration(t)
	t.Parallel()
	broker := testkit.NewVhost(t)
	ordersEnv, invoicesEnv := testkit.ServiceEnv(t, broker), testkit.ServiceEnv(t, broker)
	ordersDirect, invoicesDirect := ordersEnv["DATABASE_URL"], invoicesEnv["DATABASE_URL"]
	var ordersProxy, invoicesProxy *testkit.Proxy
	ordersEnv["DATABASE_URL"], ordersProxy = testkit.ProxiedURL(t, ordersDirect)
	invoicesEnv["DATABASE_URL"], invoicesProxy = testkit.ProxiedURL(t, invoicesDirect)
	s := &stack{ordersEnv: ordersEnv, invoicesEnv: invoicesEnv}
	s.orders = testkit.StartService(t, ordersName, ordersApp, ordersEnv)
	s.invoices = testkit.StartService(t, invoicesName, invoicesApp, invoicesEnv)
	s.ordersDB, s.invoicesDB = openDB(t, ordersDirect), openDB(t, invoicesDirect)
	ctx := t.Context()

	code, placed, err := postOrder(ctx, s.orders.URL, "c-before", 100)
	require.NoError(t, err)
	require.Equal(t, http.StatusCreated, code)
	s.waitAllInvoiced(t, 1, 30*time.Second)
	placed, err = getOrder(ctx, s.orders.URL, "c-before", placed.ID)
	require.NoError(t, err)

	ordersProxy.Cut()
	invoicesProxy.Cut()
	for i := range 20 {
		status, header, body, err := postJSON(ctx, "c-during", s.orders.URL+"/orders", fmt.Sprintf(`{"customer_id":"c-during","amount":%d,"currency":"EUR"}`, 1+i))
		require.NoError(t, err)
		requireUnavailable(t, status, header, body)
	}
	for _, url := range []string{
		s.orders.URL + "/orders/" + placed.ID,
		s.orders.URL + "/orders?customer_id=c-before",
		s.invoices.URL + "/invoices?order_id=" + placed.ID,
		s.invoices.URL + "/invoices/" + placed.InvoiceID,
	} {
		status, header, body, err := get(ctx, "c-before", url)
		require.NoError(t, err)
		requireUnavailable(t, status, header, body)
	}
	for _, svc := range []*testkit.Service{s.orders, s.invoices} {
		status, _, body, err := get(ctx, "", svc.URL+"/readyz")
		require.NoError(t, err)
		assert.Equal(t, http.StatusServiceUnavailable, status, "readyz while the database is cut off: %s", body)
		var r testkit.Readiness
		require.NoError(t, json.Unmarshal(body, &r))
		assert.Equal(t, "down", r.Components["database"], "readyz: %s", body)
	}

	ordersProxy.Restore()
	invoicesProxy.Restore()
	testkit.Eventually(t, 30*time.Second, 50*time.Millisecond, func() error {
		code, _, err := postOrder(ctx, s.orders.URL, "c-after", 300)
		if err != nil {
			return err
		}
		if code != http.StatusCreated {
			return fmt.Errorf("POST /orders after the outage: %d", code)
		}
		return nil
	})
	s.waitAllInvoiced(t, 2, 30*time.Second)
}

// postJSON posts body as customer and returns the status, the headers and
// the body.
func postJSON(ctx context.Context, customer, url, body string) (int, http.Header, []byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, strings.NewReader(body))
	if err != nil {
		return 0, nil, nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set(httpkit.ConsumerHeader, customer)
	resp, err := client.Do(req)
	if err != nil {
		return 0, nil, nil, err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, raw, err
}
