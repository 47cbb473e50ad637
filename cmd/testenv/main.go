// Command testenv checks, before `go tool task test` runs anything, that the
// services the tests need answer, and prepares what it can:
//
//   - PostgreSQL at TEST_POSTGRES_URL, with a role that may create databases
//     (each test makes its own);
//   - RabbitMQ at TEST_AMQP_URL;
//   - RabbitMQ's management API at TEST_RABBITMQ_MANAGEMENT_URL, with a user
//     tagged administrator (each test makes its own vhost through it). When
//     it does not answer, RabbitMQ runs on this machine and rabbitmq-plugins
//     is on PATH, testenv enables the plugin and waits for the API.
//
// It prints one line: what it found, or the first thing missing and how to
// fix it (and then exits with status 1).
package main

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"os/signal"
	"slices"
	"strings"
	"syscall"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib" // database/sql driver "pgx"
	amqp091 "github.com/rabbitmq/amqp091-go"
)

// The defaults are the tests' own (pkg/testkit).
const (
	defaultPostgresURL   = "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable"
	defaultAMQPURL       = "amqp://guest:guest@127.0.0.1:5672/" //nolint:gosec // RabbitMQ's loopback-only default account
	defaultManagementURL = "http://guest:guest@127.0.0.1:15672" //nolint:gosec // the same account
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := check(ctx, os.Getenv, enablePlugin, os.Stdout)
	stop()
	if err != nil {
		fmt.Fprintf(os.Stderr, "test: %v\n", err)
		os.Exit(1)
	}
}

// checker holds one run's settings.
type checker struct {
	getenv func(string) string
	// enable enables the management plugin on this machine (nil: never).
	enable func(ctx context.Context) error
	// apiWait is how long to wait for the API after enabling the plugin.
	apiWait time.Duration
}

func env(getenv func(string) string, key, def string) string {
	if v := getenv(key); v != "" {
		return v
	}
	return def
}

// check checks the three services and prints one line to out when all
// answer; otherwise it returns what is missing and how to fix it.
func check(ctx context.Context, getenv func(string) string, enable func(context.Context) error, out io.Writer) error {
	c := checker{getenv: getenv, enable: enable, apiWait: 60 * time.Second}
	pg, err := c.postgres(ctx)
	if err != nil {
		return err
	}
	mq, err := c.rabbitmq(ctx)
	if err != nil {
		return err
	}
	api, err := c.management(ctx)
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "test: %s; %s; %s\n", pg, mq, api)
	return nil
}

func (c checker) postgres(ctx context.Context) (string, error) {
	raw := env(c.getenv, "TEST_POSTGRES_URL", defaultPostgresURL)
	where := fmt.Sprintf("at %s (TEST_POSTGRES_URL)", redact(raw))
	db, err := sql.Open("pgx", raw)
	if err != nil {
		return "", fmt.Errorf("PostgreSQL %s: %w: set TEST_POSTGRES_URL to a postgres:// URL", where, err)
	}
	defer db.Close()
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	var version string
	var mayCreate bool
	err = db.QueryRowContext(ctx, `SELECT split_part(current_setting('server_version'), ' ', 1),
		(SELECT rolcreatedb OR rolsuper FROM pg_roles WHERE rolname = current_user)`).Scan(&version, &mayCreate)
	if err != nil {
		return "", fmt.Errorf("PostgreSQL does not answer %s: %v: start PostgreSQL 15 or newer there, or point TEST_POSTGRES_URL at one", where, oneLine(err))
	}
	if !mayCreate {
		return "", fmt.Errorf("PostgreSQL %s: the role may not create databases, which every test does: ALTER ROLE ... CREATEDB, or use another role", where)
	}
	return "PostgreSQL " + version + " " + where, nil
}

func (c checker) rabbitmq(ctx context.Context) (string, error) {
	raw := env(c.getenv, "TEST_AMQP_URL", defaultAMQPURL)
	where := fmt.Sprintf("at %s (TEST_AMQP_URL)", redact(raw))
	dialer := &net.Dialer{Timeout: 5 * time.Second}
	conn, err := amqp091.DialConfig(raw, amqp091.Config{
		Dial:       func(network, addr string) (net.Conn, error) { return dialer.DialContext(ctx, network, addr) },
		Properties: amqp091.Table{"connection_name": "orderflow-testenv"},
	})
	var amqpErr *amqp091.Error
	if errors.As(err, &amqpErr) && amqpErr.Code == amqp091.AccessRefused {
		return "", fmt.Errorf("RabbitMQ %s refused the user and password: %v: fix them in TEST_AMQP_URL", where, oneLine(err))
	}
	if err != nil {
		return "", fmt.Errorf("RabbitMQ does not answer %s: %v: start RabbitMQ 3.10 or newer there, or point TEST_AMQP_URL at one", where, oneLine(err))
	}
	defer conn.Close()
	version, _ := conn.Properties["version"].(string)
	return "RabbitMQ " + version + " " + where, nil
}

func (c checker) management(ctx context.Context) (string, error) {
	raw := strings.TrimRight(env(c.getenv, "TEST_RABBITMQ_MANAGEMENT_URL", defaultManagementURL), "/")
	where := fmt.Sprintf("at %s (TEST_RABBITMQ_MANAGEMENT_URL)", redact(raw))
	tags, err := whoami(ctx, raw)
	var refused *net.OpError
	if errors.As(err, &refused) && c.enable != nil && isLocal(raw) {
		if eerr := c.enable(ctx); eerr != nil {
			return "", fmt.Errorf("the RabbitMQ management API does not answer %s, and enabling its plugin failed: %v: run rabbitmq-plugins enable rabbitmq_management as a user that may", where, oneLine(eerr))
		}
		deadline := time.Now().Add(c.apiWait)
		for errors.As(err, &refused) && time.Now().Before(deadline) {
			select {
			case <-ctx.Done():
				return "", ctx.Err()
			case <-time.After(500 * time.Millisecond): // polling with a deadline
			}
			tags, err = whoami(ctx, raw)
		}
		where += ", plugin enabled just now"
	}
	if errors.As(err, &refused) || errors.Is(err, context.DeadlineExceeded) {
		return "", fmt.Errorf("the RabbitMQ management API does not answer %s: enable it with rabbitmq-plugins enable rabbitmq_management on the RabbitMQ host, or point TEST_RABBITMQ_MANAGEMENT_URL (http://user:password@host:15672) at one", where)
	}
	if err != nil {
		return "", fmt.Errorf("the RabbitMQ management API %s: %v: check the user and password in TEST_RABBITMQ_MANAGEMENT_URL (http://user:password@host:15672)", where, oneLine(err))
	}
	if !slices.Contains(tags, "administrator") {
		return "", fmt.Errorf("the RabbitMQ management API %s: the user is not tagged administrator, which creating vhosts needs: rabbitmqctl set_user_tags USER administrator", where)
	}
	return "management API " + where, nil
}

// whoami asks the management API who its user is, and returns the user's
// tags.
func whoami(ctx context.Context, base string) ([]string, error) {
	u, err := url.Parse(base + "/api/whoami")
	if err != nil {
		return nil, fmt.Errorf("parse url: %w", err)
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	user := u.User
	u.User = nil
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return nil, fmt.Errorf("build request: %w", err)
	}
	if user != nil {
		pass, _ := user.Password()
		req.SetBasicAuth(user.Username(), pass)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err //nolint:wrapcheck // the caller looks for *net.OpError
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET /api/whoami: %s", resp.Status)
	}
	var who struct {
		Tags json.RawMessage `json:"tags"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&who); err != nil {
		return nil, fmt.Errorf("decode /api/whoami: %w", err)
	}
	// RabbitMQ 3.x answers a comma-separated string, 4.x a list.
	var list []string
	if json.Unmarshal(who.Tags, &list) == nil {
		return list, nil
	}
	var s string
	_ = json.Unmarshal(who.Tags, &s)
	return strings.Split(s, ","), nil
}

// isLocal reports whether a URL's host is this machine.
func isLocal(raw string) bool {
	u, err := url.Parse(raw)
	if err != nil {
		return false
	}
	h := u.Hostname()
	ip := net.ParseIP(h)
	return h == "localhost" || (ip != nil && ip.IsLoopback())
}

// enablePlugin runs rabbitmq-plugins when it is on PATH.
func enablePlugin(ctx context.Context) error {
	path, err := exec.LookPath("rabbitmq-plugins")
	if err != nil {
		return fmt.Errorf("rabbitmq-plugins is not on PATH: %w", err)
	}
	fmt.Println("test: enabling the RabbitMQ management plugin: rabbitmq-plugins enable rabbitmq_management")
	out, err := exec.CommandContext(ctx, path, "enable", "--quiet", "rabbitmq_management").CombinedOutput()
	if err != nil {
		return fmt.Errorf("%w: %s", err, strings.TrimSpace(string(out)))
	}
	return nil
}

// redact drops a URL's password.
func redact(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "(unparsable URL)"
	}
	return u.Redacted()
}

// oneLine keeps an error on one line.
func oneLine(err error) string { return strings.Join(strings.Fields(err.Error()), " ") }
