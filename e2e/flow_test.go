// Package e2e_test runs both services in the test process against fresh
// databases and a fresh RabbitMQ vhost, and checks the guarantees end to end.
package e2e_test

import (
	"fmt"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/orderflow/orderflow/pkg/testkit"
)

func TestFlow_every_order_gets_exactly_one_invoice(t *testing.T) {
	testkit.Integration(t)
	t.Parallel()
	broker := testkit.NewVhost(t)
	s := startStack(t, broker, broker)

	const orders, workers = 200, 32
	start := time.Now()
	var wg sync.WaitGroup
	var failed atomic.Int64
	next := make(chan int)
	for range workers {
		wg.Go(func() {
			for i := range next {
				code, _, err := postOrder(t.Context(), s.orders.URL, fmt.Sprintf("c-%d", i%17), int64(100+i))
				if err != nil || code != http.StatusCreated {
					failed.Add(1)
					t.Errorf("order %d: status %d, error %v", i, code, err)
				}
			}
		})
	}
	for i := range orders {
		next <- i
	}
	close(next)
	wg.Wait()
	accepted := time.Since(start)
	require.Zero(t, failed.Load())

	s.waitAllInvoiced(t, orders, 60*time.Second)
	all := time.Since(start)
	t.Logf("%d orders accepted in %s (%.0f/s), all invoiced after %s (%.0f orders/s end to end)",
		orders, accepted.Round(time.Millisecond), orders/accepted.Seconds(), all.Round(time.Millisecond), orders/all.Seconds())
}
