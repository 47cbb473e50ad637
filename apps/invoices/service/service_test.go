package service_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/orderflow/orderflow/apps/invoices/internal/consumers"
	"github.com/orderflow/orderflow/apps/invoices/service"
	"github.com/orderflow/orderflow/pkg/events"
	"github.com/orderflow/orderflow/pkg/httpkit"
	"github.com/orderflow/orderflow/pkg/messaging"
	"github.com/orderflow/orderflow/pkg/testkit"
)

type invoice struct {
	ID       string `json:"id"`
	OrderID  string `json:"order_id"`
	Amount   int64  `json:"amount"`
	Currency string `json:"currency"`
}

// get GETs url as customer c-1 (Kong's X-Consumer-Custom-ID).
func get(ctx context.Context, url string, v any) (int, error) {
	return getAs(ctx, "c-1", url, v)
}

// getAs GETs url as customer ("": as nobody).
func getAs(ctx context.Context, customer, url string, v any) (int, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return 0, err
	}
	if customer != "" {
		req.Header.Set(httpkit.ConsumerHeader, customer)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusOK && v != nil {
		return resp.StatusCode, json.NewDecoder(resp.Body).Decode(v)
	}
	return resp.StatusCode, nil
}

func TestInvoices_redelivered_OrderPlaced_yields_one_invoice(t *testing.T) {
	testkit.Integration(t)
	t.Parallel()
	broker := testkit.NewVhost(t)
	svc := testkit.StartService(t, service.Name, service.Run, testkit.ServiceEnv(t, broker))

	now := time.Now().UTC()
	ev := &events.OrderPlaced{
		Header:  events.Header{ID: uuid.NewString(), OccurredAt: now},
		OrderID: uuid.NewString(), CustomerID: "c-1", Amount: 4200, Currency: "USD", PlacedAt: now,
	}
	testkit.PublishEvent(t, broker, ev, ev) // the same event twice: a redelivery

	var list struct{ Items []invoice }
	testkit.Eventually(t, 20*time.Second, 20*time.Millisecond, func() error {
		code, err := get(t.Context(), svc.URL+"/invoices?order_id="+ev.OrderID, &list)
		if err != nil || code != http.StatusOK || len(list.Items) == 0 {
			return fmt.Errorf("no invoice yet (status %d): %w", code, err)
		}
		return nil
	})

	// Both deliveries are processed once the queue is empty and the outbox
	// forwarded; then there is still one invoice and one InvoiceIssued.
	issuedQueue := messaging.Subscription{Service: "orders", Handler: consumers.OrdersMarkInvoiced, Topic: messaging.EventTopic("InvoiceIssued")}.Queue()
	orderQueue := messaging.Subscription{Service: "invoices", Handler: consumers.HandlerIssueInvoice, Topic: messaging.EventTopic("OrderPlaced")}.Queue()
	testkit.Eventually(t, 20*time.Second, 20*time.Millisecond, func() error {
		if n, err := testkit.QueueMessages(broker, orderQueue); err != nil || n != 0 {
			return fmt.Errorf("%d OrderPlaced not consumed yet: %w", n, err)
		}
		if n, err := testkit.QueueMessages(broker, issuedQueue); err != nil || n < 1 {
			return fmt.Errorf("%d InvoiceIssued forwarded: %w", n, err)
		}
		return nil
	})
	_, err := get(t.Context(), svc.URL+"/invoices?order_id="+ev.OrderID, &list)
	require.NoError(t, err)
	require.Len(t, list.Items, 1)
	assert.Equal(t, int64(4200), list.Items[0].Amount)
	assert.Equal(t, "USD", list.Items[0].Currency)
	issued, err := testkit.QueueMessages(broker, issuedQueue)
	require.NoError(t, err)
	assert.Equal(t, 1, issued, "one InvoiceIssued for one order")

	var one invoice
	code, err := get(t.Context(), svc.URL+"/invoices/"+list.Items[0].ID, &one)
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, code)
	assert.Equal(t, ev.OrderID, one.OrderID)

	code, err = get(t.Context(), svc.URL+"/invoices/"+uuid.NewString(), nil)
	require.NoError(t, err)
	assert.Equal(t, http.StatusNotFound, code)
	code, err = get(t.Context(), svc.URL+"/invoices/not-a-uuid", nil)
	require.NoError(t, err)
	assert.Equal(t, http.StatusBadRequest, code)
	code, err = get(t.Context(), svc.URL+"/invoices", nil)
	require.NoError(t, err)
	assert.Equal(t, http.StatusBadRequest, code, "order_id is required")

	// Another customer is told what an unknown id is told; nobody is a 401.
	for _, url := range []string{svc.URL + "/invoices/" + one.ID, svc.URL + "/invoices?order_id=" + ev.OrderID} {
		code, err = getAs(t.Context(), "c-2", url, nil)
		require.NoError(t, err)
		assert.Equal(t, http.StatusNotFound, code, url)
		code, err = getAs(t.Context(), "", url, nil)
		require.NoError(t, err)
		assert.Equal(t, http.StatusUnauthorized, code, url)
	}
}
