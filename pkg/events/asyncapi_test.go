package events_test

import (
	"maps"
	"testing"

	"github.com/santhosh-tekuri/jsonschema/v6"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// asyncAPISchemaFile is the AsyncAPI 3.0.0 JSON Schema as the AsyncAPI
// project publishes it (@asyncapi/specs 6.11.1, schemas/3.0.0.json, Apache
// License 2.0), bindings included. The AsyncAPI CLI (go tool task
// asyncapi:validate) is the authoritative check; this one runs with go test.
const (
	asyncAPISchemaFile = "testdata/asyncapi-3.0.0.schema.json"
	asyncAPISchemaID   = "http://asyncapi.com/definitions/3.0.0/asyncapi.json"
)

func asyncAPISchema(tb testing.TB) *jsonschema.Schema {
	tb.Helper()
	c := jsonschema.NewCompiler()
	require.NoError(tb, c.AddResource(asyncAPISchemaID, readJSON(tb, asyncAPISchemaFile)))
	s, err := c.Compile(asyncAPISchemaID)
	require.NoError(tb, err)
	return s
}

func TestAsyncAPI_document_is_valid_AsyncAPI_3(t *testing.T) {
	t.Parallel()
	s := asyncAPISchema(t)
	doc := loadDocument(t)
	require.NoError(t, s.Validate(map[string]any(doc)))
	assert.Equal(t, "3.0.0", doc["asyncapi"])

	// The schema does catch a broken document: an operation without its
	// channel, a queue binding without its queue.
	broken := loadDocument(t)
	delete(broken.object(t, "/operations/publishOrderPlaced"), "channel")
	assert.Error(t, s.Validate(map[string]any(broken)), "an operation without a channel")
	broken = loadDocument(t)
	delete(broken.object(t, "/channels/issueInvoiceOnOrderPlacedQueue/bindings/amqp"), "queue")
	assert.Error(t, s.Validate(map[string]any(broken)), "a queue binding without a queue")
}

// The payloads in the document are the committed JSON Schemas, so that the
// document can be served whole and the schemas used alone.
func TestAsyncAPI_payloads_are_the_committed_JSON_Schemas(t *testing.T) {
	t.Parallel()
	doc := loadDocument(t)
	for _, name := range eventNames {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			assert.Equal(t, map[string]any{"$ref": "#/components/schemas/" + name},
				doc.at(t, "/components/messages/"+name+"/payload"))
			file, ok := readJSON(t, "schemas/"+name+".json").(map[string]any)
			require.True(t, ok)
			assert.Equal(t, "https://json-schema.org/draft/2020-12/schema", file["$schema"])
			assert.Equal(t, "urn:orderflow:events:"+name, file["$id"])
			want := maps.Clone(file)
			delete(want, "$schema")
			delete(want, "$id")
			assert.Equal(t, want, doc.at(t, "/components/schemas/"+name),
				"components/schemas/%s in asyncapi.yaml differs from schemas/%s.json: change both", name, name)
		})
	}
}

// Every example in the document is valid against its message's schemas.
func TestAsyncAPI_examples_match_their_messages(t *testing.T) {
	t.Parallel()
	doc := loadDocument(t)
	for name := range doc.object(t, "/components/messages") {
		p := "/components/messages/" + name
		examples, _ := doc.object(t, p)["examples"].([]any)
		for _, ex := range examples {
			ex := ex.(map[string]any)
			if h, ok := ex["headers"]; ok {
				assert.NoError(t, doc.schema(t, p+"/headers").Validate(h), "%s example %v: headers", name, ex["name"])
			}
			if body, ok := ex["payload"]; ok {
				assert.NoError(t, doc.schema(t, p+"/payload").Validate(body), "%s example %v: payload", name, ex["name"])
			}
		}
	}
}

// Each event is sent on its own exchange, events.<Name>, and received from
// at least one queue.
func TestAsyncAPI_every_event_has_its_exchange_and_a_queue(t *testing.T) {
	t.Parallel()
	doc := loadDocument(t)
	for _, name := range eventNames {
		var exchanges []string
		for _, ch := range doc.channels(t) {
			for _, m := range ch.messages {
				if m == name && ch.is == "routingKey" {
					exchanges = append(exchanges, ch.address)
				}
			}
		}
		assert.Equal(t, []string{"events." + name}, exchanges, name)
		assert.NotEmpty(t, doc.queuesCarrying(t, name), name)
	}
}
