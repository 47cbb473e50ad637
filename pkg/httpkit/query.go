package httpkit

import (
	"errors"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"unicode/utf8"
)

// Query parses the request's query string strictly, the same way on every
// route: it must parse (a malformed escape or a ';' is refused, where
// r.URL.Query() would drop the pair silently), and may name only the
// parameters in allowed, each at most once, with a value that is not empty
// and is valid UTF-8. Otherwise Query writes a 400 invalid_query problem
// naming the parameter and returns false.
func Query(w http.ResponseWriter, r *http.Request, allowed ...string) (url.Values, bool) {
	q, err := url.ParseQuery(r.URL.RawQuery)
	if err != nil {
		detail := "the query string is malformed"
		var escErr url.EscapeError
		if errors.As(err, &escErr) {
			detail += ": invalid escape " + strconv.Quote(string(escErr))
		} else {
			detail += ": " + err.Error()
		}
		Error(w, r, http.StatusBadRequest, "invalid_query", detail)
		return nil, false
	}
	names := make([]string, 0, len(q))
	for name := range q {
		names = append(names, name)
	}
	slices.Sort(names) // the same problem for the same query
	for _, name := range names {
		values := q[name]
		var msg string
		switch {
		case !utf8.ValidString(name):
			name, msg = strconv.QuoteToASCII(name), "is not valid UTF-8"
		case !slices.Contains(allowed, name):
			msg = "is not a parameter of this route"
			if name == "" {
				name, msg = `""`, "is not a parameter name"
			}
		case len(values) > 1:
			msg = "is given " + strconv.Itoa(len(values)) + " times; give it once"
		case values[0] == "":
			msg = "is empty; give a value or leave the parameter out"
		case !utf8.ValidString(values[0]):
			msg = "is not valid UTF-8"
		default:
			continue
		}
		WriteProblem(w, r, Problem{
			Status: http.StatusBadRequest, Code: "invalid_query", Detail: name + " " + msg,
			Errors: []FieldError{{Field: name, Message: msg}},
		})
		return nil, false
	}
	return q, true
}
