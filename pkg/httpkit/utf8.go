package httpkit

import (
	"bytes"
	"encoding/json"
	"net/http"
	"strconv"
	"unicode/utf8"
)

// checkText refuses a body whose text is not valid Unicode, naming the
// field that holds it where the body is JSON enough to tell.
func checkText(body []byte) error {
	off, escape := invalidText(body)
	if off < 0 {
		return nil
	}
	what := "not valid UTF-8"
	if escape {
		what = "an unpaired UTF-16 surrogate escape, which is not valid Unicode"
	}
	field := fieldAt(body, off)
	detail := "the body holds " + what
	if field != "" {
		detail = field + " holds " + what
	}
	return &DecodeError{Status: http.StatusBadRequest, Code: "invalid_utf8", Field: field, Detail: detail}
}

// invalidText returns the offset of the first byte of body that is not
// UTF-8, or of the first \u escape of an unpaired surrogate (escape true);
// -1 when there is none.
func invalidText(body []byte) (int, bool) {
	if !utf8.Valid(body) {
		for i := 0; i < len(body); {
			r, size := utf8.DecodeRune(body[i:])
			if r == utf8.RuneError && size == 1 {
				return i, false
			}
			i += size
		}
	}
	if !bytes.Contains(body, []byte(`\u`)) {
		return -1, false
	}
	inString := false
	for i := 0; i < len(body); i++ {
		switch c := body[i]; {
		case c == '"':
			inString = !inString
		case c == '\\' && inString && i+1 < len(body):
			if body[i+1] != 'u' {
				i++ // a one-character escape, \" among them
				continue
			}
			u, ok := hex4(body, i+2)
			switch {
			case !ok: // malformed: the decoder says so
			case u >= 0xD800 && u < 0xDC00:
				if low, ok := hex4(body, i+8); ok && body[i+6] == '\\' && body[i+7] == 'u' && low >= 0xDC00 && low < 0xE000 {
					i += 11
					continue
				}
				return i, true
			case u >= 0xDC00 && u < 0xE000:
				return i, true
			}
			i += 5
		}
	}
	return -1, false
}

func hex4(b []byte, at int) (uint64, bool) {
	if at+4 > len(b) {
		return 0, false
	}
	v, err := strconv.ParseUint(string(b[at:at+4]), 16, 16)
	return v, err == nil
}

// fieldAt names the member of the JSON document body that holds the byte at
// off, as a path (customer_id, items[2].sku); "" when body is not JSON
// enough to tell.
func fieldAt(body []byte, off int) string {
	type level struct {
		object  bool
		wantKey bool
		key     string
		index   int
	}
	var stack []level
	path := func(extraKey string) string {
		var b []byte
		for i, l := range stack {
			switch {
			case l.object && (i < len(stack)-1 || extraKey == ""):
				if len(b) > 0 {
					b = append(b, '.')
				}
				b = append(b, l.key...)
			case !l.object:
				b = append(b, '[')
				b = strconv.AppendInt(b, int64(l.index), 10)
				b = append(b, ']')
			}
		}
		if extraKey != "" {
			if len(b) > 0 {
				b = append(b, '.')
			}
			b = append(b, extraKey...)
		}
		return string(b)
	}
	// valueDone moves the enclosing container past a value.
	valueDone := func() {
		if n := len(stack); n > 0 {
			if stack[n-1].object {
				stack[n-1].wantKey = true
			} else {
				stack[n-1].index++
			}
		}
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	start := int64(0)
	for {
		tok, err := dec.Token()
		if err != nil {
			return ""
		}
		end := dec.InputOffset()
		here := int64(off) >= start && int64(off) < end
		start = end
		top := len(stack) - 1
		if s, ok := tok.(string); ok && top >= 0 && stack[top].object && stack[top].wantKey {
			if here { // the key itself: name the object that holds it
				stack = stack[:top]
				return path("")
			}
			stack[top].key, stack[top].wantKey = s, false
			continue
		}
		if here {
			return path("")
		}
		switch tok {
		case json.Delim('{'):
			stack = append(stack, level{object: true, wantKey: true})
		case json.Delim('['):
			stack = append(stack, level{})
		case json.Delim('}'), json.Delim(']'):
			stack = stack[:top]
			valueDone()
		default:
			valueDone()
		}
	}
}
