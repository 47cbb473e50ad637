package messaging

import (
	"context"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/cenkalti/backoff/v5"
)

// retry retries a transiently failing handler with exponential backoff and
// jitter, and returns a Permanent error at once.
//
// It stands in for Watermill's middleware.Retry (v1.5.1), which asks its
// backoff for an interval to pass to ShouldRetry and again to OnRetryHook on
// top of the one it waits: every call advances the schedule, so with 100 ms
// doubling to 5 s it waited about 0.1, 1.2, 4, 4.5 and 6 s instead of 0.1,
// 0.2, 0.4, 0.8 and 1.6 s (ThreeDotsLabs/watermill PR #690 fixes it and is
// not released). Here the schedule is asked for exactly one interval per
// retry, and that interval is the one waited. The schedule itself is
// cenkalti/backoff's ExponentialBackOff, as in Watermill.
type retry struct {
	maxRetries  int
	initial     time.Duration
	max         time.Duration
	multiplier  float64
	jitter      float64 // the randomization factor: a wait is d·(1±jitter)
	shouldRetry func(error) bool
	log         watermill.LoggerAdapter
	// wait sleeps for d or until ctx ends; tests replace it.
	wait func(ctx context.Context, d time.Duration) error
}

// newRetry is the retry middleware of a router configured by cfg (after
// withDefaults).
func newRetry(cfg RouterConfig, log watermill.LoggerAdapter) retry {
	return retry{
		maxRetries: cfg.MaxRetries, initial: cfg.RetryInitial, max: cfg.RetryMax,
		multiplier: 2, jitter: 0.5,
		shouldRetry: func(err error) bool { return !IsPermanent(err) },
		log:         log,
		wait:        sleepContext,
	}
}

func (r retry) schedule() *backoff.ExponentialBackOff {
	b := backoff.NewExponentialBackOff()
	b.InitialInterval = r.initial
	b.MaxInterval = r.max
	b.Multiplier = r.multiplier
	b.RandomizationFactor = r.jitter
	b.Reset()
	return b
}

// Middleware runs h until it succeeds, fails permanently, or failed
// 1+maxRetries times. Each attempt gets the message's original context (a
// timed-out attempt's context would fail the next one at once).
func (r retry) Middleware(h message.HandlerFunc) message.HandlerFunc {
	return func(msg *message.Message) ([]*message.Message, error) {
		ctx := msg.Context()
		schedule := r.schedule()
		for attempt := 0; ; attempt++ {
			msg.SetContext(ctx)
			out, err := h(msg)
			if err == nil {
				return out, nil
			}
			if attempt >= r.maxRetries || (r.shouldRetry != nil && !r.shouldRetry(err)) {
				return out, err
			}
			delay := schedule.NextBackOff()
			if r.log != nil {
				r.log.Error("Error occurred, retrying", err, watermill.LogFields{
					"retry_no": attempt + 1, "max_retries": r.maxRetries, "wait_time": delay,
				})
			}
			if werr := r.wait(ctx, delay); werr != nil {
				return out, err
			}
		}
	}
}

func sleepContext(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
