// Package database opens a service's PostgreSQL database with bun and applies
// its embedded SQL migrations.
package database

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net/url"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/uptrace/bun"
	"github.com/uptrace/bun/dialect/pgdialect"
	"github.com/uptrace/bun/extra/bunotel"
	"github.com/uptrace/bun/migrate"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"
)

// Config configures the connection pool.
type Config struct {
	URL          string
	Name         string // the logical database name for traces: "orders"
	MaxOpenConns int
	// CreateIfMissing creates the database when the server says it does not
	// exist (SQLSTATE 3D000). For local development: in production the role
	// usually may not create databases, and the error says why.
	CreateIfMissing bool
	// TracerProvider and MeterProvider receive bunotel's query spans and
	// metrics (nil: the global ones).
	TracerProvider trace.TracerProvider
	MeterProvider  metric.MeterProvider
	// Log gets a line when Open creates the database (nil: none).
	Log *slog.Logger
}

// Open opens the database over pgx's database/sql driver with bun's
// PostgreSQL dialect. (bun's own pgdriver breaks watermill-sql's JSON
// inserts, which share the *sql.Tx.) Queries are traced by bunotel.
func Open(ctx context.Context, cfg Config) (*bun.DB, error) {
	sqldb, err := open(ctx, cfg.URL)
	if cfg.CreateIfMissing && isMissing(err) {
		sqldb, err = createAndOpen(ctx, cfg)
	}
	if err != nil {
		return nil, err
	}
	if cfg.MaxOpenConns <= 0 {
		cfg.MaxOpenConns = 20
	}
	// Migrate holds one connection for its lock while it migrates through
	// another, and the forwarder holds one per batch: one is never enough.
	cfg.MaxOpenConns = max(cfg.MaxOpenConns, 2)
	sqldb.SetMaxOpenConns(cfg.MaxOpenConns)
	sqldb.SetMaxIdleConns(cfg.MaxOpenConns)
	sqldb.SetConnMaxIdleTime(5 * time.Minute)
	db := bun.NewDB(sqldb, pgdialect.New())
	hookOpts := []bunotel.Option{bunotel.WithDBName(cfg.Name), bunotel.WithSpanNameQueryGen(spanName)}
	if cfg.TracerProvider != nil {
		hookOpts = append(hookOpts, bunotel.WithTracerProvider(cfg.TracerProvider))
	}
	if cfg.MeterProvider != nil {
		hookOpts = append(hookOpts, bunotel.WithMeterProvider(cfg.MeterProvider))
	}
	db = db.WithQueryHook(bunotel.NewQueryHook(hookOpts...)) // returns a new handle
	return db, nil
}

// spanName names a query's span as OpenTelemetry's database conventions do,
// "{operation} {table}" ("INSERT orders"); bunotel names it by the operation
// alone.
func spanName(e *bun.QueryEvent) string {
	if q, ok := e.IQuery.(interface{ GetTableName() string }); ok && q.GetTableName() != "" {
		return e.Operation() + " " + q.GetTableName()
	}
	return e.Operation()
}

func open(ctx context.Context, dsn string) (*sql.DB, error) {
	return openWith(ctx, dsn, false)
}

// openWith is open; cached sends every query as a cached prepared statement
// (see openDB).
func openWith(ctx context.Context, dsn string, cached bool) (*sql.DB, error) {
	sqldb, err := openDB(dsn, cached)
	if err != nil {
		return nil, fmt.Errorf("open database: %w", err)
	}
	pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := sqldb.PingContext(pctx); err != nil {
		return nil, errors.Join(fmt.Errorf("ping database: %w", err), sqldb.Close())
	}
	return sqldb, nil
}

func isMissing(err error) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && pgErr.Code == "3D000"
}

// createAndOpen creates the missing database and opens it. When another
// replica created it meanwhile, the new database can still be missing to a
// new connection for a moment (the other CREATE DATABASE has not committed
// yet), so the open is retried until it appears, for up to ten seconds.
func createAndOpen(ctx context.Context, cfg Config) (*sql.DB, error) {
	created, err := createDatabase(ctx, cfg.URL)
	if err != nil {
		return nil, err
	}
	if created && cfg.Log != nil {
		cfg.Log.InfoContext(ctx, "database created", "database", databaseName(cfg.URL))
	}
	deadline := time.Now().Add(10 * time.Second)
	for delay := 10 * time.Millisecond; ; delay = min(delay*2, 500*time.Millisecond) {
		sqldb, err := open(ctx, cfg.URL)
		if !isMissing(err) || time.Now().After(deadline) {
			return sqldb, err
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("open database: %w", errors.Join(ctx.Err(), err))
		case <-time.After(delay):
		}
	}
}

// createDatabase creates the database dsn names and reports whether this
// call created it: false when another process did meanwhile.
func createDatabase(ctx context.Context, dsn string) (bool, error) {
	u, err := url.Parse(dsn)
	if err != nil {
		return false, fmt.Errorf("parse database url: %w", err)
	}
	name := strings.TrimPrefix(u.Path, "/")
	u.Path = "/postgres"
	admin, err := open(ctx, u.String())
	if err != nil {
		return false, fmt.Errorf("create database %s: %w", name, err)
	}
	defer admin.Close()
	_, err = admin.ExecContext(ctx, "CREATE DATABASE "+quoteIdent(name))
	if isCreatedMeanwhile(err) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("create database %s: %w", name, err)
	}
	return true, nil
}

// isCreatedMeanwhile reports whether CREATE DATABASE failed because another
// process created the database first: 42P04 (duplicate_database) when it
// committed before this statement looked, 23505 (unique_violation on
// pg_database's name index) when both ran at once and the other won.
func isCreatedMeanwhile(err error) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && (pgErr.Code == "42P04" || pgErr.Code == "23505")
}

// databaseName is the database a URL names, for log lines.
func databaseName(dsn string) string {
	if u, err := url.Parse(dsn); err == nil {
		return strings.TrimPrefix(u.Path, "/")
	}
	return ""
}

func quoteIdent(s string) string { return `"` + strings.ReplaceAll(s, `"`, `""`) + `"` }

// migrationLockKey is the advisory lock migrations run under. Advisory locks
// are scoped to one database, so one constant serves every service.
const migrationLockKey int64 = 0x6f72646572666c6f // "orderflo"

// Migrate applies the *.up.sql files of migrations that are not applied yet:
// a service's own set and those of the packages it uses (the outbox
// table's, say), each kept beside the code it belongs to. bun merges the
// sets, and refuses one ID given twice.
//
// Replicas that start together migrate one at a time under a PostgreSQL
// advisory lock held on one pinned connection: a second replica waits for the
// first and then finds nothing to do. bun's own Migrator.Lock is a row in a
// table: a second replica fails at once instead of waiting, and a replica
// killed mid-migration leaves the row behind, blocking every later start. The
// advisory lock is released by the server when the connection dies.
//
// log, when not nil, gets a line naming the migrations applied.
func Migrate(ctx context.Context, db *bun.DB, migrations []fs.FS, log *slog.Logger) error {
	ms := migrate.NewMigrations()
	for _, set := range migrations {
		if err := ms.Discover(set); err != nil {
			return fmt.Errorf("discover migrations: %w", err)
		}
	}
	// Record a migration only once it succeeded (bun's default records it
	// first), so that a failed or interrupted migration runs again.
	m := migrate.NewMigrator(db, ms, migrate.WithMarkAppliedOnSuccess(true))
	// Nothing to do, nothing to create: a service that logs in as its
	// least-privilege role (SetupRoles), which may not create tables, starts
	// on a database its migration step has brought up to date.
	if status, err := m.MigrationsWithStatus(ctx); err == nil && len(status.Unapplied()) == 0 {
		return nil
	}
	conn, err := db.DB.Conn(ctx)
	if err != nil {
		return fmt.Errorf("pin connection for migration lock: %w", err)
	}
	defer conn.Close()
	if _, err := conn.ExecContext(ctx, "SELECT pg_advisory_lock($1)", migrationLockKey); err != nil {
		return fmt.Errorf("take migration lock: %w", err)
	}
	defer func() {
		_, _ = conn.ExecContext(context.WithoutCancel(ctx), "SELECT pg_advisory_unlock($1)", migrationLockKey)
	}()
	if err := m.Init(ctx); err != nil {
		return fmt.Errorf("init migrations: %w", err)
	}
	group, err := m.Migrate(ctx)
	if err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	if log != nil && !group.IsZero() {
		applied := make([]string, 0, len(group.Migrations))
		for _, mig := range group.Migrations {
			applied = append(applied, mig.String())
		}
		log.InfoContext(ctx, "database migrated", "migrations", applied)
	}
	return nil
}

// Sub is the directory dir of an embedded tree of migrations
// (//go:embed migrations/*.sql), for Migrate.
func Sub(fsys fs.FS, dir string) fs.FS {
	sub, err := fs.Sub(fsys, dir)
	if err != nil {
		panic(err) // dir is a constant, embedded at compile time
	}
	return sub
}
