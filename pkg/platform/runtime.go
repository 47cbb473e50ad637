package platform

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"golang.org/x/sync/errgroup"

	"github.com/orderflow/orderflow/pkg/messaging"
	"github.com/orderflow/orderflow/pkg/observability"
	"github.com/orderflow/orderflow/pkg/outbox"
)

// Component states, as /readyz reports them.
const (
	StateUp         = "up"
	StateDown       = "down"
	StateConnecting = "connecting"
	// StateUnauthorized: RabbitMQ answers but refuses the credentials (or
	// the user's access to the vhost); the runtime keeps retrying.
	StateUnauthorized = "unauthorized"
)

// Runtime runs everything of a service that needs RabbitMQ: the router with
// its event handlers and the outbox forwarder. It keeps no part of the
// service waiting for the broker: Run connects in the background, retrying,
// and rebuilds the router and forwarder if they stop while the service runs.
type Runtime struct {
	Broker    messaging.BrokerConfig
	Router    messaging.RouterConfig // PoisonPublisher is set by Run
	Forwarder outbox.ForwarderConfig
	// Outbox is the database whose outbox the forwarder relays.
	Outbox *sql.DB
	// Register adds the service's event handlers.
	Register func(*messaging.EventProcessor) error
	Log      watermill.LoggerAdapter

	broker    atomic.Pointer[messaging.Broker]
	refused   atomic.Bool // the last connection attempt was refused access
	routerUp  atomic.Bool
	forwardUp atomic.Bool
	readyOnce sync.Once
	markReady sync.Once
	ready     chan struct{}
}

// Run runs until ctx ends. It returns an error only for a configuration
// mistake (a handler that cannot be registered); broker trouble is retried.
func (r *Runtime) Run(ctx context.Context) error {
	bcfg := r.Broker
	bcfg.OnDial = func(err error) {
		r.refused.Store(messaging.IsAccessRefused(err))
		if r.Broker.OnDial != nil {
			r.Broker.OnDial(err)
		}
	}
	delay := 100 * time.Millisecond
	for {
		b, err := messaging.ConnectBroker(ctx, bcfg, r.Log)
		if err != nil { // messaging.ConnectBroker gives up only when ctx ends
			return ignoreStop(ctx, err)
		}
		r.broker.Store(b)
		err = r.runOnce(ctx, b)
		r.broker.Store(nil)
		if cerr := b.Close(); cerr != nil {
			r.Log.Error("close broker", cerr, nil)
		}
		if err == nil { // runOnce returns nil only when ctx ended
			return nil
		}
		var cfgErr configError
		if errors.As(err, &cfgErr) {
			return cfgErr.err
		}
		r.Log.Error("messaging stopped, restarting", err, watermill.LogFields{"retry_in": delay.String()})
		if !sleep(ctx, delay) {
			return nil
		}
		delay = min(delay*2, 5*time.Second)
	}
}

// sleep waits for d, or less if ctx ends; it reports whether ctx is alive.
func sleep(ctx context.Context, d time.Duration) bool {
	select {
	case <-ctx.Done():
		return false
	case <-time.After(d):
		return true
	}
}

// ignoreStop drops err when ctx has ended: stopping is not a failure.
func ignoreStop(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return nil //nolint:nilerr // the point of this function
	}
	return err
}

type configError struct{ err error }

func (e configError) Error() string { return e.err.Error() }

func (r *Runtime) runOnce(ctx context.Context, b *messaging.Broker) error {
	rcfg := r.Router
	rcfg.PoisonPublisher = b.Publisher() // messaging.NewRouter wraps it in a tracing publisher
	router, err := messaging.NewRouter(rcfg, r.Log)
	if err != nil {
		return configError{err}
	}
	proc, err := messaging.NewEventProcessor(router, rcfg.Service, b.Subscribers(), r.Log)
	if err != nil {
		return configError{err}
	}
	if err := r.Register(proc); err != nil {
		return configError{fmt.Errorf("register handlers: %w", err)}
	}
	fwd, err := outbox.NewForwarder(r.Outbox, observability.ForwarderPublisher(b.Publisher(), r.Router.Otel...), r.Forwarder, r.Log)
	if err != nil {
		return configError{err}
	}

	g, gctx := errgroup.WithContext(ctx)
	// Handlers get a context that SIGTERM does not cancel: Close below lets
	// in-flight handlers finish (bounded by the router's CloseTimeout), where
	// a cancelled context would fail them halfway.
	g.Go(func() error {
		if err := router.Run(context.WithoutCancel(gctx)); err != nil {
			return fmt.Errorf("router: %w", err)
		}
		return errors.New("router stopped")
	})
	g.Go(func() error {
		if err := fwd.Run(gctx); err != nil {
			return fmt.Errorf("forwarder: %w", err)
		}
		return errors.New("forwarder stopped")
	})
	g.Go(func() error {
		select {
		case <-router.Running():
			r.routerUp.Store(true)
		case <-gctx.Done():
		}
		select {
		case <-fwd.Running():
			r.forwardUp.Store(true)
			r.markReady.Do(func() { close(r.readyCh()) })
		case <-gctx.Done():
		}
		<-gctx.Done()
		r.routerUp.Store(false)
		r.forwardUp.Store(false)
		return errors.Join(router.Close(), fwd.Close())
	})
	if err := g.Wait(); err != nil && ctx.Err() == nil {
		return err
	}
	return nil
}

// PoisonDepth is how many messages wait in the service's poison queue.
func (r *Runtime) PoisonDepth(context.Context) (int64, error) {
	b := r.broker.Load()
	if b == nil {
		return 0, errors.New("not connected to rabbitmq")
	}
	n, err := b.QueueDepth(messaging.PoisonQueue(r.Router.Service))
	return int64(n), err
}

// Status reports the broker, router and forwarder for /readyz.
func (r *Runtime) Status() map[string]string {
	s := map[string]string{"broker": StateConnecting, "router": StateDown, "forwarder": StateDown}
	if r.refused.Load() {
		s["broker"] = StateUnauthorized
	}
	if b := r.broker.Load(); b != nil {
		s["broker"] = StateDown
		if b.Connected() {
			s["broker"] = StateUp
		}
	}
	if r.routerUp.Load() {
		s["router"] = StateUp
	}
	if r.forwardUp.Load() {
		s["forwarder"] = StateUp
	}
	return s
}

// Ready returns a channel that is closed once the router and forwarder ran
// for the first time, for tests and for work that needs them.
func (r *Runtime) Ready() <-chan struct{} { return r.readyCh() }

func (r *Runtime) readyCh() chan struct{} {
	r.readyOnce.Do(func() { r.ready = make(chan struct{}) })
	return r.ready
}
