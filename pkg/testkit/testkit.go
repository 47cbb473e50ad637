// Package testkit gives integration tests their own state on the real
// PostgreSQL and RabbitMQ: a fresh database, a fresh vhost, unique names and a
// TCP proxy that cuts one process off the broker. Import it from tests only.
package testkit

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib" // database/sql driver "pgx"
)

// Defaults point at the local services that CI starts.
const (
	DefaultPostgresURL   = "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable"
	DefaultAMQPURL       = "amqp://guest:guest@127.0.0.1:5672/" //nolint:gosec // RabbitMQ's loopback-only default account
	DefaultManagementURL = "http://guest:guest@127.0.0.1:15672" //nolint:gosec // the same account
)

// Integration skips the test under -short. Otherwise the test needs the real
// services and fails loudly when they are missing.
func Integration(tb testing.TB) {
	tb.Helper()
	if testing.Short() {
		tb.Skip("integration test: needs PostgreSQL and RabbitMQ (run without -short)")
	}
}

// UniqueSuffix returns a short random hex string for names.
func UniqueSuffix() string {
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

func env(key, def string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return def
}

// PostgresURL is the server tests create their databases on
// (TEST_POSTGRES_URL).
func PostgresURL() string { return env("TEST_POSTGRES_URL", DefaultPostgresURL) }

// NewDatabase creates a fresh database and returns its URL. The database is
// dropped WITH (FORCE) when the test ends.
func NewDatabase(tb testing.TB) string {
	tb.Helper()
	admin, err := sql.Open("pgx", PostgresURL())
	if err != nil {
		tb.Fatalf("open postgres: %v", err)
	}
	tb.Cleanup(func() { _ = admin.Close() })
	name := "test_" + UniqueSuffix()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := admin.ExecContext(ctx, "CREATE DATABASE "+name); err != nil {
		tb.Fatalf("create database (is PostgreSQL running at %s?): %v", PostgresURL(), err)
	}
	tb.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if _, err := admin.ExecContext(ctx, "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)"); err != nil {
			tb.Errorf("drop database %s: %v", name, err)
		}
	})
	u, err := url.Parse(PostgresURL())
	if err != nil {
		tb.Fatalf("parse TEST_POSTGRES_URL: %v", err)
	}
	u.Path = "/" + name
	return u.String()
}

// NewVhost creates a fresh RabbitMQ vhost (through the management API at
// TEST_RABBITMQ_MANAGEMENT_URL), grants the AMQP user all rights on it and
// returns the AMQP URL for it. The vhost, with its queues, is deleted when
// the test ends.
func NewVhost(tb testing.TB) string {
	tb.Helper()
	amqpURL, err := url.Parse(env("TEST_AMQP_URL", DefaultAMQPURL))
	if err != nil {
		tb.Fatalf("parse TEST_AMQP_URL: %v", err)
	}
	user := amqpURL.User.Username()
	vhost := "test-" + UniqueSuffix()
	mgmt := strings.TrimRight(env("TEST_RABBITMQ_MANAGEMENT_URL", DefaultManagementURL), "/")
	manage(tb, http.MethodPut, mgmt+"/api/vhosts/"+vhost, "")
	manage(tb, http.MethodPut, mgmt+"/api/permissions/"+vhost+"/"+url.PathEscape(user), `{"configure":".*","write":".*","read":".*"}`)
	tb.Cleanup(func() { manage(tb, http.MethodDelete, mgmt+"/api/vhosts/"+vhost, "") })
	amqpURL.Path = "/" + vhost
	return amqpURL.String()
}

func manage(tb testing.TB, method, rawURL, body string) {
	tb.Helper()
	manageJSON(tb, method, rawURL, body, nil)
}

// manageJSON sends a request to the management API (rawURL carries the
// credentials) and decodes its answer into out, when out is not nil. A
// DELETE of something gone already is not an error.
func manageJSON(tb testing.TB, method, rawURL, body string, out any) {
	tb.Helper()
	u, err := url.Parse(rawURL)
	if err != nil {
		tb.Fatalf("parse management url: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, u.String(), strings.NewReader(body))
	if err != nil {
		tb.Fatalf("build management request: %v", err)
	}
	if u.User != nil {
		pass, _ := u.User.Password()
		req.SetBasicAuth(u.User.Username(), pass)
		u.User = nil
		req.URL = u
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		tb.Fatalf("rabbitmq management API (is the rabbitmq_management plugin on?): %v", err)
	}
	defer resp.Body.Close()
	gone := method == http.MethodDelete && resp.StatusCode == http.StatusNotFound
	if resp.StatusCode >= 300 && !gone {
		tb.Fatalf("rabbitmq management %s %s: %s", method, u.Path, resp.Status)
	}
	if out != nil {
		if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
			tb.Fatalf("decode management %s %s: %v", method, u.Path, err)
		}
	}
}

// ManagementURL is the RabbitMQ management API base URL, credentials included.
func ManagementURL() string {
	return strings.TrimRight(env("TEST_RABBITMQ_MANAGEMENT_URL", DefaultManagementURL), "/")
}
