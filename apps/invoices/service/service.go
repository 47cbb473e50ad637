// Package service is the invoices composition root: it wires the store, the use
// cases, the HTTP API and the event handlers onto the platform.
package service

import (
	"github.com/go-chi/chi/v5"

	"github.com/orderflow/orderflow/apps/invoices/internal/app"
	"github.com/orderflow/orderflow/apps/invoices/internal/consumers"
	"github.com/orderflow/orderflow/apps/invoices/internal/httpapi"
	"github.com/orderflow/orderflow/apps/invoices/internal/store"
	"github.com/orderflow/orderflow/pkg/messaging"
	"github.com/orderflow/orderflow/pkg/platform"
)

// Name is the service name: it names the poison queue, logs and traces.
const Name = "invoices"

// DefaultPort is the HTTP port when PORT is unset.
const DefaultPort = 3334

// App returns the invoices service for platform.Run.
func App() platform.App {
	return platform.App{
		Migrations: store.Migrations(),
		Build: func(d platform.Deps) (func(chi.Router), func(*messaging.EventProcessor) error, error) {
			outbox := messaging.Outbox{Log: d.WatermillLog, Otel: d.Telemetry.Options(), Waker: d.OutboxWaker}
			a := app.New(store.New(d.DB, outbox, d.Batching), d.Telemetry)
			register := func(p *messaging.EventProcessor) error { return consumers.Register(p, a) }
			return httpapi.Routes(a, d.Log), register, nil
		},
	}
}
