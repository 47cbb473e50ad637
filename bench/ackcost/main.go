// Command ackcost measures what RabbitMQ spends per message on a quorum
// queue (or a classic one, --queue classic), with confirmed publishes and
// manual acks, in two ways each:
//   - acks: each message acked on its own, one at a time per channel over
//     16 channels, as watermill-amqp's subscriber does (single); or up to 64
//     messages of one channel at once, acked with AMQP's multiple flag
//     (coalesced);
//   - publishes: each waiting for its confirm on a channel of its own, as
//     watermill-amqp's publisher does (each); or several in flight per
//     channel, confirms collected as they come (pipelined).
//
// It reads RabbitMQ's CPU time from /proc, so it must run on the broker's
// host. Its figures are in docs/performance.md ("What limits the flow now").
//
//	go run ./bench/ackcost --mode single --publish each
//	go run ./bench/ackcost --mode coalesced --publish pipelined
//	go run ./bench/ackcost --mode single --publish pipelined --queue classic
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
)

func main() {
	mode := flag.String("mode", "single", "single: 16 channels, each message acked on its own; coalesced: one channel, acks with multiple")
	pub := flag.String("publish", "each", "each: 32 channels, a publish waits for its confirm (watermill-amqp); pipelined: 4 channels, publishes without waiting, confirms collected as they come")
	rate := flag.Int("rate", 2600, "messages published per second")
	queueType := flag.String("queue", "quorum", "quorum, or classic (version 2)")
	url := flag.String("url", "amqp://guest:guest@127.0.0.1:5672/", "RabbitMQ (on this host)")
	flag.Parse()
	if err := run(*mode, *pub, *queueType, *rate, *url); err != nil {
		fmt.Fprintln(os.Stderr, "ackcost:", err)
		os.Exit(1)
	}
}

func queueArgs(queueType string) amqp.Table {
	if queueType == "classic" {
		return amqp.Table{"x-queue-type": "classic", "x-queue-version": int32(2)}
	}
	return amqp.Table{"x-queue-type": "quorum"}
}

const handlerTime = 2 * time.Millisecond // what a handler takes, roughly

func run(mode, pub, queueType string, rate int, url string) error {
	pid, err := beamPID()
	if err != nil {
		return err
	}
	conn, err := amqp.Dial(url)
	if err != nil {
		return fmt.Errorf("connect: %w", err)
	}
	defer conn.Close()
	ch, err := conn.Channel()
	if err != nil {
		return fmt.Errorf("channel: %w", err)
	}
	queue := "ackcost-" + mode
	if _, err := ch.QueueDeclare(queue, true, false, false, false, queueArgs(queueType)); err != nil {
		return fmt.Errorf("declare %s: %w", queue, err)
	}
	defer func() { _, _ = ch.QueueDelete(queue, false, false, false) }()

	var handled atomic.Int64
	switch mode {
	case "single":
		err = consumeSingle(conn, queue, &handled)
	case "coalesced":
		err = consumeCoalesced(conn, queue, &handled)
	default:
		err = fmt.Errorf("unknown mode %q", mode)
	}
	if err != nil {
		return err
	}

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var sent atomic.Int64
	work := make(chan struct{}, 100_000)
	if err := publish(ctx, conn, pub, queue, work, &sent); err != nil {
		return err
	}
	// Spread evenly, as an open-loop load is: a tick every millisecond, with
	// the messages due by then (RabbitMQ batches bursts, which would flatter
	// both modes).
	tick := time.NewTicker(time.Millisecond)
	defer tick.Stop()
	const warmup, window = 5 * time.Second, 15 * time.Second
	start := time.Now()
	var cpu0 float64
	var sent0, handled0 int64
	measuring := false
	due := 0
	for time.Since(start) < warmup+window {
		<-tick.C
		if !measuring && time.Since(start) >= warmup {
			if cpu0, err = cpuSeconds(pid); err != nil {
				return err
			}
			sent0, handled0 = sent.Load(), handled.Load()
			measuring = true
		}
		for target := int(time.Since(start).Seconds() * float64(rate)); due < target; due++ {
			work <- struct{}{}
		}
	}
	cpu1, err := cpuSeconds(pid)
	if err != nil {
		return err
	}
	close(work)
	msgs := float64(handled.Load() - handled0)
	used := cpu1 - cpu0
	fmt.Printf("%s queue, %s acks, %s publishes: %.0f published/s, %.0f handled/s; RabbitMQ %.0f %% of a core, %.0f µs of its CPU per message\n",
		queueType, mode, pub, float64(sent.Load()-sent0)/window.Seconds(), msgs/window.Seconds(), 100*used/window.Seconds(), 1e6*used/msgs)
	return nil
}

var body = []byte(`{"order_id":"01a21582-c08e-72c6-9a41-487ed5c67121","customer_id":"c-1","amount":1999,"currency":"EUR"}`)

// publish sends a message per value of work, with confirms.
func publish(ctx context.Context, conn *amqp.Connection, mode, queue string, work <-chan struct{}, sent *atomic.Int64) error {
	channels := map[string]int{"each": 32, "pipelined": 4}[mode]
	if channels == 0 {
		return fmt.Errorf("unknown publish mode %q", mode)
	}
	for range channels {
		pc, err := conn.Channel()
		if err != nil {
			return fmt.Errorf("publisher channel: %w", err)
		}
		if err := pc.Confirm(false); err != nil {
			return fmt.Errorf("confirm mode: %w", err)
		}
		msg := amqp.Publishing{DeliveryMode: amqp.Persistent, Body: body}
		if mode == "each" { // watermill-amqp: a publish waits for its confirm
			go func() {
				for range work {
					dc, err := pc.PublishWithDeferredConfirmWithContext(ctx, "", queue, false, false, msg)
					if err == nil && dc.Wait() {
						sent.Add(1)
					}
				}
			}()
			continue
		}
		confirms := pc.NotifyPublish(make(chan amqp.Confirmation, 1024))
		go func() {
			for c := range confirms {
				if c.Ack {
					sent.Add(1)
				}
			}
		}()
		go func() {
			for range work {
				_ = pc.PublishWithContext(ctx, "", queue, false, false, msg)
			}
		}()
	}
	return nil
}

// consume opens a channel that consumes queue with manual acks and prefetch
// unacknowledged deliveries at most.
func consume(conn *amqp.Connection, queue string, prefetch int) (*amqp.Channel, <-chan amqp.Delivery, error) {
	c, err := conn.Channel()
	if err != nil {
		return nil, nil, fmt.Errorf("consumer channel: %w", err)
	}
	if err := c.Qos(prefetch, 0, false); err != nil {
		return nil, nil, fmt.Errorf("qos: %w", err)
	}
	ds, err := c.Consume(queue, "", false, false, false, false, nil)
	if err != nil {
		return nil, nil, fmt.Errorf("consume: %w", err)
	}
	return c, ds, nil
}

// consumeSingle is watermill-amqp's way: 16 channels, each handing out one
// message at a time and acking it on its own.
func consumeSingle(conn *amqp.Connection, queue string, handled *atomic.Int64) error {
	for range 16 {
		_, ds, err := consume(conn, queue, 64)
		if err != nil {
			return err
		}
		go func() {
			for d := range ds {
				time.Sleep(handlerTime)
				if d.Ack(false) == nil {
					handled.Add(1)
				}
			}
		}()
	}
	return nil
}

// consumeCoalesced handles up to 64 messages of one channel at once and acks
// the longest handled prefix of delivery tags with one multiple ack, as
// often as an acker can send them (no timer).
func consumeCoalesced(conn *amqp.Connection, queue string, handled *atomic.Int64) error {
	c, ds, err := consume(conn, queue, 256)
	if err != nil {
		return err
	}
	var mu sync.Mutex
	done := map[uint64]bool{}
	next := uint64(1)
	wake := make(chan struct{}, 1)
	go func() {
		for range wake {
			mu.Lock()
			last := uint64(0)
			for done[next] {
				delete(done, next)
				last = next
				next++
			}
			mu.Unlock()
			if last > 0 {
				_ = c.Ack(last, true)
			}
		}
	}()
	sem := make(chan struct{}, 64)
	go func() {
		for d := range ds {
			sem <- struct{}{}
			go func(tag uint64) {
				defer func() { <-sem }()
				time.Sleep(handlerTime)
				mu.Lock()
				done[tag] = true
				mu.Unlock()
				handled.Add(1)
				select {
				case wake <- struct{}{}:
				default:
				}
			}(d.DeliveryTag)
		}
	}()
	return nil
}

func beamPID() (int, error) {
	stats, _ := filepath.Glob("/proc/[0-9]*/comm")
	for _, f := range stats {
		b, err := os.ReadFile(f) //nolint:gosec // /proc entries
		if err == nil && strings.TrimSpace(string(b)) == "beam.smp" {
			return strconv.Atoi(filepath.Base(filepath.Dir(f)))
		}
	}
	return 0, errors.New("no beam.smp process on this host: run next to RabbitMQ")
}

func cpuSeconds(pid int) (float64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, fmt.Errorf("read RabbitMQ's CPU time: %w", err)
	}
	// The fields after the command name, which is in parentheses.
	f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+2:]))
	utime, err1 := strconv.ParseFloat(f[11], 64)
	stime, err2 := strconv.ParseFloat(f[12], 64)
	if err := errors.Join(err1, err2); err != nil {
		return 0, fmt.Errorf("parse /proc/%d/stat: %w", pid, err)
	}
	return (utime + stime) / 100, nil // clock ticks (USER_HZ 100)
}
