package groupcommit_test

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/orderflow/orderflow/pkg/groupcommit"
)

// recorder is a batch function that records the batches it ran. While gate
// is set, every batch waits for it, so that a test decides when batches end.
type recorder struct {
	mu      sync.Mutex
	batches [][]int
	started chan int // the size of each batch as it starts
	gate    chan struct{}
	fail    func(batch []int) error
}

func newRecorder() *recorder { return &recorder{started: make(chan int, 100)} }

func (r *recorder) fn(ctx context.Context, items []groupcommit.Item[int]) ([]groupcommit.Result[string], error) {
	ins := make([]int, len(items))
	for i, it := range items {
		ins[i] = it.In
	}
	r.started <- len(ins)
	if r.gate != nil {
		select {
		case <-r.gate:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	r.mu.Lock()
	r.batches = append(r.batches, ins)
	r.mu.Unlock()
	if r.fail != nil {
		if err := r.fail(ins); err != nil {
			return nil, err
		}
	}
	out := make([]groupcommit.Result[string], len(ins))
	for i, in := range ins {
		if in < 0 {
			out[i].Err = fmt.Errorf("negative %d", in)
			continue
		}
		out[i].Out = fmt.Sprint("done ", in)
	}
	return out, nil
}

func TestDo_alone_runs_at_once(t *testing.T) {
	t.Parallel()
	r := newRecorder()
	c := groupcommit.New(r.fn, groupcommit.Config{})
	out, err := c.Do(t.Context(), 7)
	require.NoError(t, err)
	assert.Equal(t, "done 7", out)
	assert.Equal(t, [][]int{{7}}, r.batches)
}

// TestDo_a_call_that_finds_the_committer_idle_runs_its_batch_itself looks
// for the test's own frame in the batch function's stack: it is there only
// if the batch ran on the goroutine that called Do.
func TestDo_a_call_that_finds_the_committer_idle_runs_its_batch_itself(t *testing.T) {
	t.Parallel()
	var onCaller bool
	c := groupcommit.New(func(_ context.Context, items []groupcommit.Item[int]) ([]groupcommit.Result[string], error) {
		pcs := make([]uintptr, 64)
		frames := runtime.CallersFrames(pcs[:runtime.Callers(1, pcs)])
		for {
			f, more := frames.Next()
			onCaller = onCaller || strings.HasSuffix(f.Function, ".TestDo_a_call_that_finds_the_committer_idle_runs_its_batch_itself")
			if !more {
				break
			}
		}
		return make([]groupcommit.Result[string], len(items)), nil
	}, groupcommit.Config{})
	_, err := c.Do(t.Context(), 1)
	require.NoError(t, err)
	assert.True(t, onCaller, "the batch ran on another goroutine")
}

// TestDo_a_leading_call_answers_without_waiting_for_the_next_batch holds
// the second batch (the calls that queued behind the first) and expects
// the first call, whose goroutine ran the first batch, to return meanwhile.
func TestDo_a_leading_call_answers_without_waiting_for_the_next_batch(t *testing.T) {
	t.Parallel()
	started := make(chan []int, 10)
	gates := []chan struct{}{make(chan struct{}), make(chan struct{})}
	var batches atomic.Int32
	c := groupcommit.New(func(ctx context.Context, items []groupcommit.Item[int]) ([]groupcommit.Result[string], error) {
		ins := make([]int, len(items))
		for i, it := range items {
			ins[i] = it.In
		}
		started <- ins
		<-gates[batches.Add(1)-1]
		out := make([]groupcommit.Result[string], len(items))
		for i, in := range ins {
			out[i].Out = fmt.Sprint("done ", in)
		}
		return out, nil
	}, groupcommit.Config{Concurrency: 1})

	first := make(chan string, 1)
	go func() { out, _ := c.Do(t.Context(), 0); first <- out }()
	require.Equal(t, []int{0}, <-started)
	var wg sync.WaitGroup
	for i := 1; i <= 2; i++ {
		wg.Go(func() {
			out, err := c.Do(t.Context(), i)
			assert.NoError(t, err)
			assert.Equal(t, fmt.Sprint("done ", i), out)
		})
	}
	waitPending(t, c, 2)
	close(gates[0])
	second := slices.Clone(<-started)
	slices.Sort(second)
	assert.Equal(t, []int{1, 2}, second, "the calls that queued form the next batch")
	assert.Equal(t, "done 0", <-first, "the first call answers while the next batch runs")
	close(gates[1])
	wg.Wait()
}

// TestDo_batches_deterministically queues calls while the only slot is
// held, so the next batch is exactly the calls that queued.
func TestDo_batches_deterministically(t *testing.T) {
	t.Parallel()
	r := newRecorder()
	r.gate = make(chan struct{})
	c := groupcommit.New(r.fn, groupcommit.Config{Concurrency: 1, MaxBatch: 3})

	var wg sync.WaitGroup
	wg.Go(func() { _, _ = c.Do(t.Context(), 0) })
	require.Equal(t, 1, <-r.started)
	for i := 1; i <= 5; i++ {
		wg.Go(func() { _, _ = c.Do(t.Context(), i) })
	}
	waitPending(t, c, 5)
	close(r.gate)
	wg.Wait()
	require.Len(t, r.batches, 3, "the first call alone, then the five that queued, at most MaxBatch at a time")
	got := append(slices.Clone(r.batches[1]), r.batches[2]...)
	slices.Sort(got)
	assert.Equal(t, []int{1, 2, 3, 4, 5}, got)
	assert.Len(t, r.batches[1], 3)
}

// waitPending polls, with a deadline, until n calls are queued behind the
// running batch: Do of each has appended its call before it blocks.
func waitPending(t *testing.T, c *groupcommit.Committer[int, string], n int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for groupcommit.Pending(c) < n {
		if time.Now().After(deadline) {
			t.Fatalf("only %d calls queued, want %d", groupcommit.Pending(c), n)
		}
		time.Sleep(time.Millisecond)
	}
}

func TestDo_a_failed_batch_runs_each_call_alone(t *testing.T) {
	t.Parallel()
	r := newRecorder()
	r.gate = make(chan struct{})
	boom := errors.New("boom")
	r.fail = func(batch []int) error {
		if slices.Contains(batch, 13) {
			return boom
		}
		return nil
	}
	c := groupcommit.New(r.fn, groupcommit.Config{Concurrency: 1})

	var wg sync.WaitGroup
	wg.Go(func() { _, _ = c.Do(t.Context(), 0) })
	require.Equal(t, 1, <-r.started)
	errs := make(map[int]error)
	var mu sync.Mutex
	for _, in := range []int{1, 13, 2, -4} {
		wg.Go(func() {
			_, err := c.Do(t.Context(), in)
			mu.Lock()
			errs[in] = err
			mu.Unlock()
		})
	}
	waitPending(t, c, 4)
	close(r.gate)
	wg.Wait()

	require.ErrorIs(t, errs[13], boom, "the bad call gets the batch's error")
	assert.NoError(t, errs[1], "its neighbours commit without it")
	assert.NoError(t, errs[2])
	assert.EqualError(t, errs[-4], "negative -4", "a call's own error is its own")
	// 0 alone, the batch of four (failed), then each of the four alone.
	assert.Len(t, r.batches, 6)
}

func TestDo_returns_when_its_context_ends(t *testing.T) {
	t.Parallel()
	r := newRecorder()
	r.gate = make(chan struct{})
	c := groupcommit.New(r.fn, groupcommit.Config{Concurrency: 1})

	var wg sync.WaitGroup
	wg.Go(func() { _, _ = c.Do(t.Context(), 0) })
	require.Equal(t, 1, <-r.started)

	ctx, cancel := context.WithCancel(t.Context())
	errc := make(chan error, 1)
	go func() {
		_, err := c.Do(ctx, 1)
		errc <- err
	}()
	waitPending(t, c, 1)
	cancel()
	require.ErrorIs(t, <-errc, context.Canceled)
	close(r.gate)
	wg.Wait()
	// The cancelled call never reached a transaction.
	out, err := c.Do(t.Context(), 2)
	require.NoError(t, err)
	assert.Equal(t, "done 2", out)
	assert.Equal(t, [][]int{{0}, {2}}, r.batches)
}

func TestDo_batch_context_lives_while_any_caller_waits(t *testing.T) {
	t.Parallel()
	r := newRecorder()
	r.gate = make(chan struct{})
	var batchCtx context.Context
	started := make(chan struct{})
	c := groupcommit.New(func(ctx context.Context, items []groupcommit.Item[int]) ([]groupcommit.Result[string], error) {
		batchCtx = ctx
		close(started)
		<-ctx.Done()
		return nil, ctx.Err()
	}, groupcommit.Config{})

	ctx1, cancel1 := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { _, err := c.Do(ctx1, 1); done <- err }()
	<-started
	cancel1()
	require.ErrorIs(t, <-done, context.Canceled)
	select {
	case <-batchCtx.Done(): // its only caller left: the transaction is abandoned
	case <-time.After(5 * time.Second):
		t.Fatal("the batch context outlived every caller")
	}
}

func TestDo_result_count_mismatch_is_an_error(t *testing.T) {
	t.Parallel()
	c := groupcommit.New(func(context.Context, []groupcommit.Item[int]) ([]groupcommit.Result[string], error) {
		return nil, nil
	}, groupcommit.Config{})
	_, err := c.Do(t.Context(), 1)
	require.ErrorContains(t, err, "result count")
}

func TestDo_traces_a_batch_with_links_to_its_calls(t *testing.T) {
	t.Parallel()
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	tracer := tp.Tracer("test")
	r := newRecorder()
	r.gate = make(chan struct{})
	c := groupcommit.New(r.fn, groupcommit.Config{Name: "orders.insert", Concurrency: 1, Tracer: tracer})

	var wg sync.WaitGroup
	wg.Go(func() { _, _ = c.Do(t.Context(), 0) })
	require.Equal(t, 1, <-r.started)
	var callers []string
	var mu sync.Mutex
	for i := 1; i <= 3; i++ {
		wg.Go(func() {
			ctx, span := tracer.Start(t.Context(), fmt.Sprint("call ", i))
			defer span.End()
			mu.Lock()
			callers = append(callers, span.SpanContext().SpanID().String())
			mu.Unlock()
			_, _ = c.Do(ctx, i)
		})
	}
	waitPending(t, c, 3)
	close(r.gate)
	wg.Wait()

	var batch sdktrace.ReadOnlySpan
	for _, s := range rec.Ended() {
		if s.Name() == "orders.insert batch" {
			batch = s
		}
	}
	require.NotNil(t, batch, "a batch of several calls has a span")
	ids := []string{batch.Parent().SpanID().String()}
	for _, l := range batch.Links() {
		ids = append(ids, l.SpanContext.SpanID().String())
	}
	slices.Sort(ids)
	slices.Sort(callers)
	assert.Equal(t, callers, ids, "the batch continues the first call's trace and links the others")
}

func TestDo_records_batch_sizes(t *testing.T) {
	t.Parallel()
	reader := sdkmetric.NewManualReader()
	sizes, err := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader)).Meter("test").Int64Histogram("batch")
	require.NoError(t, err)
	r := newRecorder()
	r.gate = make(chan struct{})
	c := groupcommit.New(r.fn, groupcommit.Config{Name: "orders.create", Concurrency: 1, Sizes: sizes})

	var wg sync.WaitGroup
	wg.Go(func() { _, _ = c.Do(t.Context(), 0) })
	require.Equal(t, 1, <-r.started)
	for i := 1; i <= 3; i++ {
		wg.Go(func() { _, _ = c.Do(t.Context(), i) })
	}
	waitPending(t, c, 3)
	close(r.gate)
	wg.Wait()

	var rm metricdata.ResourceMetrics
	require.NoError(t, reader.Collect(t.Context(), &rm))
	require.Len(t, rm.ScopeMetrics, 1)
	hist, ok := rm.ScopeMetrics[0].Metrics[0].Data.(metricdata.Histogram[int64])
	require.True(t, ok)
	require.Len(t, hist.DataPoints, 1)
	dp := hist.DataPoints[0]
	assert.Equal(t, uint64(2), dp.Count, "two batches: the first call alone, then the three that queued")
	assert.Equal(t, int64(4), dp.Sum)
	op, _ := dp.Attributes.Value("operation")
	assert.Equal(t, "orders.create", op.AsString())
}

func TestDo_a_panicking_batch_fails_its_calls_not_the_process(t *testing.T) {
	t.Parallel()
	r := newRecorder()
	r.gate = make(chan struct{})
	r.fail = func(batch []int) error {
		if slices.Contains(batch, 66) {
			panic("bug")
		}
		return nil
	}
	c := groupcommit.New(r.fn, groupcommit.Config{Name: "orders.create", Concurrency: 1})

	var wg sync.WaitGroup
	wg.Go(func() { _, _ = c.Do(t.Context(), 0) })
	require.Equal(t, 1, <-r.started)
	errs := make([]error, 2)
	for i, in := range []int{1, 66} {
		wg.Go(func() { _, errs[i] = c.Do(t.Context(), in) })
	}
	waitPending(t, c, 2)
	close(r.gate)
	wg.Wait()
	assert.NoError(t, errs[0], "its neighbour commits alone")
	require.ErrorContains(t, errs[1], "orders.create panicked: bug")
}
