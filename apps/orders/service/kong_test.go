package service_test

import (
	"context"
	"log/slog"
	"path/filepath"
	"testing"

	"github.com/orderflow/orderflow/apps/orders/internal/httpapi"
	"github.com/orderflow/orderflow/apps/orders/service"
	"github.com/orderflow/orderflow/deploy"
	"github.com/orderflow/orderflow/pkg/httpkit"
	"github.com/orderflow/orderflow/pkg/platform"
)

// TestKong_routes_reach_the_orders_API checks kong/kong.yml against the
// routes the real router serves: Kong sends the API's paths, and only
// those, to this service on its port.
func TestKong_routes_reach_the_orders_API(t *testing.T) {
	t.Parallel()
	log := slog.New(slog.DiscardHandler)
	health := httpkit.Health{Ping: func(context.Context) error { return nil }}
	h := platform.Handler(log, nil, "", health, httpapi.Routes(nil, log, nil))
	deploy.CheckKongRoutes(t, filepath.Join("..", "..", "..", "kong", "kong.yml"), service.Name, service.DefaultPort, h)
}
