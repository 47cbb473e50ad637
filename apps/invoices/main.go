// Command invoices runs the invoices service: the OrderPlaced handler that
// issues one invoice per order with its InvoiceIssued event in the outbox,
// the forwarder that relays them to RabbitMQ, and the invoices REST API.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/orderflow/orderflow/apps/invoices/service"
	"github.com/orderflow/orderflow/pkg/platform"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := platform.Main(ctx, service.Name, service.DefaultPort, os.Args, os.Getenv, os.Stdout, service.App())
	stop()
	os.Exit(code)
}
