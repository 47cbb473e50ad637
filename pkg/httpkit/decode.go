package httpkit

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strings"
)

// MaxBodyBytes bounds every JSON request body.
const MaxBodyBytes = 64 << 10

// DecodeError is a request body that cannot be decoded. It carries the
// response the client gets.
type DecodeError struct {
	Status int
	Code   string
	Detail string
	Field  string
}

func (e *DecodeError) Error() string { return e.Detail }

// DecodeJSON decodes one JSON object from the request body into dst, strictly:
// the media type must be JSON (415), the body at most MaxBodyBytes (413),
// unknown fields, trailing data and values of the wrong type are rejected.
// Every failure is a *DecodeError with a 4xx status, never a 500.
func DecodeJSON(w http.ResponseWriter, r *http.Request, dst any) error {
	if err := requireJSON(r.Header.Get("Content-Type")); err != nil {
		return err
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, MaxBodyBytes))
	if err != nil {
		var tooLarge *http.MaxBytesError
		if errors.As(err, &tooLarge) {
			return &DecodeError{
				Status: http.StatusRequestEntityTooLarge, Code: "body_too_large",
				Detail: fmt.Sprintf("the body exceeds %d bytes", MaxBodyBytes),
			}
		}
		return &DecodeError{Status: http.StatusBadRequest, Code: "unreadable_body", Detail: "the body could not be read"}
	}
	return DecodeJSONBytes(body, dst)
}

// DecodeJSONBytes applies DecodeJSON's rules to a body already read. Text
// that is not valid Unicode (bytes that are not UTF-8, a \u escape of an
// unpaired UTF-16 surrogate) is refused: encoding/json would replace it with
// U+FFFD and so change the client's data without a word.
func DecodeJSONBytes(body []byte, dst any) error {
	if len(bytes.TrimSpace(body)) == 0 {
		return &DecodeError{Status: http.StatusBadRequest, Code: "empty_body", Detail: "the body is empty; send a JSON object"}
	}
	if err := checkText(body); err != nil {
		return err
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(dst); err != nil {
		return decodeError(err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return &DecodeError{Status: http.StatusBadRequest, Code: "malformed_json", Detail: "the body has data after the JSON object"}
	}
	return nil
}

func requireJSON(contentType string) error {
	mt, _, err := mime.ParseMediaType(contentType)
	if err != nil || (mt != "application/json" && !strings.HasSuffix(mt, "+json")) {
		return &DecodeError{
			Status: http.StatusUnsupportedMediaType, Code: "unsupported_media_type",
			Detail: "send the body as application/json",
		}
	}
	return nil
}

func decodeError(err error) error {
	var syntaxErr *json.SyntaxError
	var typeErr *json.UnmarshalTypeError
	switch {
	case errors.As(err, &syntaxErr), errors.Is(err, io.ErrUnexpectedEOF):
		return &DecodeError{Status: http.StatusBadRequest, Code: "malformed_json", Detail: "the body is not valid JSON"}
	case errors.As(err, &typeErr):
		field := typeErr.Field
		if field == "" {
			return &DecodeError{Status: http.StatusBadRequest, Code: "malformed_json", Detail: "the body must be a JSON object"}
		}
		return &DecodeError{
			Status: http.StatusUnprocessableEntity, Code: "invalid_field", Field: field,
			Detail: fmt.Sprintf("%s must be %s, got a JSON %s", field, jsonKind(typeErr.Type.Kind().String()), typeErr.Value),
		}
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		field := strings.Trim(strings.TrimPrefix(err.Error(), "json: unknown field "), `"`)
		return &DecodeError{
			Status: http.StatusUnprocessableEntity, Code: "unknown_field", Field: field,
			Detail: fmt.Sprintf("unknown field %q", field),
		}
	default:
		return &DecodeError{Status: http.StatusBadRequest, Code: "malformed_json", Detail: "the body is not a JSON object"}
	}
}

func jsonKind(goKind string) string {
	switch {
	case strings.HasPrefix(goKind, "int"), strings.HasPrefix(goKind, "uint"):
		return "an integer"
	case strings.HasPrefix(goKind, "float"):
		return "a number"
	case goKind == "string":
		return "a string"
	case goKind == "bool":
		return "a boolean"
	default:
		return "a " + goKind
	}
}

// WriteDecodeError writes the problem for an error returned by DecodeJSON.
func WriteDecodeError(w http.ResponseWriter, r *http.Request, err error) {
	var de *DecodeError
	if !errors.As(err, &de) {
		Error(w, r, http.StatusBadRequest, "malformed_json", "the body could not be decoded")
		return
	}
	p := Problem{Status: de.Status, Code: de.Code, Detail: de.Detail}
	if de.Field != "" {
		p.Errors = []FieldError{{Field: de.Field, Message: de.Detail}}
	}
	WriteProblem(w, r, p)
}
