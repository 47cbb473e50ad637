package e2e_test

import (
	"bufio"
	"context"
	"database/sql"
	"io"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/orderflow/orderflow/pkg/testkit"
)

// readmeBlocks is every fenced sh block of README.md, by its first line,
// and what TestReadme_shell_commands does with it. A block the README gains
// or loses fails the test until it is listed here.
var readmeBlocks = map[string]string{
	"go tool task dev": "run: the test builds bin/ and runs bin/dev, as the task does without Docker, " +
		"on free ports instead of 3333/3334",
	". ./.env                  # ORDERFLOW_APIKEY_C_1: customer c-1's development key":          "not run: the Docker path (Kong on :8000, .env)",
	"export ORDERS_DATABASE_URL='postgres://me:secret@db.internal:5432/orders?sslmode=require'": "run: in sh, exports only",
	`key="readme-$(date +%s)-$$"`: "run: twice, against the services bin/dev runs, " +
		"localhost:3333 and localhost:3334 replaced by their ports",
	"go tool task test": "not run: this test is part of it",
}

// shBlocks returns README.md's fenced sh blocks.
func shBlocks(t *testing.T) []string {
	t.Helper()
	b, err := os.ReadFile("../README.md")
	require.NoError(t, err)
	var blocks []string
	var cur []string
	in := false
	for line := range strings.Lines(string(b)) {
		line = strings.TrimRight(line, "\n")
		switch {
		case !in && line == "```sh":
			in, cur = true, nil
		case in && line == "```":
			in = false
			blocks = append(blocks, strings.Join(cur, "\n")+"\n")
		case in:
			cur = append(cur, line)
		}
	}
	require.False(t, in, "an unclosed fenced block")
	return blocks
}

func firstLine(s string) string { return strings.SplitN(s, "\n", 2)[0] }

// TestReadme_shell_commands runs README.md's shell commands as a reader
// would, natively: bin/dev runs both services (each on a database that does
// not exist yet, and a vhost of its own), and the README's requests go to
// them, twice. It also holds dev's output to what the README says: a ready
// line per service, a handful of lines to start and to stop.
func TestReadme_shell_commands(t *testing.T) {
	testkit.Integration(t)
	t.Parallel()
	blocks := map[string]string{}
	for _, b := range shBlocks(t) {
		blocks[firstLine(b)] = b
	}
	for first := range blocks {
		assert.Contains(t, readmeBlocks, first, "a README sh block this test does not know: list it in readmeBlocks")
	}
	for first := range readmeBlocks {
		assert.Contains(t, blocks, first, "readmeBlocks lists a block README.md no longer has")
	}

	t.Run("exports", func(t *testing.T) {
		t.Parallel()
		out, err := exec.CommandContext(t.Context(), "sh", "-eu", "-c", blocks["export ORDERS_DATABASE_URL='postgres://me:secret@db.internal:5432/orders?sslmode=require'"]).CombinedOutput()
		require.NoError(t, err, string(out))
	})

	t.Run("native", func(t *testing.T) {
		t.Parallel()
		bin := t.TempDir()
		build := exec.CommandContext(t.Context(), "go", "build", "-o", bin+string(filepath.Separator),
			"../apps/orders", "../apps/invoices", "../cmd/dev")
		out, err := build.CombinedOutput()
		require.NoError(t, err, string(out))

		ports := [2]int{freePort(t), freePort(t)}
		dev := exec.Command(filepath.Join(bin, "dev"), bin) //nolint:gosec,noctx // built above; stopped by a signal
		dev.Env = append(os.Environ(),
			"ORDERS_PORT="+strconv.Itoa(ports[0]), "INVOICES_PORT="+strconv.Itoa(ports[1]),
			"ORDERS_DATABASE_URL="+missingDatabase(t), "INVOICES_DATABASE_URL="+missingDatabase(t),
			"BROKER_URL="+testkit.NewVhost(t),
			"DATABASE_MAX_CONNS=4", "OUTBOX_WORKERS=2", "DATABASE_URL=", "PORT=")
		stdout, err := dev.StdoutPipe()
		require.NoError(t, err)
		dev.Stderr = dev.Stdout
		lines := collectLines(stdout)
		require.NoError(t, dev.Start())
		t.Cleanup(func() { _ = dev.Process.Kill() })

		for i, svc := range []string{"orders", "invoices"} {
			lines.waitFor(t, regexp.MustCompile(`^`+svc+` +\| \{.*"msg":"ready".*"url":"http://127\.0\.0\.1:`+strconv.Itoa(ports[i])+`"`))
			lines.waitFor(t, regexp.MustCompile(`^`+svc+` +\| \{.*"msg":"database created"`))
			lines.waitFor(t, regexp.MustCompile(`^`+svc+` +\| \{.*"msg":"database migrated"`))
		}
		started := lines.count()
		assert.LessOrEqual(t, started, 8, "dev's start, in lines:\n%s", lines)

		script := blocks[`key="readme-$(date +%s)-$$"`]
		script = strings.ReplaceAll(script, "localhost:3333", "127.0.0.1:"+strconv.Itoa(ports[0]))
		script = strings.ReplaceAll(script, "localhost:3334", "127.0.0.1:"+strconv.Itoa(ports[1]))
		var ids []string
		for range 2 {
			out, err := exec.CommandContext(t.Context(), "sh", "-eu", "-c", script).CombinedOutput()
			require.NoError(t, err, string(out))
			m := regexp.MustCompile(`(?m)^order ([0-9a-f-]{36})$`).FindStringSubmatch(string(out))
			require.NotNil(t, m, "the order id in:\n%s", out)
			id := m[1]
			assert.Contains(t, string(out), `{"id":"`+id+`"`)
			assert.Contains(t, string(out), `"status":"invoiced"`)
			assert.Equal(t, 1, strings.Count(string(out), `"order_id":"`+id+`"`), "exactly one invoice:\n%s", out)
			assert.Equal(t, 1, strings.Count(string(out), `"code":"order_not_found"`), "another customer's order is not found:\n%s", out)
			assert.Contains(t, string(out), `"customer_id":"c-1"`, "the order is the caller's:\n%s", out)
			ids = append(ids, id)
		}
		assert.NotEqual(t, ids[0], ids[1], "a fresh Idempotency-Key each run places a new order")

		before := lines.count()
		require.NoError(t, dev.Process.Signal(syscall.SIGINT))
		require.NoError(t, dev.Wait(), "Ctrl-C is a clean stop:\n%s", lines)
		lines.waitFor(t, regexp.MustCompile(`^orders +\| .*"msg":"orders stopped"`))
		lines.waitFor(t, regexp.MustCompile(`^invoices +\| .*"msg":"invoices stopped"`))
		assert.LessOrEqual(t, lines.count()-before, 8, "dev's shutdown, in lines:\n%s", lines)
		assert.NotContains(t, lines.String(), `"level":"ERROR"`)
	})
}

// freePort is a loopback port nothing listens on (the test's services take
// it a moment later).
func freePort(t *testing.T) int {
	t.Helper()
	ln, err := (&net.ListenConfig{}).Listen(t.Context(), "tcp", "127.0.0.1:0")
	require.NoError(t, err)
	port := ln.Addr().(*net.TCPAddr).Port
	require.NoError(t, ln.Close())
	return port
}

// missingDatabase is the URL of a database that does not exist yet; it is
// dropped when the test ends.
func missingDatabase(t *testing.T) string {
	t.Helper()
	u, err := url.Parse(testkit.PostgresURL())
	require.NoError(t, err)
	name := "test_readme_" + testkit.UniqueSuffix()
	u.Path = "/" + name
	t.Cleanup(func() {
		admin, err := sql.Open("pgx", testkit.PostgresURL())
		if err != nil {
			t.Errorf("open postgres: %v", err)
			return
		}
		defer admin.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if _, err := admin.ExecContext(ctx, "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)"); err != nil {
			t.Errorf("drop database %s: %v", name, err)
		}
	})
	return u.String()
}

// lineLog collects a process's output line by line.
type lineLog struct {
	mu    sync.Mutex
	lines []string
	added chan struct{}
}

func collectLines(r io.Reader) *lineLog {
	l := &lineLog{added: make(chan struct{}, 1)}
	go func() {
		sc := bufio.NewScanner(r)
		sc.Buffer(make([]byte, 64*1024), 1024*1024)
		for sc.Scan() {
			l.mu.Lock()
			l.lines = append(l.lines, sc.Text())
			l.mu.Unlock()
			select {
			case l.added <- struct{}{}:
			default:
			}
		}
	}()
	return l
}

func (l *lineLog) count() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.lines)
}

func (l *lineLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Join(l.lines, "\n")
}

func (l *lineLog) has(re *regexp.Regexp) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, line := range l.lines {
		if re.MatchString(line) {
			return true
		}
	}
	return false
}

// waitFor waits up to a minute for a line matching re.
func (l *lineLog) waitFor(t *testing.T, re *regexp.Regexp) {
	t.Helper()
	deadline := time.After(time.Minute)
	for !l.has(re) {
		select {
		case <-l.added:
		case <-deadline:
			t.Fatalf("no line matching %s in:\n%s", re, l)
		}
	}
}
