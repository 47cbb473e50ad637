package httpkit

import (
	"context"
	"net/http"
	"time"
)

// Component states reported by /readyz.
const (
	StateUp       = "up"
	StateDown     = "down"
	StateDegraded = "degraded"
	// StateShedding is a component that holds back or refuses some
	// requests to protect the service (load shedding); Health.Details says
	// why.
	StateShedding = "shedding"
)

// Health serves /healthz and /readyz.
type Health struct {
	// Ping checks the database, the one dependency without which the
	// service cannot serve HTTP.
	Ping func(ctx context.Context) error
	// Components reports the other dependencies (broker, router, forwarder).
	// Their being down degrades the service but does not make it unready:
	// the outbox keeps accepting orders while RabbitMQ is away.
	Components func() map[string]string
	// Details, when set, says why a component is in the state it is
	// (load shedding: how many events wait, and the bound).
	Details func() map[string]string
}

type readiness struct {
	Status     string            `json:"status"`
	Components map[string]string `json:"components"`
	Details    map[string]string `json:"details,omitempty"`
}

// Live answers 200 while the process runs.
func (h Health) Live(w http.ResponseWriter, _ *http.Request) {
	JSON(w, http.StatusOK, map[string]string{"status": StateUp})
}

// Ready answers 200 while the database answers (status "up", or "degraded"
// when another dependency is down) and 503 when it does not.
func (h Health) Ready(w http.ResponseWriter, r *http.Request) {
	res := h.check(r.Context())
	status := http.StatusOK
	if res.Status == StateDown {
		status = http.StatusServiceUnavailable
	}
	JSON(w, status, res)
}

// States returns what /readyz reports for each dependency, the
// database included (pinged with a 1 s timeout): the readiness gauge
// (observability.Telemetry.RegisterReadiness) exports it for alerting.
func (h Health) States(ctx context.Context) map[string]string {
	return h.check(ctx).Components
}

func (h Health) check(ctx context.Context) readiness {
	ctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	res := readiness{Status: StateUp, Components: map[string]string{}}
	if h.Components != nil {
		for name, state := range h.Components() {
			res.Components[name] = state
			if state != StateUp {
				res.Status = StateDegraded
			}
		}
	}
	if h.Details != nil {
		res.Details = h.Details()
	}
	res.Components["database"] = StateUp
	if err := h.Ping(ctx); err != nil {
		res.Components["database"] = StateDown
		res.Status = StateDown
	}
	return res
}
