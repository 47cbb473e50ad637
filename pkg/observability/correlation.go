package observability

import "context"

// CorrelationHeader is the HTTP header Kong's correlation-id plugin sets and
// the services echo.
const CorrelationHeader = "X-Correlation-ID"

type correlationKey struct{}

// WithCorrelationID returns a context carrying the correlation id.
func WithCorrelationID(ctx context.Context, id string) context.Context {
	return context.WithValue(ctx, correlationKey{}, id)
}

// CorrelationID returns the context's correlation id, or "".
func CorrelationID(ctx context.Context) string {
	id, _ := ctx.Value(correlationKey{}).(string)
	return id
}
