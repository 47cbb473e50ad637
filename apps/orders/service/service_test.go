package service_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	amqp091 "github.com/rabbitmq/amqp091-go"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/orderflow/orderflow/apps/orders/internal/consumers"
	"github.com/orderflow/orderflow/apps/orders/service"
	"github.com/orderflow/orderflow/pkg/events"
	"github.com/orderflow/orderflow/pkg/httpkit"
	"github.com/orderflow/orderflow/pkg/messaging"
	"github.com/orderflow/orderflow/pkg/poison"
	"github.com/orderflow/orderflow/pkg/testkit"
)

type order struct {
	ID        string `json:"id"`
	Status    string `json:"status"`
	InvoiceID string `json:"invoice_id"`
}

// do sends a request as customer c-1 (Kong's X-Consumer-Custom-ID), unless
// headers name another caller (an empty one: none).
func do(t *testing.T, method, url, body string, headers map[string]string) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), method, url, strings.NewReader(body))
	require.NoError(t, err)
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set(httpkit.ConsumerHeader, "c-1")
	for k, v := range headers {
		req.Header.Set(k, v)
	}
	if req.Header.Get(httpkit.ConsumerHeader) == "" {
		req.Header.Del(httpkit.ConsumerHeader)
	}
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp, b
}

func decode[T any](t *testing.T, b []byte) T {
	t.Helper()
	var v T
	require.NoError(t, json.Unmarshal(b, &v), string(b))
	return v
}

// invoicesQueue is the queue invoices consumes OrderPlaced from; orders
// declares it before its first publish, so the test can read it.
var invoicesQueue = messaging.Subscription{Topic: messaging.EventTopic("OrderPlaced"), Handler: consumers.InvoicesIssueInvoice}.Queue()

// The subtests run in order on one service: the first reads the first
// OrderPlaced from the queue, the later ones add orders of their own.
func TestOrders_component(t *testing.T) { //nolint:tparallel // see above
	testkit.Integration(t)
	t.Parallel()
	broker := testkit.NewVhost(t)
	svc := testkit.StartService(t, service.Name, service.Run, testkit.ServiceEnv(t, broker))
	const body = `{"customer_id":"c-1","amount":1999,"currency":"EUR"}`

	resp, b := do(t, http.MethodPost, svc.URL+"/orders", body, map[string]string{"X-Correlation-ID": "corr-c1"})
	require.Equal(t, http.StatusCreated, resp.StatusCode, string(b))
	placed := decode[order](t, b)
	assert.Equal(t, "pending", placed.Status)
	assert.Equal(t, "/orders/"+placed.ID, resp.Header.Get("Location"))
	assert.Equal(t, "corr-c1", resp.Header.Get("X-Correlation-ID"))

	t.Run("OrderPlaced reaches the invoices queue with its metadata", func(t *testing.T) {
		var d amqp091.Delivery
		testkit.Eventually(t, 20*time.Second, 20*time.Millisecond, func() error {
			// A fresh channel each time: reading a queue that is not
			// declared yet closes the channel.
			got, ok, err := testkit.Channel(t, broker).Get(invoicesQueue, true)
			if err != nil || !ok {
				return fmt.Errorf("no OrderPlaced yet: %w", err)
			}
			d = got
			return nil
		})
		var ev events.OrderPlaced
		require.NoError(t, json.Unmarshal(d.Body, &ev))
		assert.Equal(t, placed.ID, ev.OrderID)
		assert.Equal(t, int64(1999), ev.Amount)
		assert.Equal(t, ev.ID, d.MessageId, "the message id is the event id")
		assert.Equal(t, "OrderPlaced", d.Headers["name"])
		assert.Equal(t, "corr-c1", d.Headers["correlation_id"])
		assert.Equal(t, uint8(amqp091.Persistent), d.DeliveryMode)
	})

	t.Run("idempotency key", func(t *testing.T) {
		key := map[string]string{"Idempotency-Key": uuid.NewString()}
		first, b1 := do(t, http.MethodPost, svc.URL+"/orders", body, key)
		require.Equal(t, http.StatusCreated, first.StatusCode)
		again, b2 := do(t, http.MethodPost, svc.URL+"/orders", body, key)
		require.Equal(t, http.StatusOK, again.StatusCode)
		assert.Equal(t, "true", again.Header.Get("Idempotent-Replayed"))
		assert.Equal(t, decode[order](t, b1).ID, decode[order](t, b2).ID)
		other, b3 := do(t, http.MethodPost, svc.URL+"/orders", `{"customer_id":"c-1","amount":2000,"currency":"EUR"}`, key)
		assert.Equal(t, http.StatusUnprocessableEntity, other.StatusCode)
		assert.Equal(t, "idempotency_key_reused", decode[map[string]any](t, b3)["code"])

		// Concurrent duplicates: the unique constraint makes them one order.
		key = map[string]string{"Idempotency-Key": uuid.NewString()}
		ids := make(chan string, 10)
		var wg sync.WaitGroup
		for range 10 {
			wg.Go(func() {
				resp, b := do(t, http.MethodPost, svc.URL+"/orders", body, key)
				if resp.StatusCode == http.StatusCreated || resp.StatusCode == http.StatusOK {
					ids <- decode[order](t, b).ID
				}
			})
		}
		wg.Wait()
		close(ids)
		seen := map[string]int{}
		for id := range ids {
			seen[id]++
		}
		assert.Len(t, seen, 1, "one order for ten concurrent requests with one key")
		for _, n := range seen {
			assert.Equal(t, 10, n)
		}
	})

	t.Run("InvoiceIssued marks the order invoiced, once", func(t *testing.T) {
		now := time.Now().UTC()
		ev := &events.InvoiceIssued{
			Header:    events.Header{ID: uuid.NewString(), OccurredAt: now},
			InvoiceID: uuid.NewString(), OrderID: placed.ID, CustomerID: "c-1", Amount: 1999, Currency: "EUR", IssuedAt: now,
		}
		testkit.PublishEvent(t, broker, ev, ev)
		testkit.Eventually(t, 20*time.Second, 20*time.Millisecond, func() error {
			_, b := do(t, http.MethodGet, svc.URL+"/orders/"+placed.ID, "", nil)
			if o := decode[order](t, b); o.Status != "invoiced" || o.InvoiceID != ev.InvoiceID {
				return fmt.Errorf("order is %+v", o)
			}
			return nil
		})
	})

	t.Run("InvoiceIssued for an unknown order is poisoned at once", func(t *testing.T) {
		now := time.Now().UTC()
		ev := &events.InvoiceIssued{
			Header:    events.Header{ID: uuid.NewString(), OccurredAt: now},
			InvoiceID: uuid.NewString(), OrderID: uuid.NewString(), CustomerID: "c-x", Amount: 1, Currency: "EUR", IssuedAt: now,
		}
		testkit.PublishEvent(t, broker, ev)
		in, err := poison.Dial(broker)
		require.NoError(t, err)
		defer in.Close()
		testkit.Eventually(t, 20*time.Second, 50*time.Millisecond, func() error {
			msgs, err := in.List([]string{messaging.PoisonQueue(service.Name)}, poison.Filter{IDs: []string{ev.ID}})
			if err != nil || len(msgs) != 1 {
				return fmt.Errorf("not poisoned yet: %w", err)
			}
			if msgs[0].Attempts != 1 || !strings.HasPrefix(msgs[0].ErrorType, "permanent") {
				return fmt.Errorf("poisoned as %+v", msgs[0])
			}
			return nil
		})
	})

	t.Run("idempotency keys are scoped per customer", func(t *testing.T) {
		key := uuid.NewString()
		ids := map[string]string{}
		for _, cust := range []string{"c-key-a", "c-key-b"} {
			h := map[string]string{"Idempotency-Key": key, httpkit.ConsumerHeader: cust}
			resp, b := do(t, http.MethodPost, svc.URL+"/orders", `{"amount":500,"currency":"EUR"}`, h)
			require.Equal(t, http.StatusCreated, resp.StatusCode, "%s: the same key from another customer is another order: %s", cust, b)
			ids[cust] = decode[order](t, b).ID
		}
		assert.NotEqual(t, ids["c-key-a"], ids["c-key-b"])
		for cust, id := range ids {
			h := map[string]string{"Idempotency-Key": key, httpkit.ConsumerHeader: cust}
			resp, b := do(t, http.MethodPost, svc.URL+"/orders", `{"amount":500,"currency":"EUR"}`, h)
			require.Equal(t, http.StatusOK, resp.StatusCode, string(b))
			assert.Equal(t, id, decode[order](t, b).ID, "%s replays its own order", cust)
		}
	})

	t.Run("a customer sees only their own orders", func(t *testing.T) {
		resp, b := do(t, http.MethodGet, svc.URL+"/orders/"+placed.ID, "", map[string]string{httpkit.ConsumerHeader: "c-other"})
		assert.Equal(t, http.StatusNotFound, resp.StatusCode, string(b))
		assert.Equal(t, "order_not_found", decode[map[string]any](t, b)["code"])
		resp, b = do(t, http.MethodGet, svc.URL+"/orders", "", map[string]string{httpkit.ConsumerHeader: "c-other"})
		require.Equal(t, http.StatusOK, resp.StatusCode, string(b))
		assert.NotContains(t, string(b), placed.ID)
		resp, b = do(t, http.MethodGet, svc.URL+"/orders?customer_id=c-1", "", map[string]string{httpkit.ConsumerHeader: "c-other"})
		assert.Equal(t, http.StatusForbidden, resp.StatusCode, string(b))
		resp, b = do(t, http.MethodPost, svc.URL+"/orders", body, map[string]string{httpkit.ConsumerHeader: "c-other"})
		assert.Equal(t, http.StatusForbidden, resp.StatusCode, "an order in c-1's name: %s", b)
		resp, b = do(t, http.MethodGet, svc.URL+"/orders/"+placed.ID, "", map[string]string{httpkit.ConsumerHeader: ""})
		assert.Equal(t, http.StatusUnauthorized, resp.StatusCode, string(b))
	})

	t.Run("keyset pagination", func(t *testing.T) {
		cust := "c-page-" + uuid.NewString()[:8]
		as := map[string]string{httpkit.ConsumerHeader: cust}
		for i := range 5 {
			resp, _ := do(t, http.MethodPost, svc.URL+"/orders", fmt.Sprintf(`{"customer_id":%q,"amount":%d,"currency":"EUR"}`, cust, i+1), as)
			require.Equal(t, http.StatusCreated, resp.StatusCode)
		}
		type page struct {
			Items      []order `json:"items"`
			NextCursor string  `json:"next_cursor"`
		}
		var all []string
		url := svc.URL + "/orders?limit=2&customer_id=" + cust
		for range 4 {
			_, b := do(t, http.MethodGet, url, "", as)
			p := decode[page](t, b)
			for _, o := range p.Items {
				all = append(all, o.ID)
			}
			if p.NextCursor == "" {
				break
			}
			url = svc.URL + "/orders?limit=2&customer_id=" + cust + "&cursor=" + p.NextCursor
		}
		assert.Len(t, all, 5)
		for i := 1; i < len(all); i++ {
			assert.Greater(t, all[i-1], all[i], "newest first")
		}
	})

	t.Run("readiness", func(t *testing.T) {
		r, err := testkit.GetReadiness(svc.URL)
		require.NoError(t, err)
		assert.Equal(t, "up", r.Status)
		assert.Equal(t, map[string]string{"database": "up", "broker": "up", "router": "up", "forwarder": "up", "outbox": "up"}, r.Components)
	})
}
