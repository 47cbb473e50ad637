package e2e_test

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	invoices "github.com/orderflow/orderflow/apps/invoices/service"
	orders "github.com/orderflow/orderflow/apps/orders/service"
	"github.com/orderflow/orderflow/pkg/httpkit"
	"github.com/orderflow/orderflow/pkg/observability"
	"github.com/orderflow/orderflow/pkg/testkit"
)

var client = &http.Client{Timeout: 10 * time.Second}

const (
	ordersName   = orders.Name
	invoicesName = invoices.Name
)

var (
	ordersApp   = orders.Run
	invoicesApp = invoices.Run
)

// The handlers, as the services name them in their topologies.
const (
	issueInvoiceHandler = "invoices.IssueInvoiceOnOrderPlaced"
	markInvoicedHandler = "orders.MarkOrderInvoicedOnInvoiceIssued"
)

// getOrder fetches one of customer's orders, as Kong would pass the
// request on: the customer named in X-Consumer-Custom-ID.
func getOrder(ctx context.Context, baseURL, customer, id string) (order, error) {
	var o order
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, baseURL+"/orders/"+id, nil)
	if err != nil {
		return o, err
	}
	req.Header.Set(httpkit.ConsumerHeader, customer)
	resp, err := client.Do(req)
	if err != nil {
		return o, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return o, fmt.Errorf("get order %s: %s", id, resp.Status)
	}
	return o, json.NewDecoder(resp.Body).Decode(&o)
}

type order struct {
	ID         string `json:"id"`
	CustomerID string `json:"customer_id"`
	Status     string `json:"status"`
	InvoiceID  string `json:"invoice_id"`
}

// postOrder places an order as customer and returns the status code and
// the order.
func postOrder(ctx context.Context, baseURL, customer string, amount int64) (int, order, error) {
	body := fmt.Sprintf(`{"customer_id":%q,"amount":%d,"currency":"EUR"}`, customer, amount)
	return postOrderWith(ctx, baseURL, customer, body, nil)
}

// postOrderWith posts body as customer (X-Consumer-Custom-ID, as Kong sets
// it) with extra headers.
func postOrderWith(ctx context.Context, baseURL, customer, body string, headers map[string]string) (int, order, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, baseURL+"/orders", bytes.NewBufferString(body))
	if err != nil {
		return 0, order{}, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set(httpkit.ConsumerHeader, customer)
	for k, v := range headers {
		req.Header.Set(k, v)
	}
	resp, err := client.Do(req)
	if err != nil {
		return 0, order{}, err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		return resp.StatusCode, order{}, err
	}
	var o order
	if resp.StatusCode == http.StatusCreated {
		if err := json.Unmarshal(raw, &o); err != nil {
			return resp.StatusCode, o, err
		}
	}
	return resp.StatusCode, o, nil
}

// stack is both services on one broker, each with its own fresh database.
type stack struct {
	orders, invoices       *testkit.Service
	ordersDB, invoicesDB   *sql.DB
	ordersEnv, invoicesEnv map[string]string
}

// startStack starts both services. ordersBroker and invoicesBroker are the
// AMQP URLs each one uses (the same vhost, possibly through a proxy).
func startStack(t *testing.T, ordersBroker, invoicesBroker string, opts ...observability.SetupOption) *stack {
	t.Helper()
	return startStackWith(t, ordersBroker, invoicesBroker, nil, opts...)
}

// startStackWith starts both services with env's variables set in both.
func startStackWith(t *testing.T, ordersBroker, invoicesBroker string, env map[string]string, opts ...observability.SetupOption) *stack {
	t.Helper()
	s := &stack{
		ordersEnv:   testkit.ServiceEnv(t, ordersBroker),
		invoicesEnv: testkit.ServiceEnv(t, invoicesBroker),
	}
	maps.Copy(s.ordersEnv, env)
	maps.Copy(s.invoicesEnv, env)
	s.orders = testkit.StartService(t, ordersName, ordersApp, s.ordersEnv, opts...)
	s.invoices = testkit.StartService(t, invoicesName, invoicesApp, s.invoicesEnv, opts...)
	s.ordersDB = openDB(t, s.ordersEnv["DATABASE_URL"])
	s.invoicesDB = openDB(t, s.invoicesEnv["DATABASE_URL"])
	return s
}

func openDB(t *testing.T, url string) *sql.DB {
	t.Helper()
	db, err := sql.Open("pgx", url)
	if err != nil {
		t.Fatalf("open %s: %v", url, err)
	}
	t.Cleanup(func() { _ = db.Close() })
	return db
}

// flowCounts is what the two databases say about the flow.
type flowCounts struct {
	orders, invoiced, invoices, invoicedOrders int
}

func (s *stack) counts(ctx context.Context) (flowCounts, error) {
	var c flowCounts
	if err := s.ordersDB.QueryRowContext(ctx,
		`SELECT count(*), count(*) FILTER (WHERE status = 'invoiced') FROM orders`).Scan(&c.orders, &c.invoiced); err != nil {
		return c, err
	}
	if err := s.invoicesDB.QueryRowContext(ctx,
		`SELECT count(*), count(DISTINCT order_id) FROM invoices`).Scan(&c.invoices, &c.invoicedOrders); err != nil {
		return c, err
	}
	return c, nil
}

// waitAllInvoiced waits until every one of want orders is invoiced and has
// exactly one invoice.
func (s *stack) waitAllInvoiced(t *testing.T, want int, timeout time.Duration) {
	t.Helper()
	testkit.Eventually(t, timeout, 50*time.Millisecond, func() error {
		c, err := s.counts(t.Context())
		if err != nil {
			return err
		}
		if c.invoices != c.invoicedOrders {
			t.Fatalf("an order has more than one invoice: %+v", c)
		}
		if c.orders != want || c.invoiced != want || c.invoices != want {
			return fmt.Errorf("want %d orders invoiced once each, have %+v", want, c)
		}
		return nil
	})
}

// httpapiIdempotencyKey is the header that makes POST /orders safe to retry.
const httpapiIdempotencyKey = "Idempotency-Key"

type invoiceBody struct {
	ID         string `json:"id"`
	OrderID    string `json:"order_id"`
	CustomerID string `json:"customer_id"`
}

// getJSON GETs url as customer ("": nobody) and decodes a 200 body into v
// (nil: not decoded). It returns the status and the body.
func getJSON(t *testing.T, url, customer string, v any) (int, string) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, url, nil)
	require.NoError(t, err)
	if customer != "" {
		req.Header.Set(httpkit.ConsumerHeader, customer)
	}
	resp, err := client.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	if resp.StatusCode == http.StatusOK && v != nil {
		require.NoError(t, json.Unmarshal(raw, v), string(raw))
	}
	return resp.StatusCode, string(raw)
}

// listOrders returns every order GET /orders lists for customer, page by
// page (query: more parameters, such as "customer_id=...").
func listOrders(t *testing.T, baseURL, customer, query string) []order {
	t.Helper()
	var all []order
	cursor := ""
	for range 100 {
		url := baseURL + "/orders?limit=2"
		if query != "" {
			url += "&" + query
		}
		if cursor != "" {
			url += "&cursor=" + cursor
		}
		var page struct {
			Items      []order `json:"items"`
			NextCursor string  `json:"next_cursor"`
		}
		code, body := getJSON(t, url, customer, &page)
		require.Equal(t, http.StatusOK, code, body)
		all = append(all, page.Items...)
		if page.NextCursor == "" {
			return all
		}
		cursor = page.NextCursor
	}
	t.Fatal("pagination does not end")
	return nil
}
