package messaging

// acknowledger is the part of *amqp091.Channel an ackWindow uses.
type acknowledger interface {
	Ack(tag uint64, multiple bool) error
	Nack(tag uint64, multiple, requeue bool) error
}

// settlement is what a handler decided about one delivery.
type settlement struct {
	tag uint64
	ack bool // false: nack, to be redelivered
}

// ackState is where a delivery the handler has settled stands.
type ackState uint8

const (
	ackHeld ackState = iota + 1 // acked by the handler, not yet told to RabbitMQ
	ackSent                     // RabbitMQ was told: a nack, or an ack sent alone
)

// ackWindow turns the acks of one channel's deliveries into as few
// basic.ack frames as it can. RabbitMQ numbers a channel's deliveries 1, 2,
// 3, …, and an ack with multiple=true acknowledges every delivery up to its
// tag. Handlers finish out of order, so the window holds each ack until
// every delivery below it is settled too, then sends one ack for the whole
// settled prefix. Acks held behind a delivery that is still being handled
// (a retry, a slow handler) are sent one by one once there are maxHeld of
// them, so one slow message never holds the prefetch window for long.
// Nacks are sent at once.
//
// What a crash costs: deliveries acked by their handlers but still held here
// are redelivered, as any unacked delivery is; handlers are idempotent, so
// the second delivery finds its effect done and only repeats the ack.
//
// An ackWindow is used by one goroutine.
type ackWindow struct {
	ch      acknowledger
	next    uint64 // the lowest tag RabbitMQ has not been told about
	settled map[uint64]ackState
	held    int // entries of settled that are ackHeld
	maxHeld int
}

func newAckWindow(ch acknowledger, maxHeld int) *ackWindow {
	return &ackWindow{ch: ch, next: 1, settled: map[uint64]ackState{}, maxHeld: max(maxHeld, 1)}
}

// settle records one handler's decision; a nack is sent at once.
func (w *ackWindow) settle(s settlement) error {
	if s.ack {
		w.settled[s.tag] = ackHeld
		w.held++
		return nil
	}
	w.settled[s.tag] = ackSent
	return w.ch.Nack(s.tag, false, true)
}

// flush sends what the window may send now: one ack for the settled prefix,
// and the acks held behind it once there are too many.
func (w *ackWindow) flush() error {
	var upTo uint64 // the highest held ack in the prefix
	for {
		state, ok := w.settled[w.next]
		if !ok {
			break
		}
		if state == ackHeld {
			upTo = w.next
			w.held--
		}
		delete(w.settled, w.next)
		w.next++
	}
	if upTo != 0 {
		// multiple=true covers every delivery up to upTo that RabbitMQ
		// still counts as unacked; below w.next that is only held acks,
		// since nacks and lone acks are no longer outstanding.
		if err := w.ch.Ack(upTo, true); err != nil {
			return err
		}
	}
	if w.held < w.maxHeld {
		return nil
	}
	for tag, state := range w.settled {
		if state != ackHeld {
			continue
		}
		if err := w.ch.Ack(tag, false); err != nil {
			return err
		}
		w.settled[tag] = ackSent
		w.held--
	}
	return nil
}
