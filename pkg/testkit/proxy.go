package testkit

import (
	"context"
	"errors"
	"io"
	"maps"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// Proxy is a loopback TCP proxy a test puts between one process and a
// server (RabbitMQ), to cut that process off without disturbing tests that
// run in parallel against the same server. With several targets it is a
// load balancer, as in front of a cluster (see NewBalancer).
type Proxy struct {
	targets  []string
	next     atomic.Uint64
	failover bool // every connection to the first target that accepts
	ln       net.Listener

	mu    sync.Mutex
	cut   bool
	conns map[net.Conn]struct{}
	open  map[string]int // open connections per target
	wg    sync.WaitGroup
	sends atomic.Int64
}

// NewProxy listens on 127.0.0.1:0 and forwards every connection to target.
// It is closed when the test ends.
func NewProxy(tb testing.TB, target string) *Proxy {
	tb.Helper()
	return NewBalancer(tb, target)
}

// NewBalancer listens on 127.0.0.1:0 and sends each new connection to the
// next of targets in turn that accepts it, skipping the ones that refuse
// (a stopped node), the way a cloud TCP load balancer in front of a
// cluster does: Amazon MQ's single endpoint of a RabbitMQ cluster. Open
// connections stay where they are; a target that goes away closes its own.
// It is closed when the test ends.
func NewBalancer(tb testing.TB, targets ...string) *Proxy {
	tb.Helper()
	return newProxy(tb, false, targets)
}

// NewFailoverBalancer is NewBalancer that sends each new connection to the
// first of targets, in their order, that accepts it: while the first one
// runs, every client is on it, and when it goes away every client moves to
// the next. It is the worst case for the loss of one target that a
// balancer in front of a cluster can produce.
func NewFailoverBalancer(tb testing.TB, targets ...string) *Proxy {
	tb.Helper()
	return newProxy(tb, true, targets)
}

func newProxy(tb testing.TB, failover bool, targets []string) *Proxy {
	tb.Helper()
	if len(targets) == 0 {
		tb.Fatal("balancer: no targets")
	}
	ln, err := (&net.ListenConfig{}).Listen(context.Background(), "tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatalf("proxy listen: %v", err)
	}
	p := &Proxy{targets: targets, failover: failover, ln: ln, conns: map[net.Conn]struct{}{}, open: map[string]int{}}
	p.wg.Add(1)
	go p.accept()
	tb.Cleanup(p.close)
	return p
}

// Addr is the proxy's host:port.
func (p *Proxy) Addr() string { return p.ln.Addr().String() }

// Sends is how many times a client's data reached the proxy. A client of
// a request-response protocol (PostgreSQL's) sends once per round trip and
// then waits for the answer, so the difference between two readings is the
// round trips made in between.
func (p *Proxy) Sends() int64 { return p.sends.Load() }

// Cut drops every open connection and refuses new ones until Restore.
func (p *Proxy) Cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.cut = true
	for c := range p.conns {
		_ = c.Close()
	}
}

// Open returns how many connections are open to each target.
func (p *Proxy) Open() map[string]int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return maps.Clone(p.open)
}

// Restore lets connections through again.
func (p *Proxy) Restore() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.cut = false
}

func (p *Proxy) close() {
	_ = p.ln.Close()
	p.Cut()
	p.wg.Wait()
}

func (p *Proxy) track(c net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cut {
		return false
	}
	p.conns[c] = struct{}{}
	return true
}

func (p *Proxy) untrack(c net.Conn) {
	p.mu.Lock()
	defer p.mu.Unlock()
	delete(p.conns, c)
}

func (p *Proxy) accept() {
	defer p.wg.Done()
	for {
		client, err := p.ln.Accept()
		if err != nil {
			return
		}
		if !p.track(client) {
			_ = client.Close()
			continue
		}
		p.wg.Add(1)
		go p.serve(client)
	}
}

func (p *Proxy) serve(client net.Conn) {
	defer p.wg.Done()
	defer p.untrack(client)
	defer client.Close()
	server, target, err := p.dial()
	if err != nil {
		return
	}
	if !p.track(server) {
		_ = server.Close()
		return
	}
	defer p.untrack(server)
	p.count(target, 1)
	defer p.count(target, -1)
	defer server.Close()
	done := make(chan struct{}, 2)
	pipe := func(dst, src net.Conn) {
		_, _ = io.Copy(dst, src) // ends with an error when the proxy cuts the link
		_ = dst.Close()
		_ = src.Close()
		done <- struct{}{}
	}
	go pipe(server, countingConn{Conn: client, n: &p.sends})
	go pipe(client, server)
	<-done
	<-done
}

// dial connects to the next target that accepts, starting after the one
// the previous connection went to (or at the first, for failover).
func (p *Proxy) dial() (net.Conn, string, error) {
	var start uint64
	if !p.failover {
		start = p.next.Add(1) - 1
	}
	var errs []error
	for i := range uint64(len(p.targets)) {
		target := p.targets[(start+i)%uint64(len(p.targets))]
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		c, err := (&net.Dialer{}).DialContext(ctx, "tcp", target)
		cancel()
		if err == nil {
			return c, target, nil
		}
		errs = append(errs, err)
	}
	return nil, "", errors.Join(errs...)
}

func (p *Proxy) count(target string, d int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.open[target] += d
	if p.open[target] == 0 {
		delete(p.open, target)
	}
}

// countingConn counts the reads that returned data.
type countingConn struct {
	net.Conn
	n *atomic.Int64
}

func (c countingConn) Read(b []byte) (int, error) {
	n, err := c.Conn.Read(b)
	if n > 0 {
		c.n.Add(1)
	}
	return n, err //nolint:wrapcheck // io.Copy expects the connection's own errors
}
