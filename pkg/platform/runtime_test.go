package platform_test

import (
	"bytes"
	"context"
	"database/sql"
	"fmt"
	"log/slog"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/orderflow/orderflow/pkg/messaging"
	"github.com/orderflow/orderflow/pkg/observability"
	"github.com/orderflow/orderflow/pkg/outbox"
	"github.com/orderflow/orderflow/pkg/platform"
	"github.com/orderflow/orderflow/pkg/testkit"
)

// TestRuntime_refused_credentials_are_unauthorized_not_connecting points a
// runtime at the real RabbitMQ with a password it refuses: /readyz's broker
// state says "unauthorized" and the log says what to check, without the
// password.
func TestRuntime_refused_credentials_are_unauthorized_not_connecting(t *testing.T) {
	testkit.Integration(t)
	t.Parallel()
	relay, err := sql.Open("pgx", testkit.NewDatabase(t))
	require.NoError(t, err)
	t.Cleanup(func() { _ = relay.Close() })
	u, err := url.Parse(testkit.NewVhost(t))
	require.NoError(t, err)
	const wrong = "not-the-password-" + "x9"
	u.User = url.UserPassword(u.User.Username(), wrong)

	var logs lockedBuffer
	rt := &platform.Runtime{
		Broker:    messaging.BrokerConfig{URL: u.String()},
		Router:    messaging.RouterConfig{Service: "test", HandlerTimeout: time.Second, CloseTimeout: time.Second},
		Forwarder: outbox.ForwarderConfig{PollInterval: time.Hour, Waker: outbox.NewWaker()},
		Outbox:    relay,
		Register:  func(*messaging.EventProcessor) error { return nil },
		Log:       observability.WatermillLogger(slog.New(slog.NewJSONHandler(&logs, nil))),
	}
	assert.Equal(t, platform.StateConnecting, rt.Status()["broker"], "before the first attempt")
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- rt.Run(ctx) }()

	testkit.Eventually(t, 20*time.Second, 10*time.Millisecond, func() error {
		if got := rt.Status()["broker"]; got != platform.StateUnauthorized {
			return fmt.Errorf("broker state %q", got)
		}
		return nil
	})
	testkit.Eventually(t, 5*time.Second, 10*time.Millisecond, func() error {
		if !strings.Contains(logs.String(), "rabbitmq refused the credentials") {
			return fmt.Errorf("no refusal line in %s", logs.String())
		}
		return nil
	})
	cancel()
	require.NoError(t, <-done)

	line := firstLine(logs.String(), "rabbitmq refused the credentials")
	assert.Contains(t, line, `"level":"ERROR"`)
	assert.Contains(t, line, `"user":"guest"`)
	assert.Contains(t, line, `"vhost":"`+strings.TrimPrefix(u.Path, "/")+`"`)
	assert.Contains(t, line, "username or password not allowed")
	assert.NotContains(t, logs.String(), wrong, "the password is never logged")
	assert.Equal(t, platform.StateUnauthorized, rt.Status()["broker"])
}

func firstLine(s, substr string) string {
	for line := range strings.Lines(s) {
		if strings.Contains(line, substr) {
			return line
		}
	}
	return ""
}

// lockedBuffer is a bytes.Buffer the runtime's goroutines may share.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
