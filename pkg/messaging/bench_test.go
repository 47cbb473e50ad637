package messaging_test

import (
	"context"
	"database/sql"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/google/uuid"

	"github.com/orderflow/orderflow/pkg/events"
	"github.com/orderflow/orderflow/pkg/messaging"
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

// outboxDB returns a fresh database with an outbox table.
func outboxDB(b *testing.B) *sql.DB {
	b.Helper()
	testkit.Integration(b)
	db, err := sql.Open("pgx", testkit.NewDatabase(b))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = db.Close() })
	if _, err := db.ExecContext(context.Background(), messaging.OutboxTableDDL); err != nil {
		b.Fatal(err)
	}
	return db
}

// BenchmarkPublishInTx is one event appended to the outbox in its own
// committed transaction on the real PostgreSQL: the cost the outbox adds to
// POST /orders.
func BenchmarkPublishInTx(b *testing.B) {
	db := outboxDB(b)
	ctx := context.Background()
	ev := benchEvent()
	b.ReportAllocs()
	for b.Loop() {
		tx, err := db.BeginTx(ctx, nil)
		if err != nil {
			b.Fatal(err)
		}
		if err := messaging.PublishInTx(ctx, tx, watermill.NopLogger{}, []any{ev}); err != nil {
			b.Fatal(err)
		}
		if err := tx.Commit(); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkOutbox_16_events appends 16 events on the real PostgreSQL, as 16
// orders without group commit do (a transaction each) and as one group
// commit of 16 orders does (one transaction, one INSERT through
// OutboxWriter). ns/event is the figure to compare.
func BenchmarkOutbox_16_events(b *testing.B) {
	db := outboxDB(b)
	ctx := context.Background()
	const n = 16
	evs := make([]any, n)
	for i := range evs {
		evs[i] = benchEvent()
	}
	inTx := func(b *testing.B, fn func(*sql.Tx) error) {
		b.Helper()
		tx, err := db.BeginTx(ctx, nil)
		if err != nil {
			b.Fatal(err)
		}
		if err := fn(tx); err != nil {
			b.Fatal(err)
		}
		if err := tx.Commit(); err != nil {
			b.Fatal(err)
		}
	}
	b.Run("a_transaction_each", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			for _, ev := range evs {
				inTx(b, func(tx *sql.Tx) error {
					return messaging.PublishInTx(ctx, tx, watermill.NopLogger{}, []any{ev})
				})
			}
		}
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/event")
	})
	b.Run("one_transaction", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			inTx(b, func(tx *sql.Tx) error {
				w, err := messaging.NewOutboxWriter(tx, watermill.NopLogger{})
				if err != nil {
					return err
				}
				for _, ev := range evs {
					if err := w.Add(ctx, ev); err != nil {
						return err
					}
				}
				return w.Flush(ctx)
			})
		}
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/event")
	})
	// The services' path since the outbox rows ride in the writing statement
	// (OutboxRows.With): no BEGIN, no COMMIT round trip. The statement here
	// writes nothing else.
	withRows := func(b *testing.B, evs ...any) {
		b.Helper()
		rows, err := messaging.NewOutboxRows(watermill.NopLogger{})
		if err != nil {
			b.Fatal(err)
		}
		if err := rows.Add(ctx, evs...); err != nil {
			b.Fatal(err)
		}
		q, args, err := rows.With(func(int) string { return "SELECT 1" })
		if err != nil {
			b.Fatal(err)
		}
		if _, err := db.ExecContext(ctx, q, args...); err != nil {
			b.Fatal(err)
		}
	}
	b.Run("a_statement_each", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			for _, ev := range evs {
				withRows(b, ev)
			}
		}
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/event")
	})
	b.Run("one_statement", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			withRows(b, evs...)
		}
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/event")
	})
}
