// Command orders runs the orders service: the REST API that accepts orders
// into PostgreSQL with their OrderPlaced events in the outbox, the forwarder
// that relays them to RabbitMQ, and the InvoiceIssued handler.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/orderflow/orderflow/apps/orders/service"
	"github.com/orderflow/orderflow/pkg/platform"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := platform.Main(ctx, service.Name, service.DefaultPort, os.Args, os.Getenv, os.Stdout, service.App())
	stop()
	os.Exit(code)
}
