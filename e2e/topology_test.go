package e2e_test

import (
	"testing"

	"github.com/stretchr/testify/assert"

	invoices "github.com/orderflow/orderflow/apps/invoices/service"
	orders "github.com/orderflow/orderflow/apps/orders/service"
	"github.com/orderflow/orderflow/pkg/messaging"
)

// Each service declares the queues of the events it publishes as well as its
// own: both must name the same queues with the same arguments, or a queue
// declared by one would be refused (PRECONDITION_FAILED) by the other.
func TestTopology_services_agree(t *testing.T) {
	t.Parallel()
	assert.ElementsMatch(t, orders.Topology.Subscriptions, invoices.Topology.Subscriptions)
	assert.Equal(t, orders.Topology.DeliveryLimit, invoices.Topology.DeliveryLimit)
	queues := map[string]bool{}
	for _, s := range orders.Topology.Subscriptions {
		queues[s.Queue()] = true
	}
	for _, q := range []string{
		messaging.Subscription{Topic: messaging.EventTopic("OrderPlaced"), Handler: issueInvoiceHandler}.Queue(),
		messaging.Subscription{Topic: messaging.EventTopic("InvoiceIssued"), Handler: markInvoicedHandler}.Queue(),
	} {
		assert.True(t, queues[q], "queue %s is declared", q)
	}
}
