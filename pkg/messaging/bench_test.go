package messaging_test

import (
	"context"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/google/uuid"
	"github.com/uptrace/bun"

	"github.com/orderflow/orderflow/pkg/events"
	"github.com/orderflow/orderflow/pkg/messaging"
	"github.com/orderflow/orderflow/pkg/outbox"
	"github.com/orderflow/orderflow/pkg/testkit"
)

func benchEvent() *events.OrderPlaced {
	now := time.Now().UTC()
	return &events.OrderPlaced{
		Header:  events.Header{ID: uuid.NewString(), OccurredAt: now},
		OrderID: uuid.NewString(), CustomerID: "c-12345", Amount: 1999, Currency: "EUR", PlacedAt: now,
	}
}

func BenchmarkMarshaler_Marshal(b *testing.B) {
	m := messaging.NewMarshaler()
	ev := benchEvent()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := m.Marshal(ev); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkMarshaler_Unmarshal(b *testing.B) {
	m := messaging.NewMarshaler()
	msg, err := m.Marshal(benchEvent())
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		var ev events.OrderPlaced
		if err := m.Unmarshal(msg, &ev); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkOutbox_Append is one event appended to the outbox in its own
// committed transaction on the real PostgreSQL: the cost the outbox adds to
// POST /orders.
func BenchmarkOutbox_Append(b *testing.B) {
	testkit.Integration(b)
	db := bunDB(b, testkit.NewDatabase(b))
	box := outbox.New(watermill.NopLogger{})
	ctx := context.Background()
	ev := benchEvent()
	b.ReportAllocs()
	for b.Loop() {
		if err := db.RunInTx(ctx, nil, func(ctx context.Context, tx bun.Tx) error {
			return box.Append(ctx, tx, ev)
		}); err != nil {
			b.Fatal(err)
		}
	}
}
