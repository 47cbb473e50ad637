package httpkit_test

import (
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/orderflow/orderflow/pkg/httpkit"
)

type inner struct {
	X *int `json:"x"`
}

type payload struct {
	Name  *string  `json:"name"`
	N     *int64   `json:"n"`
	Ratio *float64 `json:"ratio"`
	OK    *bool    `json:"ok"`
	Inner *inner   `json:"inner"`
}

func TestDecodeJSONBytes(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		body   string
		status int    // 0: no error
		code   string // DecodeError.Code
		field  string // DecodeError.Field
	}{
		{name: "valid", body: `{"name":"a","n":1}`},
		{name: "valid with surrounding whitespace", body: " \n{\"name\":\"a\"}\n\t "},
		{name: "valid empty object", body: `{}`},
		{name: "null", body: `null`},
		{name: "nested", body: `{"inner":{"x":3}}`},
		{name: "max int64", body: `{"n":9223372036854775807}`},
		{name: "exponent integer", body: `{"ratio":1e3}`},
		{name: "nil body", body: "", status: 400, code: "empty_body"},
		{name: "whitespace", body: " \r\n\t", status: 400, code: "empty_body"},
		{name: "truncated", body: `{"name":"a"`, status: 400, code: "malformed_json"},
		{name: "truncated string", body: `{"name":"a`, status: 400, code: "malformed_json"},
		{name: "syntax error", body: `{"name":}`, status: 400, code: "malformed_json"},
		{name: "trailing comma", body: `{"name":"a",}`, status: 400, code: "malformed_json"},
		{name: "comment", body: `{"name":"a"} // hi`, status: 400, code: "malformed_json"},
		{name: "NaN", body: `{"ratio":NaN}`, status: 400, code: "malformed_json"},
		{name: "leading zero", body: `{"n":01}`, status: 400, code: "malformed_json"},
		{name: "string for int", body: `{"n":"1"}`, status: 422, code: "invalid_field", field: "n"},
		{name: "invalid utf-8 in a value", body: "{\"name\":\"a\xffb\"}", status: 400, code: "invalid_utf8", field: "name"},
		{name: "invalid utf-8 in the second value", body: "{\"n\":1, \"name\" : \"\xc3\"}", status: 400, code: "invalid_utf8", field: "name"},
		{name: "invalid utf-8 nested", body: "{\"inner\":{\"x\":1,\"y\":\"\xe2\x82\"}}", status: 400, code: "invalid_utf8", field: "inner.y"},
		{name: "invalid utf-8 in an array", body: "{\"tags\":[\"a\",\"\xff\"]}", status: 400, code: "invalid_utf8", field: "tags[1]"},
		{name: "invalid utf-8 in an array of objects", body: "{\"l\":[{\"a\":1},{\"b\":\"\xff\"}]}", status: 400, code: "invalid_utf8", field: "l[1].b"},
		{name: "invalid utf-8 in a top-level key", body: "{\"na\xffme\":\"a\"}", status: 400, code: "invalid_utf8"},
		{name: "invalid utf-8 in a nested key", body: "{\"inner\":{\"\xff\":1}}", status: 400, code: "invalid_utf8", field: "inner"},
		{name: "overlong encoding", body: "{\"name\":\"\xc0\xaf\"}", status: 400, code: "invalid_utf8", field: "name"},
		{name: "encoded surrogate", body: "{\"name\":\"\xed\xa0\x80\"}", status: 400, code: "invalid_utf8", field: "name"},
		{name: "invalid utf-8 outside JSON", body: "\xff", status: 400, code: "invalid_utf8"},
		{name: "lone high surrogate escape", body: `{"name":"a\ud800"}`, status: 400, code: "invalid_utf8", field: "name"},
		{name: "lone low surrogate escape", body: `{"name":"\udc00"}`, status: 400, code: "invalid_utf8", field: "name"},
		{name: "reversed surrogate pair", body: `{"name":"\udc00\ud800"}`, status: 400, code: "invalid_utf8", field: "name"},
		{name: "high surrogate then a letter escape", body: `{"name":"\ud800\u0041"}`, status: 400, code: "invalid_utf8", field: "name"},
		{name: "surrogate pair escape", body: `{"name":"\ud83d\ude00"}`},
		{name: "escaped backslash before u", body: `{"name":"\\ud800"}`},
		{name: "multi-byte utf-8", body: `{"name":"Zoë 😀 日本"}`},
		{name: "fraction for int", body: `{"n":1.5}`, status: 422, code: "invalid_field", field: "n"},
		{name: "exponent overflow", body: `{"n":1e30}`, status: 422, code: "invalid_field", field: "n"},
		{name: "int64 overflow", body: `{"n":9223372036854775808}`, status: 422, code: "invalid_field", field: "n"},
		{name: "number for string", body: `{"name":5}`, status: 422, code: "invalid_field", field: "name"},
		{name: "array for string", body: `{"name":["a"]}`, status: 422, code: "invalid_field", field: "name"},
		{name: "string for bool", body: `{"ok":"true"}`, status: 422, code: "invalid_field", field: "ok"},
		{name: "nested wrong type", body: `{"inner":{"x":"1"}}`, status: 422, code: "invalid_field", field: "inner.x"},
		{name: "unknown field", body: `{"name":"a","extra":1}`, status: 422, code: "unknown_field", field: "extra"},
		{name: "field names match case-insensitively", body: `{"NAME":"a"}`},
		{name: "trailing object", body: `{"name":"a"}{"name":"b"}`, status: 400, code: "malformed_json"},
		{name: "trailing garbage", body: `{"name":"a"} x`, status: 400, code: "malformed_json"},
		{name: "trailing number", body: `{"name":"a"} 1`, status: 400, code: "malformed_json"},
		{name: "trailing null", body: `{} null`, status: 400, code: "malformed_json"},
		{name: "array", body: `[{"name":"a"}]`, status: 400, code: "malformed_json"},
		{name: "empty array", body: `[]`, status: 400, code: "malformed_json"},
		{name: "string", body: `"a"`, status: 400, code: "malformed_json"},
		{name: "number", body: `1`, status: 400, code: "malformed_json"},
		{name: "boolean", body: `true`, status: 400, code: "malformed_json"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var dst payload
			err := httpkit.DecodeJSONBytes([]byte(tt.body), &dst)
			if tt.status == 0 {
				require.NoError(t, err)
				return
			}
			var de *httpkit.DecodeError
			require.ErrorAs(t, err, &de)
			assert.Equal(t, tt.status, de.Status)
			assert.Equal(t, tt.code, de.Code)
			assert.Equal(t, tt.field, de.Field)
			assert.NotEmpty(t, de.Detail)
			assert.Equal(t, de.Detail, de.Error())
		})
	}
}

func TestDecodeJSONBytes_decodes_values(t *testing.T) {
	t.Parallel()
	var dst payload
	require.NoError(t, httpkit.DecodeJSONBytes([]byte(`{"name":"ä","n":-7,"ratio":0.5,"ok":false,"inner":{"x":2}}`), &dst))
	require.NotNil(t, dst.Name)
	assert.Equal(t, "ä", *dst.Name)
	require.NotNil(t, dst.N)
	assert.Equal(t, int64(-7), *dst.N)
	require.NotNil(t, dst.Ratio)
	assert.InDelta(t, 0.5, *dst.Ratio, 0)
	require.NotNil(t, dst.OK)
	assert.False(t, *dst.OK)
	require.NotNil(t, dst.Inner)
	require.NotNil(t, dst.Inner.X)
	assert.Equal(t, 2, *dst.Inner.X)
}

func TestDecodeJSON(t *testing.T) {
	t.Parallel()
	// exact is a valid object of exactly MaxBodyBytes bytes.
	exact := `{"name":"a"}`
	exact += strings.Repeat(" ", httpkit.MaxBodyBytes-len(exact))
	tests := []struct {
		name        string
		contentType string
		body        string
		status      int // 0: no error
		code        string
	}{
		{name: "json", contentType: "application/json", body: `{"name":"a"}`},
		{name: "json with charset", contentType: "application/json; charset=utf-8", body: `{"name":"a"}`},
		{name: "upper-case media type", contentType: "Application/JSON", body: `{"name":"a"}`},
		{name: "json suffix", contentType: "application/merge-patch+json", body: `{"name":"a"}`},
		{name: "exactly the limit", contentType: "application/json", body: exact},
		{name: "one byte over the limit", contentType: "application/json", body: exact + " ", status: 413, code: "body_too_large"},
		{name: "far over the limit", contentType: "application/json", body: strings.Repeat("[", 4*httpkit.MaxBodyBytes), status: 413, code: "body_too_large"},
		{name: "text/plain", contentType: "text/plain", body: `{"name":"a"}`, status: 415, code: "unsupported_media_type"},
		{name: "missing content type", contentType: "", body: `{"name":"a"}`, status: 415, code: "unsupported_media_type"},
		{name: "json-ish prefix", contentType: "application/jsonp", body: `{"name":"a"}`, status: 415, code: "unsupported_media_type"},
		{name: "invalid media type", contentType: "application/", body: `{"name":"a"}`, status: 415, code: "unsupported_media_type"},
		{name: "empty body", contentType: "application/json", body: "", status: 400, code: "empty_body"},
		{name: "bad body", contentType: "application/json", body: "{", status: 400, code: "malformed_json"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			req := httptest.NewRequestWithContext(t.Context(), http.MethodPost, "/x", strings.NewReader(tt.body))
			if tt.contentType != "" {
				req.Header.Set("Content-Type", tt.contentType)
			}
			var dst payload
			err := httpkit.DecodeJSON(httptest.NewRecorder(), req, &dst)
			if tt.status == 0 {
				require.NoError(t, err)
				require.NotNil(t, dst.Name)
				assert.Equal(t, "a", *dst.Name)
				return
			}
			var de *httpkit.DecodeError
			require.ErrorAs(t, err, &de)
			assert.Equal(t, tt.status, de.Status)
			assert.Equal(t, tt.code, de.Code)
		})
	}
}

type failingReader struct{}

func (failingReader) Read([]byte) (int, error) { return 0, errors.New("connection reset") }

func TestDecodeJSON_unreadable_body(t *testing.T) {
	t.Parallel()
	req := httptest.NewRequestWithContext(t.Context(), http.MethodPost, "/x", failingReader{})
	req.Header.Set("Content-Type", "application/json")
	var dst payload
	err := httpkit.DecodeJSON(httptest.NewRecorder(), req, &dst)

	var de *httpkit.DecodeError
	require.ErrorAs(t, err, &de)
	assert.Equal(t, http.StatusBadRequest, de.Status)
	assert.Equal(t, "unreadable_body", de.Code)
}

func TestWriteDecodeError(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		err    error
		status int
		code   string
		fields []httpkit.FieldError
	}{
		{
			name:   "decode error with field",
			err:    &httpkit.DecodeError{Status: 422, Code: "invalid_field", Detail: "n must be an integer", Field: "n"},
			status: 422, code: "invalid_field",
			fields: []httpkit.FieldError{{Field: "n", Message: "n must be an integer"}},
		},
		{
			name:   "decode error without field",
			err:    &httpkit.DecodeError{Status: 413, Code: "body_too_large", Detail: "too big"},
			status: 413, code: "body_too_large",
		},
		{
			name:   "other error",
			err:    errors.New("something"),
			status: 400, code: "malformed_json",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			rec := httptest.NewRecorder()
			req := httptest.NewRequestWithContext(t.Context(), http.MethodPost, "/orders", nil)
			httpkit.WriteDecodeError(rec, req, tt.err)

			require.Equal(t, tt.status, rec.Code)
			assert.Equal(t, httpkit.ProblemContentType, rec.Header().Get("Content-Type"))
			var p httpkit.Problem
			require.NoError(t, json.Unmarshal(rec.Body.Bytes(), &p))
			assert.Equal(t, tt.status, p.Status)
			assert.Equal(t, tt.code, p.Code)
			assert.Equal(t, "urn:orderflow:problem:"+tt.code, p.Type)
			assert.Equal(t, "/orders", p.Instance)
			assert.Equal(t, tt.fields, p.Errors)
		})
	}
}
