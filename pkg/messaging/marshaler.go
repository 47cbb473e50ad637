package messaging

import (
	"encoding/json"
	"fmt"
	"time"

	"github.com/ThreeDotsLabs/watermill/components/cqrs"
	"github.com/ThreeDotsLabs/watermill/message"
)

// Metadata keys set on every event message, beside Watermill's "name".
const (
	MetadataEventName  = "name"
	MetadataOccurredAt = "occurred_at"
)

// TopicPrefix prefixes every event topic: OrderPlaced travels on the topic
// (and RabbitMQ exchange) "events.OrderPlaced".
const TopicPrefix = "events."

// EventTopic returns the topic an event name travels on.
func EventTopic(eventName string) string { return TopicPrefix + eventName }

// identified is implemented by events that carry their own id (events.Header).
type identified interface {
	EventID() string
	EventTime() time.Time
}

type validator interface{ Validate() error }

// Marshaler is Watermill's CQRS JSON marshaler with three additions the
// library does not offer: the message UUID is the event's own id (so a
// redelivered or replayed event keeps its identity end to end), the
// occurred_at time rides in the metadata, and decoding failures are marked
// Permanent so they skip the retries and go straight to the poison queue.
type Marshaler struct {
	cqrs.JSONMarshaler
}

// NewMarshaler returns the marshaler shared by the event bus and processors.
// Event names are the struct names ("OrderPlaced").
func NewMarshaler() Marshaler {
	return Marshaler{cqrs.JSONMarshaler{GenerateName: cqrs.StructName}}
}

// Marshal encodes v and stamps the event id and time onto the message.
func (m Marshaler) Marshal(v any) (*message.Message, error) {
	msg, err := m.JSONMarshaler.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("marshal %T: %w", v, err)
	}
	if e, ok := v.(identified); ok {
		if id := e.EventID(); id != "" {
			msg.UUID = id
		}
		if at := e.EventTime(); !at.IsZero() {
			msg.Metadata.Set(MetadataOccurredAt, at.UTC().Format(time.RFC3339Nano))
		}
	}
	return msg, nil
}

// Unmarshal decodes the payload into v and validates it. Both failures are
// permanent: the same bytes will never decode on a retry.
func (m Marshaler) Unmarshal(msg *message.Message, v any) error {
	if err := json.Unmarshal(msg.Payload, v); err != nil {
		return Permanent(fmt.Errorf("decode %s %s: %w", m.NameFromMessage(msg), msg.UUID, err))
	}
	if val, ok := v.(validator); ok {
		if err := val.Validate(); err != nil {
			return Permanent(fmt.Errorf("invalid %s %s: %w", m.NameFromMessage(msg), msg.UUID, err))
		}
	}
	return nil
}
