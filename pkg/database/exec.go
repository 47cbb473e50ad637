package database

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/uptrace/bun"
	"github.com/uptrace/bun/dialect/pgdialect"
	"go.opentelemetry.io/otel/codes"
	semconv "go.opentelemetry.io/otel/semconv/v1.20.0"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"
)

// Statement is a statement with server-side parameters ($1, $2, …), for
// what bun cannot send: bun formats every argument into the SQL text, while
// a statement that embeds watermill-sql's outbox INSERT (see
// messaging.OutboxRows) carries its parameters, JSON payloads included, and
// is best prepared once per batch size rather than parsed per call.
type Statement struct {
	Operation string // "INSERT": the span's db.operation
	Table     string // the main table: the span's db.sql.table
	Query     string
	Args      []any
}

// Exec runs s on db's connection pool under a CLIENT span "<Operation>
// <Table>" with the attributes bunotel gives bun's queries, so that the
// trace of a request shows it like any other statement. tracer may be nil
// (no span).
func Exec(ctx context.Context, db *bun.DB, tracer trace.Tracer, s Statement) error {
	if tracer == nil {
		tracer = noop.Tracer{}
	}
	ctx, span := tracer.Start(ctx, s.Operation+" "+s.Table, trace.WithSpanKind(trace.SpanKindClient),
		trace.WithAttributes(semconv.DBSystemPostgreSQL, semconv.DBOperation(s.Operation),
			semconv.DBSQLTable(s.Table), semconv.DBStatement(s.Query)))
	defer span.End()
	if _, err := db.DB.ExecContext(ctx, s.Query, s.Args...); err != nil {
		err = fmt.Errorf("%s %s: %w", s.Operation, s.Table, err)
		span.RecordError(err)
		span.SetStatus(codes.Error, err.Error())
		return err
	}
	return nil
}

// IsUniqueViolation reports whether err is PostgreSQL's unique_violation
// (SQLSTATE 23505).
func IsUniqueViolation(err error) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && pgErr.Code == "23505"
}

// Arrays wraps each of values (slices) as a PostgreSQL array for bun's ?
// placeholders; Exec takes the slices as they are.
func Arrays(values ...any) []any {
	out := make([]any, len(values))
	for i, v := range values {
		out[i] = pgdialect.Array(v)
	}
	return out
}
