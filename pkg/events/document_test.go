package events_test

import (
	"bytes"
	"encoding/json"
	"os"
	"path"
	"strings"
	"testing"

	"github.com/santhosh-tekuri/jsonschema/v6"
	"github.com/stretchr/testify/require"
	"gopkg.in/yaml.v3"

	"github.com/orderflow/orderflow/pkg/events"
)

// documentURL names the AsyncAPI document as a resource of the JSON Schema
// compiler, so that the schemas inside it are compiled where they are and
// their local references (#/components/schemas/…) resolve in it.
const documentURL = "urn:orderflow:asyncapi"

// eventNames are the events the document and schemas/ describe.
var eventNames = []string{"OrderPlaced", "InvoiceIssued"}

// document is the AsyncAPI document decoded as JSON values (maps, slices,
// strings, json.Number, bools), the form the validator takes.
type document map[string]any

// loadDocument decodes the embedded AsyncAPI document.
func loadDocument(tb testing.TB) document {
	tb.Helper()
	var v any
	require.NoError(tb, yaml.Unmarshal(events.AsyncAPI(), &v), "asyncapi.yaml is not YAML")
	doc, ok := toJSON(tb, v).(map[string]any)
	require.True(tb, ok, "asyncapi.yaml is not a mapping")
	return doc
}

// toJSON turns a Go value into the JSON values the validator takes, through
// encoding/json.
func toJSON(tb testing.TB, v any) any {
	tb.Helper()
	b, err := json.Marshal(v)
	require.NoError(tb, err)
	out, err := jsonschema.UnmarshalJSON(bytes.NewReader(b))
	require.NoError(tb, err)
	return out
}

// at returns the value at a JSON pointer ("/components/messages/OrderPlaced").
func (d document) at(tb testing.TB, pointer string) any {
	tb.Helper()
	var v any = map[string]any(d)
	for _, tok := range strings.Split(strings.TrimPrefix(pointer, "/"), "/") {
		tok = strings.NewReplacer("~1", "/", "~0", "~").Replace(tok)
		m, ok := v.(map[string]any)
		require.True(tb, ok, "%s: %q is not inside a mapping", pointer, tok)
		v, ok = m[tok]
		require.True(tb, ok, "%s: no %q", pointer, tok)
	}
	return v
}

// object returns the mapping at pointer.
func (d document) object(tb testing.TB, pointer string) map[string]any {
	tb.Helper()
	m, ok := d.at(tb, pointer).(map[string]any)
	require.True(tb, ok, "%s is not a mapping", pointer)
	return m
}

// schema compiles the schema at pointer in the document (draft 2020-12,
// formats asserted: the document's schemas are its JSON Schemas).
func (d document) schema(tb testing.TB, pointer string) *jsonschema.Schema {
	tb.Helper()
	c := jsonschema.NewCompiler()
	c.DefaultDraft(jsonschema.Draft2020)
	c.AssertFormat()
	require.NoError(tb, c.AddResource(documentURL, map[string]any(d)))
	s, err := c.Compile(documentURL + "#" + pointer)
	require.NoError(tb, err, "compile the schema at %s", pointer)
	return s
}

// channel is one channel of the document: an exchange (is: routingKey) or
// a queue (is: queue) with its AMQP binding.
type channel struct {
	id       string
	address  string
	is       string // "routingKey" (an exchange) or "queue"
	binding  map[string]any
	messages []string // the names of the messages in components/messages
}

// channels returns the document's channels.
func (d document) channels(tb testing.TB) []channel {
	tb.Helper()
	var out []channel
	for id := range d.object(tb, "/channels") {
		p := "/channels/" + id
		ch := channel{id: id, address: d.at(tb, p+"/address").(string)}
		ch.binding = d.object(tb, p+"/bindings/amqp")
		ch.is, _ = ch.binding["is"].(string)
		for _, m := range d.object(tb, p+"/messages") {
			ref, _ := m.(map[string]any)["$ref"].(string)
			require.True(tb, strings.HasPrefix(ref, "#/components/messages/"), "%s: message %q is not a reference to components/messages", p, ref)
			ch.messages = append(ch.messages, path.Base(ref))
		}
		out = append(out, ch)
	}
	return out
}

// queuesCarrying returns the queue channels that carry message.
func (d document) queuesCarrying(tb testing.TB, message string) []channel {
	tb.Helper()
	var out []channel
	for _, ch := range d.channels(tb) {
		for _, m := range ch.messages {
			if ch.is == "queue" && m == message {
				out = append(out, ch)
			}
		}
	}
	return out
}

// readJSON reads a JSON file as JSON values.
func readJSON(tb testing.TB, name string) any {
	tb.Helper()
	f, err := os.Open(name)
	require.NoError(tb, err)
	defer f.Close()
	v, err := jsonschema.UnmarshalJSON(f)
	require.NoError(tb, err, "%s is not JSON", name)
	return v
}

// payloadSchema compiles the committed JSON Schema of an event.
func payloadSchema(tb testing.TB, name string) *jsonschema.Schema {
	tb.Helper()
	raw, err := events.Schema(name)
	require.NoError(tb, err)
	v, err := jsonschema.UnmarshalJSON(bytes.NewReader(raw))
	require.NoError(tb, err)
	c := jsonschema.NewCompiler()
	c.AssertFormat()
	url := "urn:orderflow:events:" + name
	require.NoError(tb, c.AddResource(url, v))
	s, err := c.Compile(url)
	require.NoError(tb, err)
	return s
}
