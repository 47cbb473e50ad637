package observability

import (
	"context"
	"fmt"
	"sort"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
)

// metricComponentUp is the readiness of each dependency /readyz reports.
const metricComponentUp = "orderflow.component.up"

// componentKey labels orderflow_component_up with the dependency's name
// (database, broker, router, forwarder).
const componentKey = attribute.Key("component")

// ComponentsFunc reports each dependency's state as /readyz does ("up",
// "down", "connecting", …).
type ComponentsFunc func(ctx context.Context) map[string]string

// RegisterReadiness exports orderflow_component_up: 1 for each component
// fn reports "up", 0 for any other state. It is what the alerting rules
// watch for a degraded or unready service (deploy/prometheus/rules), since
// Prometheus scrapes /metrics, not /readyz. Nil t does nothing.
func (t *Telemetry) RegisterReadiness(fn ComponentsFunc) error {
	if t == nil {
		return nil
	}
	// No unit: "1" would add _ratio to the Prometheus name.
	gauge, err := t.meter.Int64ObservableGauge(metricComponentUp,
		metric.WithDescription("1 while the component (database, broker, router, forwarder) is up, 0 otherwise."))
	if err != nil {
		return fmt.Errorf("create readiness gauge: %w", err)
	}
	_, err = t.meter.RegisterCallback(func(ctx context.Context, o metric.Observer) error {
		ctx, cancel := context.WithTimeout(ctx, callbackTimeout)
		defer cancel()
		states := fn(ctx)
		names := make([]string, 0, len(states))
		for name := range states {
			names = append(names, name)
		}
		sort.Strings(names)
		for _, name := range names {
			var up int64
			if states[name] == "up" {
				up = 1
			}
			o.ObserveInt64(gauge, up, metric.WithAttributes(componentKey.String(name)))
		}
		return nil
	}, gauge)
	if err != nil {
		return fmt.Errorf("register readiness callback: %w", err)
	}
	return nil
}
