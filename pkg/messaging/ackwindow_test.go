package messaging

import (
	"fmt"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// frames records what an ackWindow tells RabbitMQ.
type frames []string

func (f *frames) Ack(tag uint64, multiple bool) error {
	*f = append(*f, fmt.Sprintf("ack %d multiple=%t", tag, multiple))
	return nil
}

func (f *frames) Nack(tag uint64, multiple, requeue bool) error {
	*f = append(*f, fmt.Sprintf("nack %d multiple=%t requeue=%t", tag, multiple, requeue))
	return nil
}

func TestAckWindow(t *testing.T) {
	t.Parallel()
	ack := func(tag uint64) settlement { return settlement{tag: tag, ack: true} }
	nack := func(tag uint64) settlement { return settlement{tag: tag} }
	flush := settlement{} // a step that flushes
	tests := []struct {
		name    string
		maxHeld int
		steps   []settlement
		want    []string
		// unordered is how many of want's first frames are acks sent
		// alone by one flush, which leave in map order.
		unordered int
	}{
		{
			name:    "acks settled in order become one frame",
			maxHeld: 16,
			steps:   []settlement{ack(1), ack(2), ack(3), flush},
			want:    []string{"ack 3 multiple=true"},
		},
		{
			name:    "acks wait for the deliveries below them",
			maxHeld: 16,
			steps:   []settlement{ack(2), ack(3), flush, ack(1), flush},
			want:    []string{"ack 3 multiple=true"},
		},
		{
			name:    "a nack is sent at once and the prefix moves past it",
			maxHeld: 16,
			steps:   []settlement{ack(2), nack(1), flush, ack(3), flush},
			want:    []string{"nack 1 multiple=false requeue=true", "ack 2 multiple=true", "ack 3 multiple=true"},
		},
		{
			name:    "the multiple ack names the highest ack, never a nacked tag",
			maxHeld: 16,
			steps:   []settlement{ack(1), nack(2), flush},
			want:    []string{"nack 2 multiple=false requeue=true", "ack 1 multiple=true"},
		},
		{
			name:    "a prefix of nacks sends no ack",
			maxHeld: 16,
			steps:   []settlement{nack(1), nack(2), flush},
			want:    []string{"nack 1 multiple=false requeue=true", "nack 2 multiple=false requeue=true"},
		},
		{
			name:      "too many acks behind a slow delivery are sent alone",
			maxHeld:   2,
			steps:     []settlement{ack(3), flush, ack(2), flush, ack(1), flush, ack(4), flush},
			want:      []string{"ack 2 multiple=false", "ack 3 multiple=false", "ack 1 multiple=true", "ack 4 multiple=true"},
			unordered: 2,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var got frames
			w := newAckWindow(&got, tt.maxHeld)
			for _, s := range tt.steps {
				if s == flush {
					require.NoError(t, w.flush())
					continue
				}
				require.NoError(t, w.settle(s))
			}
			require.Len(t, got, len(tt.want))
			assert.ElementsMatch(t, tt.want[:tt.unordered], got[:tt.unordered])
			assert.Equal(t, tt.want[tt.unordered:], []string(got[tt.unordered:]))
			assert.Zero(t, w.held, "no ack is left held")
		})
	}
}
