package messaging

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// failing is a handler that fails every attempt up to failures (all of them
// when failures < 0) and records when each attempt started.
type failing struct {
	mu       sync.Mutex
	failures int
	err      error
	starts   []time.Time
	ctxs     []context.Context
}

func (f *failing) handle(msg *message.Message) ([]*message.Message, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.starts = append(f.starts, time.Now())
	f.ctxs = append(f.ctxs, msg.Context())
	// An attempt's context is cancelled by the timeout middleware; the next
	// attempt must not inherit it.
	ctx, cancel := context.WithCancel(msg.Context())
	cancel()
	msg.SetContext(ctx)
	if f.failures < 0 || len(f.starts) <= f.failures {
		return nil, f.err
	}
	return nil, nil
}

func (f *failing) attempts() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.starts)
}

// recordWaits makes r record the waits it asks for instead of sleeping.
func recordWaits(r *retry) *[]time.Duration {
	var waits []time.Duration
	r.wait = func(_ context.Context, d time.Duration) error {
		waits = append(waits, d)
		return nil
	}
	return &waits
}

func testRetry(maxRetries int, initial, maxInterval time.Duration) retry {
	return newRetry(RouterConfig{MaxRetries: maxRetries, RetryInitial: initial, RetryMax: maxInterval}.withDefaults(),
		watermill.NopLogger{})
}

// configured is the schedule the configuration describes: initial, doubling,
// capped at maxInterval.
func configured(n int, initial, maxInterval time.Duration) []time.Duration {
	out := make([]time.Duration, n)
	d := initial
	for i := range out {
		out[i] = min(d, maxInterval)
		d *= 2
	}
	return out
}

func TestRetry_waits_the_configured_intervals(t *testing.T) {
	t.Parallel()
	const retries = 7
	initial, maxInterval := 100*time.Millisecond, 5*time.Second
	want := configured(retries, initial, maxInterval) // 0.1 0.2 0.4 0.8 1.6 3.2 5 s

	t.Run("without jitter, exactly", func(t *testing.T) {
		t.Parallel()
		r := testRetry(retries, initial, maxInterval)
		r.jitter = 0
		waits := recordWaits(&r)
		h := &failing{failures: -1, err: errors.New("database down")}

		_, err := r.Middleware(h.handle)(message.NewMessage("id", nil))

		require.Error(t, err)
		assert.Equal(t, 1+retries, h.attempts())
		assert.Equal(t, want, *waits)
	})

	t.Run("with jitter, within ±50 % of each interval", func(t *testing.T) {
		t.Parallel()
		for range 200 {
			r := testRetry(retries, initial, maxInterval)
			waits := recordWaits(&r)
			h := &failing{failures: -1, err: errors.New("database down")}

			_, err := r.Middleware(h.handle)(message.NewMessage("id", nil))

			require.Error(t, err)
			require.Len(t, *waits, retries)
			for i, got := range *waits {
				lo, hi := time.Duration(float64(want[i])*0.5), time.Duration(float64(want[i])*1.5)
				require.True(t, got >= lo && got <= hi, "wait %d: %v is outside [%v, %v]", i+1, got, lo, hi)
			}
		}
	})
}

// TestRetry_waits_between_attempts measures the time between the attempts
// themselves, with the real timer.
func TestRetry_waits_between_attempts(t *testing.T) {
	t.Parallel()
	const retries = 4
	initial, maxInterval := 40*time.Millisecond, 160*time.Millisecond
	want := configured(retries, initial, maxInterval) // 40 80 160 160 ms
	r := testRetry(retries, initial, maxInterval)
	h := &failing{failures: -1, err: errors.New("database down")}

	_, err := r.Middleware(h.handle)(message.NewMessage("id", nil))

	require.Error(t, err)
	require.Len(t, h.starts, 1+retries)
	// A wait is never shorter than its interval's lower jitter bound; it may
	// be longer by however late the scheduler runs the attempt.
	const lateness = 150 * time.Millisecond
	for i := range retries {
		gap := h.starts[i+1].Sub(h.starts[i])
		lo, hi := time.Duration(float64(want[i])*0.5), time.Duration(float64(want[i])*1.5)
		assert.GreaterOrEqual(t, gap, lo, "wait %d", i+1)
		assert.LessOrEqual(t, gap, hi+lateness, "wait %d", i+1)
	}
	total := h.starts[retries].Sub(h.starts[0])
	// The configured schedule sums to 440 ms, at most 660 ms with jitter;
	// Watermill's middleware.Retry, advancing the schedule three times per
	// retry, waits 80, 160, 160, 160 ms at the least.
	assert.Less(t, total, 660*time.Millisecond+lateness)
}

func TestRetry_stops(t *testing.T) {
	t.Parallel()
	transient := errors.New("database down")
	undecodable := errors.New("undecodable")
	tests := []struct {
		name     string
		failures int
		err      error
		attempts int
		waits    int
		wantErr  error
	}{
		{name: "succeeds at once", failures: 0, err: transient, attempts: 1, waits: 0},
		{name: "succeeds on the third attempt", failures: 2, err: transient, attempts: 3, waits: 2},
		{name: "permanent error: no retry", failures: -1, err: Permanent(undecodable), attempts: 1, waits: 0, wantErr: undecodable},
		{name: "retries exhausted", failures: -1, err: transient, attempts: 4, waits: 3, wantErr: transient},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			r := testRetry(3, time.Millisecond, time.Millisecond)
			waits := recordWaits(&r)
			h := &failing{failures: tt.failures, err: tt.err}
			type key struct{}
			msg := message.NewMessage("id", nil)
			msg.SetContext(context.WithValue(context.Background(), key{}, "original"))

			_, err := r.Middleware(h.handle)(msg)

			if tt.wantErr == nil {
				require.NoError(t, err)
			} else {
				require.ErrorIs(t, err, tt.wantErr)
			}
			assert.Equal(t, tt.attempts, h.attempts())
			assert.Len(t, *waits, tt.waits)
			for i, ctx := range h.ctxs {
				assert.NoError(t, ctx.Err(), "attempt %d got a cancelled context", i+1)
				assert.Equal(t, "original", ctx.Value(key{}), "attempt %d", i+1)
			}
		})
	}
}

func TestRetry_stops_waiting_when_the_message_context_ends(t *testing.T) {
	t.Parallel()
	r := testRetry(5, time.Hour, time.Hour)
	h := &failing{failures: -1, err: errors.New("database down")}
	ctx, cancel := context.WithCancel(context.Background())
	msg := message.NewMessage("id", nil)
	msg.SetContext(ctx)
	done := make(chan error, 1)

	go func() {
		_, err := r.Middleware(h.handle)(msg)
		done <- err
	}()
	require.Eventually(t, func() bool { return h.attempts() == 1 }, 5*time.Second, time.Millisecond)
	cancel()

	select {
	case err := <-done:
		require.EqualError(t, err, "database down", "the handler's error, not the context's")
	case <-time.After(10 * time.Second):
		t.Fatal("the retry did not stop waiting")
	}
	assert.Equal(t, 1, h.attempts())
}
