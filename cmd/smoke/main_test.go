package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	invoices "github.com/orderflow/orderflow/apps/invoices/service"
	orders "github.com/orderflow/orderflow/apps/orders/service"
	"github.com/orderflow/orderflow/pkg/testkit"
)

// testKey is the API key the fake Kong accepts.
const testKey = "test-key-0123456789abcdefghij"

// fakeStack answers like orders and invoices behind one base URL, as Kong
// does. The invoice appears after invoiceAfter polls. As Kong it wants
// testKey in the apikey header; as the services, a customer in
// X-Consumer-Custom-ID.
type fakeStack struct {
	kong         bool // add the headers Kong adds, and want the key
	placeStatus  int  // answer POST /orders with this status instead
	invoiceAfter int
	invoices     int // how many invoices the order gets (default 1)
	neverMarked  bool

	mu        sync.Mutex
	orderID   string
	polls     int
	customers []string // the caller of each request the services answered
}

func (f *fakeStack) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.kong {
		w.Header().Set("Via", "1.1 kong/3.9.1")
	}
	invoiceID := "inv-" + f.orderID
	customer := r.Header.Get(consumerHeader)
	if f.kong {
		if r.Header.Get(apiKeyHeader) != testKey {
			w.Header().Set("WWW-Authenticate", "Key")
			http.Error(w, `{"message":"No API key found in request"}`, http.StatusUnauthorized)
			return
		}
		customer = "c-from-kong"
	}
	if customer == "" {
		http.Error(w, `{"code":"unauthenticated"}`, http.StatusUnauthorized)
		return
	}
	f.customers = append(f.customers, customer)
	switch {
	case r.Method == http.MethodPost && r.URL.Path == "/orders":
		if f.placeStatus != 0 {
			http.Error(w, `{"code":"invalid_order"}`, f.placeStatus)
			return
		}
		if r.Header.Get("Idempotency-Key") == "" || r.Header.Get("Content-Type") != "application/json" {
			http.Error(w, "bad request", http.StatusBadRequest)
			return
		}
		f.orderID = uuid.NewString()
		w.Header().Set("Location", "/orders/"+f.orderID)
		w.WriteHeader(http.StatusCreated)
		_ = json.NewEncoder(w).Encode(order{ID: f.orderID, CustomerID: customer, Status: "pending"})
	case r.Method == http.MethodGet && r.URL.Path == "/orders":
		_, _ = fmt.Fprint(w, `{"items":[]}`)
	case r.Method == http.MethodGet && r.URL.Path == "/invoices" && r.URL.Query().Get("order_id") == f.orderID:
		f.polls++
		items := []invoice{}
		if f.polls > f.invoiceAfter {
			for i := range max(f.invoices, 1) {
				items = append(items, invoice{ID: fmt.Sprintf("%s-%d", invoiceID, i), OrderID: f.orderID, Amount: 1999, Currency: "EUR"})
			}
		}
		_ = json.NewEncoder(w).Encode(map[string]any{"items": items})
	case r.Method == http.MethodGet && r.URL.Path == "/orders/"+f.orderID:
		o := order{ID: f.orderID, Status: "invoiced", InvoiceID: invoiceID + "-0"}
		if f.neverMarked {
			o = order{ID: f.orderID, Status: "pending"}
		}
		_ = json.NewEncoder(w).Encode(o)
	default:
		http.NotFound(w, r)
	}
}

// closedURL is the URL of a loopback port nothing listens on.
func closedURL(tb testing.TB) string {
	tb.Helper()
	ln, err := (&net.ListenConfig{}).Listen(tb.Context(), "tcp", "127.0.0.1:0")
	require.NoError(tb, err)
	addr := ln.Addr().String()
	require.NoError(tb, ln.Close())
	return "http://" + addr
}

func TestRun_places_an_order_and_waits_for_its_invoice(t *testing.T) {
	t.Parallel()
	withKey := map[string]string{apiKeyEnv: testKey}
	tests := []struct {
		name          string
		stack         *fakeStack
		env           map[string]string
		args          func(fake, closed string) []string
		wantErr       string // empty: success
		wantOut       []string
		wantCustomers string // the caller every request named
	}{
		{
			name:          "through kong",
			stack:         &fakeStack{kong: true, invoiceAfter: 2},
			env:           withKey,
			args:          func(fake, _ string) []string { return []string{"--kong-url", fake, "--timeout", "5s"} },
			wantOut:       []string{"Kong answers at", "with an API key", "placed order", "for customer c-from-kong", "invoice inv-", "is invoiced", "smoke: OK"},
			wantCustomers: "c-from-kong",
		},
		{
			name:          "through kong, the key as a flag",
			stack:         &fakeStack{kong: true},
			args:          func(fake, _ string) []string { return []string{"--kong-url", fake, "--api-key", testKey} },
			wantOut:       []string{"smoke: OK"},
			wantCustomers: "c-from-kong",
		},
		{
			name:    "through kong without a key",
			stack:   &fakeStack{kong: true},
			args:    func(fake, _ string) []string { return []string{"--kong-url", fake} },
			wantErr: "an API key is needed",
		},
		{
			name:    "through kong with a wrong key",
			stack:   &fakeStack{kong: true},
			env:     map[string]string{apiKeyEnv: "not-the-key-0123456789abcdef"},
			args:    func(fake, _ string) []string { return []string{"--kong-url", fake} },
			wantErr: "answered 401",
		},
		{
			name:  "given urls, as a customer",
			stack: &fakeStack{invoiceAfter: 1},
			args: func(fake, closed string) []string {
				return []string{"--kong-url", closed, "--orders-url", fake, "--invoices-url", fake + "/", "--timeout", "5s", "--customer", "c-7"}
			},
			wantOut:       []string{"orders at " + "http://127.0.0.1", "calling as customer c-7", "placed order", "for customer c-7", "smoke: OK"},
			wantCustomers: "c-7",
		},
		{
			name:    "order rejected",
			stack:   &fakeStack{kong: true, placeStatus: http.StatusUnprocessableEntity},
			env:     withKey,
			args:    func(fake, _ string) []string { return []string{"--kong-url", fake} },
			wantErr: "answered 422",
		},
		{
			name:    "no invoice before the deadline",
			stack:   &fakeStack{kong: true, invoiceAfter: 1 << 30},
			env:     withKey,
			args:    func(fake, _ string) []string { return []string{"--kong-url", fake, "--timeout", "700ms"} },
			wantErr: "wait for the invoice of order",
		},
		{
			name:    "two invoices",
			stack:   &fakeStack{kong: true, invoices: 2},
			env:     withKey,
			args:    func(fake, _ string) []string { return []string{"--kong-url", fake} },
			wantErr: "has 2 invoices, want one",
		},
		{
			name:    "order never marked invoiced",
			stack:   &fakeStack{kong: true, neverMarked: true},
			env:     withKey,
			args:    func(fake, _ string) []string { return []string{"--kong-url", fake, "--timeout", "700ms"} },
			wantErr: "to be invoiced",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			srv := httptest.NewServer(tt.stack)
			t.Cleanup(srv.Close)
			var out, errOut bytes.Buffer

			getenv := func(k string) string { return tt.env[k] }
			err := run(t.Context(), tt.args(srv.URL, closedURL(t)), getenv, &out, &errOut)

			if tt.wantErr != "" {
				require.Error(t, err, "output: %s", out.String())
				assert.Contains(t, err.Error(), tt.wantErr)
				return
			}
			require.NoError(t, err, "output: %s", out.String())
			for _, want := range tt.wantOut {
				assert.Contains(t, out.String(), want)
			}
			tt.stack.mu.Lock()
			defer tt.stack.mu.Unlock()
			require.NotEmpty(t, tt.stack.customers)
			for _, c := range tt.stack.customers {
				assert.Equal(t, tt.wantCustomers, c)
			}
		})
	}
}

func TestSmoker_targets(t *testing.T) {
	t.Parallel()
	kong := httptest.NewServer(&fakeStack{kong: true})
	t.Cleanup(kong.Close)
	other := httptest.NewServer(&fakeStack{}) // answers, but is not Kong
	t.Cleanup(other.Close)
	closed := closedURL(t)

	tests := []struct {
		name                     string
		cfg                      config
		wantOrders, wantInvoices string
		wantRoute                route
		wantOutput               string
	}{
		{name: "both given", cfg: config{kongURL: kong.URL, ordersURL: "http://o", invoicesURL: "http://i"}, wantOrders: "http://o", wantInvoices: "http://i", wantRoute: given},
		{name: "kong answers", cfg: config{kongURL: kong.URL}, wantOrders: kong.URL, wantInvoices: kong.URL, wantRoute: throughKong, wantOutput: "going through it"},
		{name: "kong answers, orders given", cfg: config{kongURL: kong.URL, ordersURL: "http://o"}, wantOrders: "http://o", wantInvoices: kong.URL, wantRoute: throughKong},
		{name: "nothing on the kong port", cfg: config{kongURL: closed}, wantOrders: defaultOrdersURL, wantInvoices: defaultInvoicesURL, wantRoute: direct, wantOutput: "directly"},
		{name: "another server on the kong port", cfg: config{kongURL: other.URL}, wantOrders: defaultOrdersURL, wantInvoices: defaultInvoicesURL, wantRoute: direct, wantOutput: "not Kong"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var out bytes.Buffer
			s := smoker{client: &http.Client{Timeout: 2 * time.Second}, out: &out}
			gotOrders, gotInvoices, gotRoute := s.targets(t.Context(), tt.cfg)
			assert.Equal(t, tt.wantOrders, gotOrders)
			assert.Equal(t, tt.wantInvoices, gotInvoices)
			assert.Equal(t, tt.wantRoute, gotRoute)
			assert.Contains(t, out.String(), tt.wantOutput)
		})
	}
}

func TestParseFlags_rejects_bad_arguments(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		args []string
	}{
		{name: "zero timeout", args: []string{"--timeout", "0s"}},
		{name: "not a duration", args: []string{"--timeout", "soon"}},
		{name: "unknown flag", args: []string{"--order-url", "x"}},
		{name: "positional argument", args: []string{"orders"}},
		{name: "blank customer", args: []string{"--customer", " "}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := parseFlags(tt.args, func(string) string { return "" }, &bytes.Buffer{})
			assert.Error(t, err)
		})
	}
}

// TestRun_against_the_services runs the smoke test against both real
// services, each on a fresh database, sharing a fresh vhost.
func TestRun_against_the_services(t *testing.T) {
	testkit.Integration(t)
	t.Parallel()
	broker := testkit.NewVhost(t)
	o := testkit.StartService(t, orders.Name, orders.Run, testkit.ServiceEnv(t, broker))
	i := testkit.StartService(t, invoices.Name, invoices.Run, testkit.ServiceEnv(t, broker))

	var out bytes.Buffer
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	err := run(ctx, []string{"--orders-url", o.URL, "--invoices-url", i.URL, "--timeout", "45s"}, func(string) string { return "" }, &out, &out)
	require.NoError(t, err, "output:\n%s", out.String())
	assert.True(t, strings.HasSuffix(out.String(), "smoke: OK\n"), out.String())
	t.Log(out.String())
}
