package events_test

import (
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// The compatibility check. The baseline (schemas/baseline/) is the contract
// consumers were given; today's schemas (schemas/) must keep it, in both
// directions: a consumer built on the baseline reads today's events, and a
// consumer built on today's schemas reads the events still in queues,
// outboxes and poison queues that were written to the baseline. So for
// every field of the baseline:
//
//   - it is still there (not removed, not renamed),
//   - with the same type, format and constraints,
//   - required exactly when it was;
//
// and a field that is new is optional. Annotations (title, description,
// examples, deprecated) may change. Consumers ignore fields they do not
// know, so adding an optional field is compatible.

// annotations are the keywords that do not constrain a value.
var annotations = map[string]bool{
	"title": true, "description": true, "examples": true, "deprecated": true,
	"$comment": true, "default": true, "readOnly": true, "writeOnly": true,
	"$schema": true, "$id": true,
}

// breakingChanges lists what today's schema of an event breaks for
// consumers of its baseline; nil when nothing does.
func breakingChanges(baseline, current map[string]any) []string {
	return compareSchemas("", baseline, current)
}

func compareSchemas(at string, b, c map[string]any) []string {
	var out []string
	field := func(name string) string {
		if at == "" {
			return name
		}
		return at + "." + name
	}
	where := "the event"
	if at != "" {
		where = "field " + at
	}
	for _, k := range slices.Sorted(maps.Keys(union(b, c))) {
		if annotations[k] || k == "properties" || k == "required" {
			continue
		}
		bv, inB := b[k]
		cv, inC := c[k]
		if reflect.DeepEqual(bv, cv) {
			continue
		}
		out = append(out, fmt.Sprintf("%s changed %s from %v to %v", where, k, show(bv, inB), show(cv, inC)))
	}

	bProps, cProps := properties(b), properties(c)
	bReq, cReq := required(b), required(c)
	for _, name := range slices.Sorted(maps.Keys(bProps)) {
		cp, ok := cProps[name]
		if !ok {
			out = append(out, fmt.Sprintf("field %s was removed or renamed", field(name)))
			continue
		}
		out = append(out, compareSchemas(field(name), bProps[name], cp)...)
		switch {
		case bReq[name] && !cReq[name]:
			out = append(out, fmt.Sprintf("field %s is no longer required (consumers rely on it being there)", field(name)))
		case !bReq[name] && cReq[name]:
			out = append(out, fmt.Sprintf("field %s became required (events written before lack it)", field(name)))
		}
	}
	for _, name := range slices.Sorted(maps.Keys(cProps)) {
		if _, ok := bProps[name]; !ok && cReq[name] {
			out = append(out, fmt.Sprintf("new field %s is required (events written before lack it; add it as optional)", field(name)))
		}
	}
	return out
}

func union(a, b map[string]any) map[string]any {
	u := maps.Clone(a)
	maps.Copy(u, b)
	return u
}

func show(v any, present bool) string {
	if !present {
		return "(none)"
	}
	return fmt.Sprintf("%v", v)
}

func properties(s map[string]any) map[string]map[string]any {
	out := map[string]map[string]any{}
	props, _ := s["properties"].(map[string]any)
	for k, v := range props {
		if m, ok := v.(map[string]any); ok {
			out[k] = m
		}
	}
	return out
}

func required(s map[string]any) map[string]bool {
	out := map[string]bool{}
	list, _ := s["required"].([]any)
	for _, r := range list {
		if name, ok := r.(string); ok {
			out[name] = true
		}
	}
	return out
}

// compatibilityFailure is the message of a failed check: what broke and
// what to do instead.
func compatibilityFailure(event string, breaks []string) string {
	return fmt.Sprintf("schemas/%s.json breaks the contract in schemas/baseline/%s.json for its consumers:\n  - %s\n"+
		"A breaking change is a new event name: leave %s as it is, add %sV2 with the new shape "+
		"and publish both until every consumer has moved (docs/events.md). Adding an optional field is compatible.",
		event, event, strings.Join(breaks, "\n  - "), event, event)
}

// Today's schemas keep the committed baseline; every event has one.
func TestSchemas_are_compatible_with_the_baseline(t *testing.T) {
	t.Parallel()
	baselines, err := filepath.Glob("schemas/baseline/*.json")
	require.NoError(t, err)
	require.NotEmpty(t, baselines)
	currents, err := filepath.Glob("schemas/*.json")
	require.NoError(t, err)
	for _, cur := range currents {
		name := strings.TrimSuffix(filepath.Base(cur), ".json")
		_, err := os.Stat(filepath.Join("schemas", "baseline", name+".json"))
		assert.NoError(t, err, "event %s has no baseline: copy schemas/%s.json to schemas/baseline/ so that its consumers are protected from now on", name, name)
	}
	for _, base := range baselines {
		name := strings.TrimSuffix(filepath.Base(base), ".json")
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			cur := filepath.Join("schemas", name+".json")
			if _, err := os.Stat(cur); err != nil {
				t.Fatalf("event %s was removed: schemas/%s.json is gone, but consumers of the baseline still read it. "+
					"Keep publishing it until none does, then delete its baseline too.", name, name)
			}
			b, _ := readJSON(t, base).(map[string]any)
			c, _ := readJSON(t, cur).(map[string]any)
			if breaks := breakingChanges(b, c); len(breaks) > 0 {
				t.Fatal(compatibilityFailure(name, breaks))
			}
		})
	}
}

// The check itself, on changes made to the OrderPlaced baseline.
func TestBreakingChanges(t *testing.T) {
	t.Parallel()
	withOptionalNote := func(s map[string]any) {
		properties(s)["customer_id"]["description"] = "x" // annotations do not count
		s["properties"].(map[string]any)["note"] = map[string]any{"type": "string"}
	}
	tests := []struct {
		name     string
		baseline func(map[string]any) // applied to the baseline first
		change   func(map[string]any)
		want     []string
	}{
		{name: "unchanged", change: func(map[string]any) {}},
		{name: "an optional field added", change: withOptionalNote},
		{
			name: "a description changed, a field deprecated",
			change: func(s map[string]any) {
				s["description"] = "other words"
				properties(s)["customer_id"]["deprecated"] = true
			},
		},
		{
			name: "a field removed",
			change: func(s map[string]any) {
				delete(s["properties"].(map[string]any), "customer_id")
				s["required"] = slices.DeleteFunc(s["required"].([]any), func(v any) bool { return v == "customer_id" })
			},
			want: []string{"field customer_id was removed or renamed"},
		},
		{
			name: "a field renamed",
			change: func(s map[string]any) {
				props := s["properties"].(map[string]any)
				props["customer"] = props["customer_id"]
				delete(props, "customer_id")
				s["required"] = append(slices.DeleteFunc(s["required"].([]any), func(v any) bool { return v == "customer_id" }), "customer")
			},
			want: []string{
				"field customer_id was removed or renamed",
				"new field customer is required (events written before lack it; add it as optional)",
			},
		},
		{
			name:   "a type changed",
			change: func(s map[string]any) { properties(s)["amount"]["type"] = "string" },
			want:   []string{"field amount changed type from integer to string"},
		},
		{
			name:     "an optional field became required",
			baseline: withOptionalNote,
			change: func(s map[string]any) {
				withOptionalNote(s)
				s["required"] = append(s["required"].([]any), "note")
			},
			want: []string{"field note became required (events written before lack it)"},
		},
		{
			name: "a required field became optional",
			change: func(s map[string]any) {
				s["required"] = slices.DeleteFunc(s["required"].([]any), func(v any) bool { return v == "currency" })
			},
			want: []string{"field currency is no longer required (consumers rely on it being there)"},
		},
		{
			name:   "a constraint changed",
			change: func(s map[string]any) { properties(s)["customer_id"]["maxLength"] = 32 },
			want:   []string{"field customer_id changed maxLength from 64 to 32"},
		},
		{
			name:   "a format dropped",
			change: func(s map[string]any) { delete(properties(s)["order_id"], "format") },
			want:   []string{"field order_id changed format from uuid to (none)"},
		},
		{
			name:   "unknown fields forbidden",
			change: func(s map[string]any) { s["additionalProperties"] = false },
			want:   []string{"the event changed additionalProperties from (none) to false"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			base, _ := readJSON(t, "schemas/baseline/OrderPlaced.json").(map[string]any)
			if tt.baseline != nil {
				tt.baseline(base)
			}
			cur, _ := readJSON(t, "schemas/baseline/OrderPlaced.json").(map[string]any)
			tt.change(cur)
			got := breakingChanges(base, cur)
			assert.ElementsMatch(t, tt.want, got)
			if len(got) > 0 {
				msg := compatibilityFailure("OrderPlaced", got)
				assert.Contains(t, msg, tt.want[0])
				assert.Contains(t, msg, "A breaking change is a new event name")
				assert.Contains(t, msg, "OrderPlacedV2")
			}
		})
	}
}
