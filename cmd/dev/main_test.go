package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// The test binary plays the services and dev itself, chosen by
// DEV_TEST_ROLE: "service" (named by its file name, behaving as
// DEV_TEST_<NAME> says: serve until SIGTERM, or fail at once), "dev" (main,
// on the binaries in DEV_TEST_BIN) or "parent" (starts dev and waits, to be
// killed).
func TestMain(m *testing.M) {
	switch os.Getenv("DEV_TEST_ROLE") {
	case "":
		os.Exit(m.Run())
	case "dev":
		os.Args = []string{"dev", os.Getenv("DEV_TEST_BIN")}
		_ = os.Setenv("DEV_TEST_ROLE", "service") // for the services dev starts
		main()
	case "parent":
		cmd := exec.Command(os.Args[0]) //nolint:gosec,noctx // the test binary, killed by the test
		cmd.Env = append(os.Environ(), "DEV_TEST_ROLE=dev")
		cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
		if err := cmd.Start(); err != nil {
			fmt.Println("start dev:", err)
			os.Exit(1)
		}
		select {} // until killed
	default:
		fakeService()
	}
}

// fakeService is a service binary: it reports itself and serves until
// SIGTERM, or fails at once.
func fakeService() {
	name := filepath.Base(os.Args[0])
	if os.Getenv("DEV_TEST_"+strings.ToUpper(name)) == "fail" {
		fmt.Println("cannot start: boom")
		os.Exit(3)
	}
	sig := make(chan os.Signal, 1)
	signalNotify(sig)
	fmt.Printf("%s started port=%s database=%s\n", name, os.Getenv("PORT"), os.Getenv("DATABASE_URL"))
	s := <-sig
	fmt.Printf("%s got %s\n", name, s)
	os.Exit(0)
}

// binDir is a directory with the test binary as orders and invoices.
func binDir(t *testing.T) string {
	t.Helper()
	self, err := os.Executable()
	require.NoError(t, err)
	dir := t.TempDir()
	for _, s := range services {
		require.NoError(t, os.Symlink(self, filepath.Join(dir, s.name)))
	}
	return dir
}

// lines collects what a process writes, line by line.
type lines struct {
	mu  sync.Mutex
	all []string
	new chan struct{}
}

func collect(r io.Reader) *lines {
	l := &lines{new: make(chan struct{}, 1)}
	go func() {
		sc := bufio.NewScanner(r)
		for sc.Scan() {
			l.mu.Lock()
			l.all = append(l.all, sc.Text())
			l.mu.Unlock()
			select {
			case l.new <- struct{}{}:
			default:
			}
		}
	}()
	return l
}

func (l *lines) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Join(l.all, "\n")
}

// waitFor waits until every one of want has been written.
func (l *lines) waitFor(t *testing.T, want ...string) {
	t.Helper()
	deadline := time.After(20 * time.Second)
	for {
		s := l.String()
		missing := ""
		for _, w := range want {
			if !strings.Contains(s, w) {
				missing = w
				break
			}
		}
		if missing == "" {
			return
		}
		select {
		case <-l.new:
		case <-deadline:
			t.Fatalf("no %q in:\n%s", missing, s)
		}
	}
}

func TestSupervise_a_service_that_exits_stops_the_other(t *testing.T) {
	t.Parallel()
	dir := binDir(t)
	pr, pw := io.Pipe()
	out := collect(pr)
	procs := []proc{
		{name: "orders", path: filepath.Join(dir, "orders"), env: []string{"DEV_TEST_ROLE=service", "DEV_TEST_ORDERS=fail"}},
		{name: "invoices", path: filepath.Join(dir, "invoices"), env: []string{"DEV_TEST_ROLE=service"}},
	}
	start := time.Now()
	err := supervise(t.Context(), procs, pw, 10*time.Second)
	require.NoError(t, pw.Close())

	require.Error(t, err)
	assert.Contains(t, err.Error(), "orders exited (exit status 3)")
	assert.Less(t, time.Since(start), 10*time.Second, "the other service stopped on SIGTERM, not after the grace period")
	out.waitFor(t, "orders   | cannot start: boom", "dev      | orders exited (exit status 3): stopping the others")
	if strings.Contains(out.String(), "invoices started") {
		out.waitFor(t, "invoices | invoices got terminated")
	}
}

func TestDev_stops_both_services_on_a_signal(t *testing.T) {
	dir := binDir(t)
	for _, sig := range []syscall.Signal{syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP} {
		t.Run(sig.String(), func(t *testing.T) {
			cmd := exec.Command(os.Args[0]) //nolint:gosec,noctx // the test binary as dev
			cmd.Env = append(os.Environ(), "DEV_TEST_ROLE=dev", "DEV_TEST_BIN="+dir,
				"ORDERS_DATABASE_URL=postgres://o", "INVOICES_DATABASE_URL=postgres://i", "ORDERS_PORT=4101")
			stdout, err := cmd.StdoutPipe()
			require.NoError(t, err)
			out := collect(stdout)
			require.NoError(t, cmd.Start())
			t.Cleanup(func() { _ = cmd.Process.Kill() })
			// The per-service variables reach each service as its own.
			out.waitFor(t, "orders   | orders started port=4101 database=postgres://o",
				"invoices | invoices started port=3334 database=postgres://i")

			require.NoError(t, cmd.Process.Signal(sig))
			require.NoError(t, cmd.Wait(), "a signal is a clean stop:\n%s", out)
			out.waitFor(t, "dev      | stopping the services", "orders   | orders got terminated", "invoices | invoices got terminated")
			assert.Equal(t, 1, strings.Count(out.String(), "orders got"), "each service got one signal")
		})
	}
}

func TestDev_stops_both_services_when_its_parent_dies(t *testing.T) {
	t.Parallel()
	dir := binDir(t)
	cmd := exec.Command(os.Args[0]) //nolint:gosec,noctx // the test binary as dev's parent
	cmd.Env = append(os.Environ(), "DEV_TEST_ROLE=parent", "DEV_TEST_BIN="+dir, "DATABASE_URL=", "PORT=")
	pr, pw, err := os.Pipe()
	require.NoError(t, err)
	cmd.Stdout, cmd.Stderr = pw, pw
	require.NoError(t, cmd.Start())
	require.NoError(t, pw.Close())
	out := collect(pr)
	out.waitFor(t, "orders started", "invoices started")

	require.NoError(t, cmd.Process.Kill()) // as go-task exits on a third signal, or is killed
	_ = cmd.Wait()
	out.waitFor(t, "dev      | stopping the services", "orders got terminated", "invoices got terminated")
}

func TestRun_refuses_variables_both_services_would_share(t *testing.T) {
	t.Parallel()
	for _, key := range []string{"DATABASE_URL", "PORT"} {
		t.Run(key, func(t *testing.T) {
			t.Parallel()
			err := run(context.Background(), t.TempDir(), func(k string) string {
				return map[string]string{key: "x"}[k]
			}, io.Discard)
			require.Error(t, err)
			assert.Contains(t, err.Error(), key+" is set, which would point both services at the same one")
			assert.Contains(t, err.Error(), "ORDERS_"+key+" and INVOICES_"+key)
		})
	}
}

func TestRun_says_how_to_build_a_missing_binary(t *testing.T) {
	t.Parallel()
	err := run(context.Background(), t.TempDir(), func(string) string { return "" }, io.Discard)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "go tool task build builds it")
	assert.True(t, errors.Is(err, os.ErrNotExist))
}
