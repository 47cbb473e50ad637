package observability_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/components/cqrs"
	"github.com/ThreeDotsLabs/watermill/components/forwarder"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/ThreeDotsLabs/watermill/message/router/middleware"
	"github.com/ThreeDotsLabs/watermill/pubsub/gochannel"
	"github.com/go-chi/chi/v5"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel/trace"

	"github.com/orderflow/orderflow/pkg/observability"
)

// The names the pipeline uses, as orderflow's services do.
const (
	outboxTopic   = "outbox"
	eventTopic    = "events.OrderPlaced"
	poisonTopic   = "poison.invoices"
	handlerName   = "invoices.IssueInvoiceOnOrderPlaced"
	correlationID = "corr-1"
)

// OrderPlaced is the test's event. FailTimes makes the handler fail that
// many attempts before it succeeds.
type OrderPlaced struct {
	OrderID   string `json:"order_id"`
	FailTimes int    `json:"fail_times"`
}

// handled is what the handler saw of one message.
type handled struct {
	orderID       string
	correlationID string
	span          trace.SpanContext
}

// pipeline is orderflow's messaging path in one process, on Watermill's Go
// channel pub/sub instead of PostgreSQL and RabbitMQ, wired as the services
// wire it: an HTTP route appends an event to the outbox through a CQRS event
// bus, Watermill's forwarder relays the outbox to the broker, and a router
// with the production middleware order consumes it.
type pipeline struct {
	http     http.Handler
	handled  chan handled
	poisoned <-chan *message.Message
	router   *message.Router
	fwd      *forwarder.Forwarder
}

// maxRetries is the router's retry limit: an order with more failures goes
// to the poison queue.
const maxRetries = 2

func newPipeline(t *testing.T, tel *observability.Telemetry) *pipeline {
	t.Helper()
	opts := tel.Options()
	log := watermill.NopLogger{}
	outbox := gochannel.NewGoChannel(gochannel.Config{Persistent: true}, log)
	broker := gochannel.NewGoChannel(gochannel.Config{Persistent: true}, log)
	p := &pipeline{handled: make(chan handled, 16)}

	// orders: HTTP → outbox, as messaging.OutboxWriter does.
	bus, err := cqrs.NewEventBusWithConfig(
		observability.OutboxPublisher(forwarder.NewPublisher(outbox, forwarder.PublisherConfig{ForwarderTopic: outboxTopic}), opts...),
		cqrs.EventBusConfig{
			GeneratePublishTopic: func(p cqrs.GenerateEventPublishTopicParams) (string, error) {
				return "events." + p.EventName, nil
			},
			OnPublish: func(p cqrs.OnEventSendParams) error {
				ctx := p.Message.Context()
				p.Message.Metadata.Set(middleware.CorrelationIDMetadataKey, observability.CorrelationID(ctx))
				p.Message.Metadata.Set("occurred_at", time.Now().UTC().Format(time.RFC3339Nano))
				observability.InjectMessage(ctx, p.Message, opts...)
				return nil
			},
			Marshaler: cqrs.JSONMarshaler{GenerateName: cqrs.StructName},
			Logger:    log,
		})
	require.NoError(t, err)
	r := chi.NewRouter()
	r.Use(observability.HTTPMiddleware("orders", opts...), correlate)
	r.Post("/orders/{id}", func(w http.ResponseWriter, r *http.Request) {
		failTimes := 0
		if s := r.URL.Query().Get("fail"); s != "" {
			_, _ = fmt.Sscan(s, &failTimes)
		}
		if err := bus.Publish(r.Context(), &OrderPlaced{OrderID: chi.URLParam(r, "id"), FailTimes: failTimes}); err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		w.WriteHeader(http.StatusAccepted)
	})
	p.http = r

	// orders: the forwarder, outbox → broker.
	p.fwd, err = forwarder.NewForwarder(outbox, observability.ForwarderPublisher(broker, opts...), log,
		forwarder.Config{ForwarderTopic: outboxTopic})
	require.NoError(t, err)

	// invoices: the router, with messaging.NewRouter's middleware order.
	p.router, err = message.NewRouter(message.RouterConfig{CloseTimeout: 10 * time.Second}, log)
	require.NoError(t, err)
	poison, err := middleware.PoisonQueue(observability.PoisonPublisher(broker, opts...), poisonTopic)
	require.NoError(t, err)
	metrics := observability.NewHandlerMetrics(opts...)
	p.router.AddMiddleware(
		observability.ConsumeSpan(opts...),
		middleware.CorrelationID,
		poison,
		metrics.Message,
		middleware.Retry{MaxRetries: maxRetries, InitialInterval: time.Millisecond, MaxInterval: time.Millisecond}.Middleware,
		metrics.Attempt,
		middleware.Recoverer,
	)
	tracer := tel.TracerProvider().Tracer("test")
	attempts := map[string]int{}
	var mu sync.Mutex
	p.router.AddConsumerHandler(handlerName, eventTopic, broker, func(msg *message.Message) error {
		var e OrderPlaced
		if err := json.Unmarshal(msg.Payload, &e); err != nil {
			return err
		}
		mu.Lock()
		attempts[msg.UUID]++
		n := attempts[msg.UUID]
		mu.Unlock()
		_, span := tracer.Start(msg.Context(), "issue invoice")
		defer span.End()
		if n <= e.FailTimes {
			return fmt.Errorf("issue invoice for %s: %w", e.OrderID, errBrokenDatabase)
		}
		p.handled <- handled{
			orderID:       e.OrderID,
			correlationID: observability.CorrelationID(msg.Context()),
			span:          trace.SpanContextFromContext(msg.Context()),
		}
		return nil
	})

	ctx, cancel := context.WithCancel(context.WithoutCancel(t.Context()))
	p.poisoned, err = broker.Subscribe(ctx, poisonTopic)
	require.NoError(t, err)
	done := make(chan error, 2)
	go func() { done <- p.router.Run(ctx) }()
	go func() { done <- p.fwd.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		p.stop(t)
		for range 2 {
			require.NoError(t, <-done)
		}
	})
	for _, running := range []chan struct{}{p.router.Running(), p.fwd.Running()} {
		select {
		case <-running:
		case <-time.After(10 * time.Second):
			t.Fatal("pipeline did not start")
		}
	}
	return p
}

var errBrokenDatabase = errors.New("database is broken")

// correlate stands in for httpkit.CorrelationID.
func correlate(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id := r.Header.Get(observability.CorrelationHeader)
		w.Header().Set(observability.CorrelationHeader, id)
		next.ServeHTTP(w, r.WithContext(observability.WithCorrelationID(r.Context(), id)))
	})
}

// placeOrder posts an order and waits until the handler took it or, with
// failTimes beyond the retries, until it reached the poison queue.
func (p *pipeline) placeOrder(t *testing.T, id string, failTimes int) handled {
	t.Helper()
	req := httptest.NewRequestWithContext(t.Context(), http.MethodPost, fmt.Sprintf("/orders/%s?fail=%d", id, failTimes), strings.NewReader("{}"))
	req.Header.Set(observability.CorrelationHeader, correlationID)
	rec := httptest.NewRecorder()
	p.http.ServeHTTP(rec, req)
	require.Equal(t, http.StatusAccepted, rec.Code, rec.Body.String())
	select {
	case h := <-p.handled:
		require.Equal(t, id, h.orderID)
		return h
	case msg := <-p.poisoned:
		msg.Ack()
		var e OrderPlaced
		require.NoError(t, json.Unmarshal(msg.Payload, &e))
		require.Equal(t, id, e.OrderID)
		require.Greater(t, failTimes, maxRetries, "order %s poisoned", id)
		return handled{orderID: id}
	case <-time.After(10 * time.Second):
		t.Fatalf("order %s was not handled", id)
		return handled{}
	}
}

// stop closes the router and the forwarder, which wait for the messages in
// flight: every span has ended when it returns.
func (p *pipeline) stop(t *testing.T) {
	t.Helper()
	require.NoError(t, p.router.Close())
	require.NoError(t, p.fwd.Close())
}
