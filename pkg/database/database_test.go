package database_test

import (
	"bytes"
	"context"
	"io/fs"
	"log/slog"
	"net/url"
	"strings"
	"sync"
	"testing"
	"testing/fstest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/uptrace/bun"

	"github.com/orderflow/orderflow/pkg/database"
	"github.com/orderflow/orderflow/pkg/testkit"
)

// migrations is a small migration set. The second file fails if run twice
// (no IF NOT EXISTS), so a migration applied by two replicas shows.
var migrations = fstest.MapFS{
	"20240101000000_things.up.sql": {Data: []byte(`CREATE TABLE things (id bigint PRIMARY KEY, name text NOT NULL);`)},
	"20240102000000_things_idx.up.sql": {Data: []byte(`CREATE INDEX things_name_idx ON things (name);
--bun:split
INSERT INTO things (id, name) VALUES (1, 'one');`)},
}

func open(tb testing.TB, url string, maxConns int) *bun.DB {
	tb.Helper()
	db, err := database.Open(tb.Context(), database.Config{URL: url, Name: "test", MaxOpenConns: maxConns})
	require.NoError(tb, err)
	tb.Cleanup(func() { _ = db.Close() })
	return db
}

func countThings(tb testing.TB, db *bun.DB) int {
	tb.Helper()
	var n int
	require.NoError(tb, db.NewRaw("SELECT count(*) FROM things").Scan(tb.Context(), &n))
	return n
}

func appliedMigrations(tb testing.TB, db *bun.DB) []string {
	tb.Helper()
	var names []string
	require.NoError(tb, db.NewRaw("SELECT name FROM bun_migrations ORDER BY name").Scan(tb.Context(), &names))
	return names
}

func TestMigrate_concurrently_on_one_database(t *testing.T) {
	testkit.Integration(t)
	t.Parallel()
	tests := []struct {
		name string
		// pools: whether each migrator has its own pool, as replicas do,
		// or all share one.
		ownPools bool
	}{
		{name: "replicas with their own pools", ownPools: true},
		{name: "goroutines sharing one pool", ownPools: false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			url := testkit.NewDatabase(t)
			const n = 3
			dbs := make([]*bun.DB, n)
			shared := open(t, url, 0)
			for i := range n {
				dbs[i] = shared
				if tt.ownPools {
					dbs[i] = open(t, url, 0)
				}
			}
			errs := make([]error, n)
			start := make(chan struct{})
			var wg sync.WaitGroup
			for i := range n {
				wg.Go(func() {
					<-start
					errs[i] = database.Migrate(t.Context(), dbs[i], []fs.FS{migrations}, nil)
				})
			}
			close(start)
			wg.Wait()

			for i, err := range errs {
				require.NoError(t, err, "migrator %d", i)
			}
			assert.Equal(t, 1, countThings(t, shared), "each migration ran once")
			assert.Equal(t, []string{"20240101000000", "20240102000000"}, appliedMigrations(t, shared))
		})
	}
}

func TestMigrate_is_idempotent(t *testing.T) {
	testkit.Integration(t)
	t.Parallel()
	db := open(t, testkit.NewDatabase(t), 0)
	for range 3 {
		require.NoError(t, database.Migrate(t.Context(), db, []fs.FS{migrations}, nil))
	}
	assert.Equal(t, 1, countThings(t, db))
}

func TestMigrate_applies_new_migrations_only(t *testing.T) {
	testkit.Integration(t)
	t.Parallel()
	db := open(t, testkit.NewDatabase(t), 0)
	require.NoError(t, database.Migrate(t.Context(), db, []fs.FS{migrations}, nil))

	more := fstest.MapFS{}
	for k, v := range migrations {
		more[k] = v
	}
	more["20240103000000_more.up.sql"] = &fstest.MapFile{Data: []byte(`INSERT INTO things (id, name) VALUES (2, 'two');`)}
	require.NoError(t, database.Migrate(t.Context(), db, []fs.FS{more}, nil))

	assert.Equal(t, 2, countThings(t, db))
	assert.Len(t, appliedMigrations(t, db), 3)
}

// failing is migrations whose second file fails.
var failing = fstest.MapFS{
	"20240101000000_things.up.sql": migrations["20240101000000_things.up.sql"],
	"20240109000000_broken.up.sql": {Data: []byte(`CREATE TABLE broken (`)},
}

func TestMigrate_reports_a_failing_migration(t *testing.T) {
	testkit.Integration(t)
	t.Parallel()
	db := open(t, testkit.NewDatabase(t), 0)

	err := database.Migrate(t.Context(), db, []fs.FS{failing}, nil)

	require.Error(t, err)
	assert.True(t, strings.HasPrefix(err.Error(), "migrate: 20240109000000: up:"), err.Error())
	// The lock was released: the next migration does not wait for it.
	require.NoError(t, database.Migrate(t.Context(), db, []fs.FS{migrations}, nil))
	assert.Equal(t, 1, countThings(t, db))
}

func TestMigrate_retries_a_failed_migration(t *testing.T) {
	testkit.Integration(t)
	t.Parallel()
	db := open(t, testkit.NewDatabase(t), 0)
	require.Error(t, database.Migrate(t.Context(), db, []fs.FS{failing}, nil))

	assert.Equal(t, []string{"20240101000000"}, appliedMigrations(t, db), "the failed migration is not recorded")
	err := database.Migrate(t.Context(), db, []fs.FS{failing}, nil)
	assert.Error(t, err, "the failed migration runs, and fails, again")
}

func TestMigrate_with_one_connection(t *testing.T) {
	testkit.Integration(t)
	t.Parallel()
	db := open(t, testkit.NewDatabase(t), 1)
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	require.NoError(t, database.Migrate(ctx, db, []fs.FS{migrations}, nil))
}

func TestOpen_missing_database(t *testing.T) {
	testkit.Integration(t)
	t.Parallel()
	tests := []struct {
		name    string
		create  bool
		wantErr bool
	}{
		{name: "created when asked", create: true},
		{name: "fails otherwise", create: false, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			url := missingDatabase(t)

			db, err := database.Open(t.Context(), database.Config{URL: url, Name: "test", CreateIfMissing: tt.create})
			if tt.wantErr {
				require.Error(t, err)
				assert.Contains(t, err.Error(), "does not exist")
				return
			}
			require.NoError(t, err)
			t.Cleanup(func() { _ = db.Close() })
			assert.NoError(t, db.PingContext(t.Context()))
		})
	}
}

// missingDatabase returns the URL of a database that does not exist, and
// drops it when the test ends in case the test created it.
func missingDatabase(tb testing.TB) string {
	tb.Helper()
	admin := open(tb, testkit.PostgresURL(), 0)
	name := "test_missing_" + testkit.UniqueSuffix()
	tb.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if _, err := admin.DB.ExecContext(ctx, "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)"); err != nil {
			tb.Errorf("drop database %s: %v", name, err)
		}
	})
	u, err := url.Parse(testkit.PostgresURL())
	require.NoError(tb, err)
	u.Path = "/" + name
	return u.String()
}

// TestOpen_replicas_create_a_missing_database_together races replicas that
// find the same database missing and create it at once: PostgreSQL refuses
// all but one, with 42P04 or, when the creates overlap, 23505 on
// pg_database's name index. Every replica opens the database, and exactly
// one logs that it created it.
func TestOpen_replicas_create_a_missing_database_together(t *testing.T) {
	testkit.Integration(t)
	t.Parallel()
	const rounds, replicas = 4, 6
	for range rounds {
		url := missingDatabase(t)
		var logs syncBuffer
		log := slog.New(slog.NewJSONHandler(&logs, nil))
		start := make(chan struct{})
		errs := make([]error, replicas)
		var wg sync.WaitGroup
		for i := range replicas {
			wg.Go(func() {
				<-start
				db, err := database.Open(t.Context(), database.Config{URL: url, Name: "test", MaxOpenConns: 2, CreateIfMissing: true, Log: log})
				if err == nil {
					err = db.Close()
				}
				errs[i] = err
			})
		}
		close(start)
		wg.Wait()
		for i, err := range errs {
			require.NoError(t, err, "replica %d", i)
		}
		assert.Equal(t, 1, strings.Count(logs.String(), `"msg":"database created"`), logs.String())
	}
}

func TestMigrate_logs_what_it_applied(t *testing.T) {
	testkit.Integration(t)
	t.Parallel()
	db := open(t, testkit.NewDatabase(t), 2)
	var logs syncBuffer
	log := slog.New(slog.NewJSONHandler(&logs, nil))

	require.NoError(t, database.Migrate(t.Context(), db, []fs.FS{migrations}, log))
	assert.Contains(t, logs.String(), `"msg":"database migrated","migrations":["20240101000000_things","20240102000000_things_idx"]`)

	before := logs.String()
	require.NoError(t, database.Migrate(t.Context(), db, []fs.FS{migrations}, log))
	assert.Equal(t, before, logs.String(), "an up-to-date database logs nothing")
}

// syncBuffer is a bytes.Buffer that concurrent loggers may share.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
