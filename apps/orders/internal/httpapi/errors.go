package httpapi

import (
	"errors"
	"net/http"

	"github.com/orderflow/orderflow/apps/orders/internal/domain"
	"github.com/orderflow/orderflow/pkg/database"
	"github.com/orderflow/orderflow/pkg/httpkit"
)

// writeError is the one place that maps errors to responses.
func (h api) writeError(w http.ResponseWriter, r *http.Request, err error) {
	var invalid *domain.ValidationError
	switch {
	case errors.As(err, &invalid):
		p := httpkit.Problem{Status: http.StatusUnprocessableEntity, Code: "invalid_order", Detail: invalid.Error()}
		for _, f := range invalid.Fields {
			p.Errors = append(p.Errors, httpkit.FieldError{Field: f.Field, Message: f.Field + " " + f.Message})
		}
		httpkit.WriteProblem(w, r, p)
	case errors.Is(err, domain.ErrOrderNotFound):
		httpkit.Error(w, r, http.StatusNotFound, "order_not_found", "no order with this id")
	case errors.Is(err, domain.ErrIdempotencyKeyReused):
		httpkit.Error(w, r, http.StatusUnprocessableEntity, "idempotency_key_reused",
			"this Idempotency-Key was used for a different request body")
	case database.IsUnavailable(err):
		httpkit.Unavailable(w, r, h.log, "database", err)
	default:
		httpkit.Internal(w, r, h.log, err)
	}
}
