// Command orderflow is the operator's tool. `orderflow poison` lists,
// inspects, replays and purges the messages the services parked in their
// poison queues (poison.orders, poison.invoices); `orderflow outbox status`
// reports the services' outbox backlogs. `orderflow --help` lists the exit
// statuses and JSON shapes.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/orderflow/orderflow/cmd/orderflow/cli"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := cli.Run(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr, os.Getenv)
	stop()
	os.Exit(code)
}
