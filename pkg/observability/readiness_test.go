package observability_test

import (
	"context"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestTelemetry_RegisterReadiness_exports_each_component(t *testing.T) {
	t.Parallel()
	tel, _ := newTelemetry(t)
	require.NoError(t, tel.RegisterReadiness(func(context.Context) map[string]string {
		return map[string]string{"database": "up", "broker": "connecting", "router": "up", "forwarder": "down"}
	}))
	f := scrape(t, tel.MetricsHandler())["orderflow_component_up"]
	require.NotNil(t, f, "orderflow_component_up is exported")
	got := map[string]float64{}
	for _, m := range f.GetMetric() {
		for _, l := range m.GetLabel() {
			if l.GetName() == "component" {
				got[l.GetValue()] = m.GetGauge().GetValue()
			}
		}
	}
	assert.Equal(t, map[string]float64{"database": 1, "broker": 0, "router": 1, "forwarder": 0}, got)
}
