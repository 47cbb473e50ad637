package events_test

import (
	"encoding/json"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/orderflow/orderflow/pkg/events"
)

// event is an event type with its consumer-side validation.
type event interface{ Validate() error }

// samples returns a valid event of each name, as the producers fill them.
func samples() map[string]event {
	now := time.Now().UTC()
	return map[string]event{
		"OrderPlaced": &events.OrderPlaced{
			Header:  events.Header{ID: uuid.NewString(), OccurredAt: now},
			OrderID: uuid.NewString(), CustomerID: "c-1", Amount: 1999, Currency: "EUR", PlacedAt: now,
		},
		"InvoiceIssued": &events.InvoiceIssued{
			Header:    events.Header{ID: uuid.NewString(), OccurredAt: now},
			InvoiceID: uuid.NewString(), OrderID: uuid.NewString(), CustomerID: "c-1", Amount: 1999, Currency: "EUR", IssuedAt: now,
		},
	}
}

// jsonField is one field of an event's JSON encoding, as encoding/json
// derives it from the Go type.
type jsonField struct {
	name      string
	typ       reflect.Type
	omitempty bool
}

// jsonFields lists the fields encoding/json writes for t, embedded structs
// flattened.
func jsonFields(t reflect.Type) []jsonField {
	var out []jsonField
	for f := range t.Fields() {
		if !f.IsExported() {
			continue
		}
		name, opts, _ := strings.Cut(f.Tag.Get("json"), ",")
		if name == "-" {
			continue
		}
		if f.Anonymous && name == "" && f.Type.Kind() == reflect.Struct {
			out = append(out, jsonFields(f.Type)...)
			continue
		}
		if name == "" {
			name = f.Name
		}
		out = append(out, jsonField{name: name, typ: f.Type, omitempty: slices.Contains(strings.Split(opts, ","), "omitempty")})
	}
	return out
}

// jsonType is the JSON Schema type and format encoding/json gives a Go type.
func jsonType(t reflect.Type) (typ, format string) {
	if t == reflect.TypeFor[time.Time]() {
		return "string", "date-time"
	}
	switch t.Kind() {
	case reflect.String:
		return "string", ""
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "integer", ""
	case reflect.Float32, reflect.Float64:
		return "number", ""
	case reflect.Bool:
		return "boolean", ""
	case reflect.Slice, reflect.Array:
		return "array", ""
	default:
		return "object", ""
	}
}

// The committed schemas describe the Go types field by field: the same
// JSON names, the types encoding/json writes, and every field required
// that encoding/json always writes (no omitempty).
func TestSchemas_match_the_Go_types(t *testing.T) {
	t.Parallel()
	for name, ev := range samples() {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			schema, ok := readJSON(t, "schemas/"+name+".json").(map[string]any)
			require.True(t, ok)
			assert.Equal(t, name, reflect.TypeOf(ev).Elem().Name())
			assert.Equal(t, name, schema["title"])
			assert.Equal(t, "object", schema["type"])
			props, _ := schema["properties"].(map[string]any)
			var required []string
			for _, r := range schema["required"].([]any) {
				required = append(required, r.(string))
			}

			var fields, wantRequired []string
			for _, f := range jsonFields(reflect.TypeOf(ev).Elem()) {
				fields = append(fields, f.name)
				if !f.omitempty {
					wantRequired = append(wantRequired, f.name)
				}
				prop, ok := props[f.name].(map[string]any)
				if !assert.True(t, ok, "field %s of the Go type is not in schemas/%s.json", f.name, name) {
					continue
				}
				typ, format := jsonType(f.typ)
				assert.Equal(t, typ, prop["type"], "type of %s", f.name)
				if format != "" {
					assert.Equal(t, format, prop["format"], "format of %s", f.name)
				}
				assert.NotEmpty(t, prop["description"], "%s has no description", f.name)
			}
			var schemaFields []string
			for p := range props {
				schemaFields = append(schemaFields, p)
			}
			assert.ElementsMatch(t, fields, schemaFields, "the schema's properties are the Go type's JSON fields")
			assert.ElementsMatch(t, wantRequired, required, "required: the fields encoding/json always writes")
		})
	}
}

// What a producer in Go writes is valid against the schema.
func TestSchemas_accept_the_Go_encoding(t *testing.T) {
	t.Parallel()
	for name, ev := range samples() {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			b, err := json.Marshal(ev)
			require.NoError(t, err)
			assert.NoError(t, payloadSchema(t, name).Validate(toJSON(t, json.RawMessage(b))))
		})
	}
}

// A message another producer writes to the schema is one the Go consumers
// accept: whatever the Go validation rejects, the schema rejects too.
func TestSchemas_reject_what_the_Go_validation_rejects(t *testing.T) {
	t.Parallel()
	bad := map[string][]any{
		"string":  {"", "ABCD", "eur", "x"},
		"integer": {0, -1},
	}
	for name, ev := range samples() {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			schema := payloadSchema(t, name)
			b, err := json.Marshal(ev)
			require.NoError(t, err)
			var base map[string]any
			require.NoError(t, json.Unmarshal(b, &base))
			rejected := 0
			for _, f := range jsonFields(reflect.TypeOf(ev).Elem()) {
				typ, format := jsonType(f.typ)
				values := bad[typ]
				if format == "date-time" {
					values = []any{"0001-01-01T00:00:00Z"} // the zero time.Time
				}
				for _, v := range append(values, nil) {
					m := make(map[string]any, len(base))
					for k, x := range base {
						m[k] = x
					}
					if v == nil {
						delete(m, f.name)
					} else {
						m[f.name] = v
					}
					mb, err := json.Marshal(m)
					require.NoError(t, err)
					decoded := reflect.New(reflect.TypeOf(ev).Elem()).Interface().(event)
					if err := json.Unmarshal(mb, decoded); err != nil || decoded.Validate() != nil {
						rejected++
						assert.Error(t, schema.Validate(toJSON(t, json.RawMessage(mb))),
							"the Go consumer rejects %s=%v, the schema accepts it", f.name, v)
					}
				}
			}
			assert.Positive(t, rejected, "no mutation was rejected by Validate: the test checks nothing")
		})
	}
}
