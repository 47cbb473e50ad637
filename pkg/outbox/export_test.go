package outbox

import (
	"sync/atomic"

	wsql "github.com/ThreeDotsLabs/watermill-sql/v4/pkg/sql"
)

// ForwarderStatements returns the two statements a forwarder runs on the
// outbox, as it builds them: the read of a batch of batch rows and the
// DELETE of forwarded rows (its one argument the offsets, as an array).
func ForwarderStatements(batch int) (read, del string, err error) {
	r, err := skipLockedSchema{outboxSchema(batch)}.SelectQuery(wsql.SelectQueryParams{Topic: Topic})
	if err != nil {
		return "", "", err
	}
	d, err := newForwardedOffsets(batch, new(atomic.Bool)).
		AckMessageQuery(wsql.AckMessageQueryParams{Topic: Topic, Rows: []wsql.Row{{Offset: 1}}, LastRow: wsql.Row{Offset: 1}})
	if err != nil {
		return "", "", err
	}
	return r.Query, d.Query, nil
}
