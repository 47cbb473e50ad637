// Package groupcommit runs concurrent calls of one operation in shared
// database transactions: group commit in the application.
//
// Every order, invoice and status change is one short transaction, and the
// cost of such a transaction is mostly fixed: BEGIN, COMMIT, a WAL flush and
// the round trips between them. A Committer lets the callers that arrive while
// earlier transactions are in flight share the next one, so under load N
// orders cost one commit instead of N, while a lone call still runs at once:
// batches form only from calls that would otherwise have queued for a
// connection, so there is no linger and no timer.
//
// A batch is all or nothing per call: each call learns its own outcome only
// after the transaction that carried it committed (or failed). When a batch
// fails as a whole, every call in it runs again alone, so that one bad call
// cannot fail its neighbours and each caller gets its own error. A panic in
// a batch is such a failure too.
package groupcommit

import (
	"context"
	"errors"
	"fmt"
	"runtime/debug"
	"sync"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"
)

// Item is one call: its context and its input.
type Item[In any] struct {
	Ctx context.Context
	In  In
}

// Result is one call's outcome. Err set here is the call's own failure (say,
// an idempotency key reused): it fails the call, not the batch.
type Result[Out any] struct {
	Out Out
	Err error
}

// Func runs a batch in one transaction. It returns one Result per item, in
// the items' order, or an error when the transaction as a whole failed and
// nothing was committed. ctx carries the first call's trace and values; it
// is cancelled only once every caller has gone.
type Func[In, Out any] func(ctx context.Context, batch []Item[In]) ([]Result[Out], error)

// Config configures a Committer.
type Config struct {
	// Name names the batch spans ("<Name> batch").
	Name string
	// MaxBatch caps the calls one transaction carries (default 64).
	MaxBatch int
	// Concurrency is how many batches may be in flight at once (default 4).
	// Calls form a batch only while this many are running.
	Concurrency int
	// Tracer, when set, records a span per batch, linked to each call's span.
	Tracer trace.Tracer
	// Sizes, when set, records the size of every batch.
	Sizes metric.Int64Histogram
}

// Committer batches calls of one Func. Its zero value is not usable; use New.
// It needs no Close: its goroutines exit when there is nothing to run.
type Committer[In, Out any] struct {
	fn    Func[In, Out]
	cfg   Config
	attrs metric.MeasurementOption // the operation's attribute set, built once

	mu      sync.Mutex
	pending []*call[In, Out]
	running int
}

type call[In, Out any] struct {
	item Item[In]
	res  Result[Out]
	done chan struct{}
}

// New returns a Committer that runs fn.
func New[In, Out any](fn Func[In, Out], cfg Config) *Committer[In, Out] {
	if cfg.MaxBatch <= 0 {
		cfg.MaxBatch = 64
	}
	if cfg.Concurrency <= 0 {
		cfg.Concurrency = 4
	}
	return &Committer[In, Out]{fn: fn, cfg: cfg, attrs: metric.WithAttributeSet(attribute.NewSet(attribute.String("operation", cfg.Name)))}
}

// Do runs in with the calls around it and returns its outcome once the
// transaction that carried it has finished. If ctx ends first, Do returns
// ctx's error; the call may still commit, as any query cancelled during its
// COMMIT may.
//
// A call that finds a batch slot free runs the batch itself, on its caller's
// goroutine, and hands whatever queued meanwhile to a goroutine of its own
// once its outcome is known. At moderate load most calls find the committer
// idle, and each then costs no goroutine start, no stack growth on a fresh
// goroutine and no hand-off to another thread on its way to the database and
// back. Such a call returns when its batch ends, even if ctx ended first; the
// batch's context ends with the last of its callers' (see batchContext).
func (c *Committer[In, Out]) Do(ctx context.Context, in In) (Out, error) {
	cl := &call[In, Out]{item: Item[In]{Ctx: ctx, In: in}, done: make(chan struct{})}
	c.mu.Lock()
	c.pending = append(c.pending, cl)
	lead := c.running < c.cfg.Concurrency
	if lead {
		c.running++
	}
	c.mu.Unlock()
	if lead {
		c.work(cl)
	}
	select {
	case <-cl.done:
		return cl.res.Out, cl.res.Err
	case <-ctx.Done():
		var zero Out
		return zero, ctx.Err()
	}
}

// work runs batches until nothing is pending. A caller that took a free
// slot runs it with own, its call: it stops once own has its outcome and
// hands the slot, if calls are pending, to a goroutine of its own, so that
// its caller can answer without waiting for the batches of others.
func (c *Committer[In, Out]) work(own *call[In, Out]) {
	for {
		c.mu.Lock()
		if len(c.pending) == 0 { // for a caller: own is done, or another slot's batch carries it
			c.running--
			c.mu.Unlock()
			return
		}
		if own != nil && own.finished() {
			c.mu.Unlock()
			go c.work(nil)
			return
		}
		n := min(len(c.pending), c.cfg.MaxBatch)
		batch := make([]*call[In, Out], n)
		copy(batch, c.pending)
		clear(c.pending[:n]) // no references kept for the collector
		c.pending = c.pending[n:]
		if len(c.pending) == 0 {
			c.pending = nil
		}
		c.mu.Unlock()
		c.run(batch)
	}
}

// finished reports whether the call has its outcome.
func (cl *call[In, Out]) finished() bool {
	select {
	case <-cl.done:
		return true
	default:
		return false
	}
}

// run runs one batch and hands every call its result.
func (c *Committer[In, Out]) run(batch []*call[In, Out]) {
	live := batch[:0:0]
	for _, cl := range batch {
		if err := cl.item.Ctx.Err(); err != nil { // its caller has gone
			cl.res.Err = err
			close(cl.done)
			continue
		}
		live = append(live, cl)
	}
	if len(live) == 0 {
		return
	}
	if len(live) > 1 && c.runBatch(live) {
		return
	}
	for _, cl := range live { // alone: a batch of one, or each call of a failed batch
		c.runBatch([]*call[In, Out]{cl})
	}
}

// runBatch runs fn once for calls. It reports false, handing out nothing,
// when a batch of several failed as a whole.
func (c *Committer[In, Out]) runBatch(calls []*call[In, Out]) bool {
	ctx, cancel := batchContext(calls)
	defer cancel()
	items := make([]Item[In], len(calls))
	for i, cl := range calls {
		items[i] = cl.item
	}
	if c.cfg.Sizes != nil {
		c.cfg.Sizes.Record(ctx, int64(len(items)), c.attrs)
	}
	var span trace.Span
	if c.cfg.Tracer != nil && len(items) > 1 {
		links := make([]trace.Link, 0, len(items)-1)
		for _, it := range items[1:] {
			if sc := trace.SpanContextFromContext(it.Ctx); sc.IsValid() {
				links = append(links, trace.Link{SpanContext: sc})
			}
		}
		ctx, span = c.cfg.Tracer.Start(ctx, c.cfg.Name+" batch", trace.WithLinks(links...),
			trace.WithAttributes(attribute.Int("orderflow.batch.size", len(items))))
	}
	results, err := c.call(ctx, items)
	if err == nil && len(results) != len(items) {
		err = errors.New("groupcommit: the batch function returned a result count that does not match its items")
	}
	if span != nil { // ended before the callers learn their outcome, so their spans end after it
		if err != nil {
			span.RecordError(err)
			span.SetStatus(codes.Error, err.Error())
		}
		span.End()
	}
	if err != nil {
		if len(calls) > 1 {
			return false
		}
		calls[0].res.Err = err
		close(calls[0].done)
		return true
	}
	for i, cl := range calls {
		cl.res = results[i]
		close(cl.done)
	}
	return true
}

// call runs fn, turning a panic into the batch's error: fn runs for several
// callers, often on a goroutine of the committer's own, outside the HTTP or
// message handler whose recoverer would otherwise have caught it; a bug in
// one batch must fail its calls, not the process or a neighbour's request.
func (c *Committer[In, Out]) call(ctx context.Context, items []Item[In]) (results []Result[Out], err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("groupcommit: %s panicked: %v\n%s", c.cfg.Name, p, debug.Stack())
		}
	}()
	return c.fn(ctx, items)
}

// batchContext returns the context a batch runs in: the first call's values
// (its trace, its correlation id), cancelled only when every call's context
// has ended, since a transaction others still wait for must not die with
// one caller.
func batchContext[In, Out any](calls []*call[In, Out]) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancel(context.WithoutCancel(calls[0].item.Ctx))
	var mu sync.Mutex
	left := len(calls)
	stops := make([]func() bool, len(calls))
	for i, cl := range calls {
		stops[i] = context.AfterFunc(cl.item.Ctx, func() {
			mu.Lock()
			left--
			last := left == 0
			mu.Unlock()
			if last {
				cancel()
			}
		})
	}
	return ctx, func() {
		for _, stop := range stops {
			stop()
		}
		cancel()
	}
}
