package e2e_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
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

	"github.com/orderflow/orderflow/cmd/orderflow/cli"
	"github.com/orderflow/orderflow/pkg/messaging"
	"github.com/orderflow/orderflow/pkg/platform"
	"github.com/orderflow/orderflow/pkg/poison"
	"github.com/orderflow/orderflow/pkg/testkit"
)

// failInvoiceInserts makes the first n invoice inserts of db fail with a
// serialization failure (SQLSTATE 40001), a real transient PostgreSQL error.
// A sequence counts the attempts: nextval survives the rollback.
func failInvoiceInserts(t *testing.T, s *stack, n int64) {
	t.Helper()
	_, err := s.invoicesDB.ExecContext(t.Context(), fmt.Sprintf(`
		CREATE SEQUENCE test_insert_attempts;
		CREATE FUNCTION test_fail_insert() RETURNS trigger LANGUAGE plpgsql AS $$
		BEGIN
			IF nextval('test_insert_attempts') <= %d THEN
				RAISE EXCEPTION 'test: invoices are broken' USING ERRCODE = '40001';
			END IF;
			RETURN NEW;
		END $$;
		CREATE TRIGGER test_fail_insert BEFORE INSERT ON invoices FOR EACH ROW EXECUTE FUNCTION test_fail_insert();`, n))
	require.NoError(t, err)
}

func insertAttempts(t *testing.T, s *stack) int64 {
	t.Helper()
	var n int64
	require.NoError(t, s.invoicesDB.QueryRowContext(t.Context(), `SELECT last_value FROM test_insert_attempts`).Scan(&n))
	return n
}

func runCLI(t *testing.T, args ...string) (string, int) {
	t.Helper()
	var out, errOut bytes.Buffer
	code := cli.Run(t.Context(), args, strings.NewReader(""), &out, &errOut, func(string) string { return "" })
	return out.String() + errOut.String(), code
}

func TestRecovery_transient_failures_are_retried_to_one_invoice(t *testing.T) {
	testkit.Integration(t)
	t.Parallel()
	broker := testkit.NewVhost(t)
	s := startStack(t, broker, broker)
	failInvoiceInserts(t, s, 3) // fewer than HANDLER_MAX_RETRIES (5)

	code, o, err := postOrder(t.Context(), s.orders.URL, "c-1", 500)
	require.NoError(t, err)
	require.Equal(t, http.StatusCreated, code)
	s.waitAllInvoiced(t, 1, 30*time.Second)
	assert.Equal(t, int64(4), insertAttempts(t, s), "3 failures, then the retry that succeeded")
	got, err := getOrder(t.Context(), s.orders.URL, "c-1", o.ID)
	require.NoError(t, err)
	assert.Equal(t, "invoiced", got.Status)
	msgs := poisonMessages(t, broker)
	assert.Empty(t, msgs)
}

func poisonMessages(t *testing.T, broker string) []poison.Message {
	t.Helper()
	in, err := poison.Dial(broker)
	require.NoError(t, err)
	defer in.Close()
	msgs, err := in.List([]string{messaging.PoisonQueue("orders"), messaging.PoisonQueue("invoices")}, poison.Filter{})
	require.NoError(t, err)
	return msgs
}

func TestRecovery_permanent_failure_is_poisoned_then_replayed(t *testing.T) {
	testkit.Integration(t)
	t.Parallel()
	broker := testkit.NewVhost(t)
	s := startStack(t, broker, broker)
	failInvoiceInserts(t, s, 1<<40) // until the trigger is dropped

	code, o, err := postOrderWith(t.Context(), s.orders.URL, "c-9", `{"customer_id":"c-9","amount":777,"currency":"EUR"}`,
		map[string]string{"X-Correlation-ID": "corr-poison-1"})
	require.NoError(t, err)
	require.Equal(t, http.StatusCreated, code)

	var poisoned []poison.Message
	testkit.Eventually(t, 30*time.Second, 50*time.Millisecond, func() error {
		poisoned = poisonMessages(t, broker)
		if len(poisoned) != 1 {
			return fmt.Errorf("%d poison messages", len(poisoned))
		}
		return nil
	})
	m := poisoned[0]
	assert.Equal(t, messaging.PoisonQueue("invoices"), m.Queue)
	assert.Equal(t, "OrderPlaced", m.Event)
	assert.Equal(t, issueInvoiceHandler, m.Handler)
	assert.Equal(t, messaging.EventTopic("OrderPlaced"), m.Topic)
	assert.NotEmpty(t, m.Subscriber)
	assert.Contains(t, m.Reason, "test: invoices are broken")
	assert.Contains(t, m.ErrorType, "transient:")
	assert.Equal(t, 6, m.Attempts, "1 attempt + HANDLER_MAX_RETRIES (5)")
	assert.False(t, m.FirstFailed.IsZero())
	assert.True(t, m.LastFailed.After(m.FirstFailed))
	assert.Equal(t, "dev", m.Metadata[messaging.MetadataServiceVersion])
	assert.NotEmpty(t, m.Metadata[messaging.MetadataHost])
	assert.Equal(t, "corr-poison-1", m.Metadata["correlation_id"])
	var payload struct {
		OrderID string `json:"order_id"`
	}
	require.NoError(t, json.Unmarshal(m.Payload, &payload))
	assert.Equal(t, o.ID, payload.OrderID)

	got, err := getOrder(t.Context(), s.orders.URL, "c-9", o.ID)
	require.NoError(t, err)
	assert.Equal(t, "pending", got.Status)

	// The operator fixes the cause and replays.
	_, err = s.invoicesDB.ExecContext(t.Context(), `DROP TRIGGER test_fail_insert ON invoices`)
	require.NoError(t, err)
	out, code := runCLI(t, "poison", "replay", "--all", "--yes", "--broker-url", broker)
	require.Equal(t, cli.ExitOK, code, out)
	assert.Contains(t, out, "replayed "+m.ID)

	s.waitAllInvoiced(t, 1, 30*time.Second)
	assert.Empty(t, poisonMessages(t, broker))
}

func TestRecovery_scale_out_two_replicas_of_each_service(t *testing.T) {
	testkit.Integration(t)
	t.Parallel()
	broker := testkit.NewVhost(t)
	s := startStack(t, broker, broker)
	defaults, err := platform.LoadConfig(ordersName, 0, func(string) string { return "" })
	require.NoError(t, err)
	perReplica := 1 // with ack batching, one consumer per replica and queue, handling HANDLER_CONCURRENCY messages at once
	if !defaults.Tuning.AckBatching {
		perReplica = defaults.Tuning.Consumers // HANDLER_CONCURRENCY watermill-amqp consumers
	}
	orders2 := testkit.StartService(t, ordersName, ordersApp, s.ordersEnv) // same database, same outbox
	testkit.StartService(t, invoicesName, invoicesApp, s.invoicesEnv)      // same queue

	const n = 120
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Go(func() {
			for i := w; i < n; i += 8 {
				base := s.orders.URL
				if i%2 == 1 {
					base = orders2.URL
				}
				code, _, err := postOrder(t.Context(), base, fmt.Sprintf("c-%d", i), int64(i+1))
				if err != nil || code != http.StatusCreated {
					t.Errorf("order %d: %d %v", i, code, err)
				}
			}
		})
	}
	wg.Wait()
	s.waitAllInvoiced(t, n, 60*time.Second)

	for _, q := range []string{
		messaging.Subscription{Topic: messaging.EventTopic("OrderPlaced"), Handler: issueInvoiceHandler}.Queue(),
		messaging.Subscription{Topic: messaging.EventTopic("InvoiceIssued"), Handler: markInvoicedHandler}.Queue(),
	} {
		// The management API refreshes its figures every few seconds.
		testkit.Eventually(t, 30*time.Second, 200*time.Millisecond, func() error {
			if n := queueConsumers(t, broker, q); n != 2*perReplica {
				return fmt.Errorf("%s has %d consumers, want %d per replica", q, n, perReplica)
			}
			return nil
		})
	}
}

// queueConsumers asks the management API how many consumers a queue has.
func queueConsumers(t *testing.T, broker, queue string) int {
	t.Helper()
	u, err := url.Parse(broker)
	require.NoError(t, err)
	vhost := strings.TrimPrefix(u.Path, "/")
	mgmt, err := url.Parse(testkit.ManagementURL())
	require.NoError(t, err)
	pass, _ := mgmt.User.Password()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet,
		fmt.Sprintf("%s://%s/api/queues/%s/%s", mgmt.Scheme, mgmt.Host, url.PathEscape(vhost), url.PathEscape(queue)), nil)
	require.NoError(t, err)
	req.SetBasicAuth(mgmt.User.Username(), pass)
	resp, err := client.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	var q struct {
		Consumers int `json:"consumers"`
	}
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&q))
	return q.Consumers
}

func TestRecovery_invoices_stopped_mid_burst_then_restarted(t *testing.T) {
	testkit.Integration(t)
	t.Parallel()
	bin := buildBinary(t, "invoices")
	for _, tt := range []struct {
		name string
		sig  os.Signal
	}{
		{"kill -9", os.Kill},         // no drain, no acks: deliveries return to the queue
		{"SIGTERM", syscall.SIGTERM}, // graceful drain: in-flight handlers finish, then exit 0
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			broker := testkit.NewVhost(t)
			ordersEnv := testkit.ServiceEnv(t, broker)
			invoicesEnv := testkit.ServiceEnv(t, broker)
			ordersSvc := testkit.StartService(t, ordersName, ordersApp, ordersEnv)
			s := &stack{orders: ordersSvc, ordersDB: openDB(t, ordersEnv["DATABASE_URL"]), invoicesDB: openDB(t, invoicesEnv["DATABASE_URL"])}

			proc := startProcess(t, bin, invoicesEnv)
			const n = 150
			posted := make(chan struct{})
			go func() {
				defer close(posted)
				var wg sync.WaitGroup
				for w := range 8 {
					wg.Go(func() {
						for i := w; i < n; i += 8 {
							if code, _, err := postOrder(context.Background(), ordersSvc.URL, "c-stop", int64(i+1)); err != nil || code != http.StatusCreated {
								t.Errorf("order %d: %d %v", i, code, err)
							}
						}
					})
				}
				wg.Wait()
			}()
			testkit.Eventually(t, 60*time.Second, 5*time.Millisecond, func() error {
				c, err := s.counts(t.Context())
				if err != nil {
					return err
				}
				if c.invoices < 20 {
					return fmt.Errorf("%d invoices so far", c.invoices)
				}
				return nil
			})
			require.NoError(t, proc.Process.Signal(tt.sig))
			err := proc.Wait()
			if tt.sig == syscall.SIGTERM {
				require.NoError(t, err, "a drained invoices exits 0")
			}
			<-posted
			before, err := s.counts(t.Context())
			require.NoError(t, err)
			t.Logf("stopped invoices (%s) with %d of %d orders invoiced", tt.name, before.invoices, n)

			startProcess(t, bin, invoicesEnv)
			s.waitAllInvoiced(t, n, 90*time.Second)
		})
	}
}

// buildBinary builds apps/<name> into a temporary directory.
func buildBinary(t *testing.T, name string) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), name)
	cmd := exec.CommandContext(t.Context(), "go", "build", "-o", bin, "github.com/orderflow/orderflow/apps/"+name)
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, string(out))
	return bin
}

// startProcess runs a service binary with env (and PORT=0); it is killed
// when the test ends if it still runs.
func startProcess(t *testing.T, bin string, env map[string]string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(bin) //nolint:gosec,noctx // the binary the test built; killed explicitly
	cmd.Env = append(os.Environ(), "PORT=0")
	for k, v := range env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	if os.Getenv("TEST_LOG") == "1" {
		cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	}
	require.NoError(t, cmd.Start())
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	return cmd
}
