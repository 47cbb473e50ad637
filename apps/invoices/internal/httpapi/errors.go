package httpapi

import (
	"errors"
	"net/http"

	"github.com/orderflow/orderflow/apps/invoices/internal/domain"
	"github.com/orderflow/orderflow/pkg/database"
	"github.com/orderflow/orderflow/pkg/httpkit"
)

// writeError is the one place that maps errors to responses.
func (h api) writeError(w http.ResponseWriter, r *http.Request, err error) {
	switch {
	case errors.Is(err, domain.ErrInvoiceNotFound):
		httpkit.Error(w, r, http.StatusNotFound, "invoice_not_found", "no invoice of yours matches")
	case database.IsUnavailable(err):
		httpkit.Unavailable(w, r, h.log, "database", err)
	default:
		httpkit.Internal(w, r, h.log, err)
	}
}
