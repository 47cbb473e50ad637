package store

import (
	"embed"
	"io/fs"

	"github.com/orderflow/orderflow/pkg/database"
)

//go:embed migrations/*.sql
var migrations embed.FS

// Migrations returns the store's SQL migrations. The outbox's table has its
// own (outbox.Migrations); the service applies both.
func Migrations() fs.FS { return database.Sub(migrations, "migrations") }
