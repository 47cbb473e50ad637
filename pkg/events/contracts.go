package events

import (
	"bytes"
	"embed"
	"fmt"
)

// asyncAPI is the AsyncAPI 3.0 document of the events: the exchanges and
// queues on RabbitMQ, each message's headers and payload, who sends and who
// receives. Tests hold it against what really crosses RabbitMQ and against
// the topology the services declare.
//
//go:embed asyncapi.yaml
var asyncAPI []byte

// schemas holds the JSON Schemas (draft 2020-12) of the event payloads,
// schemas/<EventName>.json. Tests check them against the Go types and
// against the committed baseline, schemas/baseline/.
//
//go:embed schemas/*.json
var schemas embed.FS

// AsyncAPIContentType is the media type the AsyncAPI document is served with.
const AsyncAPIContentType = "application/yaml"

// AsyncAPI returns the AsyncAPI 3.0 document of the events (YAML), as the
// services serve it at GET /asyncapi.yaml.
func AsyncAPI() []byte { return bytes.Clone(asyncAPI) }

// Schema returns the JSON Schema of the payload of the event called name
// (OrderPlaced, InvoiceIssued), as committed in schemas/<name>.json.
func Schema(name string) ([]byte, error) {
	b, err := schemas.ReadFile("schemas/" + name + ".json")
	if err != nil {
		return nil, fmt.Errorf("schema of event %q: %w", name, err)
	}
	return b, nil
}
