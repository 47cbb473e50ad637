package messaging

import (
	"encoding/json"
	"fmt"
	"time"

	"github.com/ThreeDotsLabs/watermill-amqp/v3/pkg/amqp"
	"github.com/ThreeDotsLabs/watermill/message"
	amqp091 "github.com/rabbitmq/amqp091-go"
)

// MetadataDeliveryCount is set on consumed messages that RabbitMQ has
// delivered before (quorum queues count redeliveries in x-delivery-count).
const MetadataDeliveryCount = "x-delivery-count"

// amqpMarshaler extends watermill-amqp's DefaultMarshaler, which rejects any
// header that is not a string. RabbitMQ itself adds non-string headers:
// quorum queues set x-delivery-count (an integer) on every redelivery and
// dead-lettering adds x-death (an array). With the default marshaler such a
// message fails to decode, is nacked and requeued, and loops until the
// delivery limit drops it, so a consumer crash would poison its in-flight
// messages. Here non-string headers become strings (JSON for tables and
// arrays) and every publishing also gets a message id, a timestamp and a
// content type, which the management UI and the poison CLI show.
type amqpMarshaler struct{ amqp.DefaultMarshaler }

func (m amqpMarshaler) Marshal(msg *message.Message) (amqp091.Publishing, error) {
	p, err := m.DefaultMarshaler.Marshal(msg)
	if err != nil {
		return p, fmt.Errorf("marshal amqp publishing: %w", err)
	}
	p.MessageId = msg.UUID
	p.ContentType = "application/json"
	p.Timestamp = time.Now().UTC()
	return p, nil
}

func (m amqpMarshaler) Unmarshal(d amqp091.Delivery) (*message.Message, error) {
	headers := make(amqp091.Table, len(d.Headers))
	for k, v := range d.Headers {
		headers[k] = HeaderString(v)
	}
	d.Headers = headers
	msg, err := m.DefaultMarshaler.Unmarshal(d)
	if err != nil {
		return nil, fmt.Errorf("unmarshal amqp delivery: %w", err)
	}
	if msg.UUID == "" {
		msg.UUID = d.MessageId
	}
	return msg, nil
}

// HeaderString is an AMQP header value as a string: JSON for tables and
// arrays, RFC 3339 for times.
func HeaderString(v any) string {
	switch v := v.(type) {
	case string:
		return v
	case []byte:
		return string(v)
	case time.Time:
		return v.UTC().Format(time.RFC3339Nano)
	case int, int8, int16, int32, int64, uint8, uint16, uint32, uint64, float32, float64, bool:
		return fmt.Sprint(v)
	default:
		b, err := json.Marshal(v)
		if err != nil {
			return fmt.Sprint(v)
		}
		return string(b)
	}
}
