package messaging_test

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/google/uuid"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/orderflow/orderflow/pkg/events"
	"github.com/orderflow/orderflow/pkg/messaging"
)

func orderPlaced(tb testing.TB, at time.Time) *events.OrderPlaced {
	tb.Helper()
	return &events.OrderPlaced{
		Header:  events.Header{ID: uuid.NewString(), OccurredAt: at},
		OrderID: uuid.NewString(), CustomerID: "c-1", Amount: 1999, Currency: "EUR", PlacedAt: at,
	}
}

type notAnEvent struct{ A int }

func TestMarshaler_Marshal(t *testing.T) {
	t.Parallel()
	berlin := time.FixedZone("CEST", 2*60*60)
	at := time.Date(2025, 6, 1, 14, 30, 0, 123456789, berlin)
	tests := []struct {
		name       string
		event      any
		wantName   string
		wantUUID   func(any) string // empty result: any fresh UUID
		occurredAt string           // empty: no metadata
	}{
		{
			name:       "order placed",
			event:      orderPlaced(t, at),
			wantName:   "OrderPlaced",
			wantUUID:   func(e any) string { return e.(*events.OrderPlaced).ID },
			occurredAt: "2025-06-01T12:30:00.123456789Z",
		},
		{
			name: "invoice issued by value",
			event: events.InvoiceIssued{
				Header:    events.Header{ID: "evt-1", OccurredAt: at},
				InvoiceID: uuid.NewString(), OrderID: uuid.NewString(), Amount: 1, Currency: "EUR", IssuedAt: at,
			},
			wantName:   "InvoiceIssued",
			wantUUID:   func(any) string { return "evt-1" },
			occurredAt: "2025-06-01T12:30:00.123456789Z",
		},
		{
			name:     "event without id or time",
			event:    &events.OrderPlaced{OrderID: "o-1"},
			wantName: "OrderPlaced",
			wantUUID: func(any) string { return "" },
		},
		{
			name:     "not an event",
			event:    &notAnEvent{A: 1},
			wantName: "notAnEvent",
			wantUUID: func(any) string { return "" },
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			msg, err := messaging.NewMarshaler().Marshal(tt.event)
			require.NoError(t, err)

			if want := tt.wantUUID(tt.event); want != "" {
				assert.Equal(t, want, msg.UUID)
			} else {
				assert.NotEmpty(t, msg.UUID)
			}
			assert.Equal(t, tt.wantName, msg.Metadata.Get(messaging.MetadataEventName))
			assert.Equal(t, tt.occurredAt, msg.Metadata.Get(messaging.MetadataOccurredAt))
		})
	}
}

func TestMarshaler_round_trip(t *testing.T) {
	t.Parallel()
	m := messaging.NewMarshaler()
	in := orderPlaced(t, time.Now().UTC())
	msg, err := m.Marshal(in)
	require.NoError(t, err)
	assert.Equal(t, "OrderPlaced", m.NameFromMessage(msg))

	var out events.OrderPlaced
	require.NoError(t, m.Unmarshal(msg, &out))
	assert.Equal(t, in.ID, out.ID)
	assert.True(t, in.OccurredAt.Equal(out.OccurredAt))
	assert.Equal(t, in.OrderID, out.OrderID)
	assert.Equal(t, in.CustomerID, out.CustomerID)
	assert.Equal(t, in.Amount, out.Amount)
	assert.Equal(t, in.Currency, out.Currency)
	assert.True(t, in.PlacedAt.Equal(out.PlacedAt))
}

func TestMarshaler_Marshal_unencodable(t *testing.T) {
	t.Parallel()
	_, err := messaging.NewMarshaler().Marshal(&struct{ C chan int }{C: make(chan int)})
	require.Error(t, err)
	assert.False(t, messaging.IsPermanent(err))
}

func TestMarshaler_Unmarshal_failures_are_permanent(t *testing.T) {
	t.Parallel()
	valid := `{"event_id":"e-1","occurred_at":"2025-01-01T00:00:00Z","order_id":"o-1","customer_id":"c-1","amount":1,"currency":"EUR","placed_at":"2025-01-01T00:00:00Z"}`
	tests := []struct {
		name    string
		payload string
		// contains is a substring of the error.
		contains string
	}{
		{name: "garbage", payload: "not json at all", contains: "decode OrderPlaced"},
		{name: "empty", payload: "", contains: "decode OrderPlaced"},
		{name: "truncated", payload: valid[:40], contains: "decode OrderPlaced"},
		{name: "wrong type", payload: `{"amount":"1"}`, contains: "decode OrderPlaced"},
		{name: "bad time", payload: `{"occurred_at":"yesterday"}`, contains: "decode OrderPlaced"},
		{name: "array", payload: `[]`, contains: "decode OrderPlaced"},
		{name: "empty object", payload: `{}`, contains: "invalid OrderPlaced"},
		{name: "null", payload: `null`, contains: "invalid OrderPlaced"},
		{name: "zero amount", payload: `{"event_id":"e-1","occurred_at":"2025-01-01T00:00:00Z","order_id":"o-1","customer_id":"c-1","amount":0,"currency":"EUR","placed_at":"2025-01-01T00:00:00Z"}`, contains: "amount must be positive"},
		{name: "missing event id", payload: `{"occurred_at":"2025-01-01T00:00:00Z","order_id":"o-1","customer_id":"c-1","amount":1,"currency":"EUR","placed_at":"2025-01-01T00:00:00Z"}`, contains: "event_id is required"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			msg := message.NewMessage("msg-1", []byte(tt.payload))
			msg.Metadata.Set(messaging.MetadataEventName, "OrderPlaced")

			var out events.OrderPlaced
			err := messaging.NewMarshaler().Unmarshal(msg, &out)

			require.Error(t, err)
			assert.True(t, messaging.IsPermanent(err), "error %v must be permanent", err)
			assert.ErrorContains(t, err, tt.contains)
			assert.ErrorContains(t, err, "msg-1", "the error names the message")
		})
	}

	t.Run("valid payload", func(t *testing.T) {
		t.Parallel()
		var out events.OrderPlaced
		require.NoError(t, messaging.NewMarshaler().Unmarshal(message.NewMessage("msg-1", []byte(valid)), &out))
		assert.Equal(t, "o-1", out.OrderID)
	})
}

func TestPermanent(t *testing.T) {
	t.Parallel()
	base := errors.New("bad payload")
	tests := []struct {
		name      string
		err       error
		permanent bool
	}{
		{name: "nil", err: nil, permanent: false},
		{name: "plain", err: base, permanent: false},
		{name: "wrapped plain", err: fmt.Errorf("handle: %w", base), permanent: false},
		{name: "permanent", err: messaging.Permanent(base), permanent: true},
		{name: "wrapped once", err: fmt.Errorf("handle: %w", messaging.Permanent(base)), permanent: true},
		{name: "wrapped twice", err: fmt.Errorf("router: %w", fmt.Errorf("handle: %w", messaging.Permanent(base))), permanent: true},
		{name: "joined", err: errors.Join(errors.New("other"), messaging.Permanent(base)), permanent: true},
		{name: "flattened to text", err: errors.New("handle: " + messaging.Permanent(base).Error()), permanent: false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			assert.Equal(t, tt.permanent, messaging.IsPermanent(tt.err))
		})
	}

	t.Run("nil stays nil", func(t *testing.T) {
		t.Parallel()
		assert.NoError(t, messaging.Permanent(nil))
		assert.Nil(t, messaging.Permanent(nil))
	})

	t.Run("keeps the cause", func(t *testing.T) {
		t.Parallel()
		err := messaging.Permanent(fmt.Errorf("decode: %w", base))
		assert.ErrorIs(t, err, base)
		assert.Equal(t, "permanent: decode: bad payload", err.Error())
	})
}

func TestEventTopic(t *testing.T) {
	t.Parallel()
	assert.Equal(t, "events.OrderPlaced", messaging.EventTopic("OrderPlaced"))
	assert.Equal(t, "events.InvoiceIssued", messaging.EventTopic("InvoiceIssued"))
}
