package platform

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net/url"
	"strings"

	"github.com/orderflow/orderflow/pkg/database"
)

// MigrateCommand is the "migrate" subcommand (`/app migrate`): it sets up
// the service's database roles as an administrator and then migrates the
// schema as the owner role, and exits. On ECS it runs as an init container
// before the service's own container, which connects as the
// least-privilege role (docs/deploy.md).
//
// The service's own connection (cfg.DatabaseURL: DATABASE_URL, or
// DATABASE_HOST, _USER, _PASSWORD) names the database and the login role
// and its password. The administrator comes from DATABASE_ADMIN_URL, or
// from DATABASE_ADMIN_USER and DATABASE_ADMIN_PASSWORD on the same host.
// DATABASE_OWNER names the owner role (<service>_owner).
func MigrateCommand(ctx context.Context, cfg Config, getenv func(string) string, log *slog.Logger, migrations []fs.FS) error {
	svc, err := url.Parse(cfg.DatabaseURL)
	if err != nil || svc.User == nil {
		return errors.New("migrate: the service's database url names no user")
	}
	password, _ := svc.User.Password()
	roles := database.Roles{
		Database:    strings.TrimPrefix(svc.Path, "/"),
		Owner:       getenv("DATABASE_OWNER"),
		App:         svc.User.Username(),
		AppPassword: password,
	}
	if roles.Owner == "" {
		roles.Owner = cfg.Service + "_owner"
	}
	adminURL, err := adminURL(cfg, getenv)
	if err != nil {
		return err
	}
	if err := database.SetupRoles(ctx, adminURL, roles); err != nil {
		return err
	}
	ownerURL, err := database.AsRole(adminURL, roles.Owner)
	if err != nil {
		return err
	}
	if ownerURL, err = withPath(ownerURL, roles.Database); err != nil {
		return err
	}
	db, err := database.Open(ctx, database.Config{URL: ownerURL, Name: cfg.Service})
	if err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	defer db.Close()
	if err := database.Migrate(ctx, db, migrations, log); err != nil {
		return err
	}
	log.InfoContext(ctx, "database ready", "database", roles.Database, "owner", roles.Owner, "role", roles.App)
	return nil
}

// adminURL is DATABASE_ADMIN_URL, or the service's URL with the
// administrator's user and password.
func adminURL(cfg Config, getenv func(string) string) (string, error) {
	if v := getenv("DATABASE_ADMIN_URL"); v != "" {
		return v, nil
	}
	user := getenv("DATABASE_ADMIN_USER")
	if user == "" {
		return "", errors.New("migrate: set DATABASE_ADMIN_URL, or DATABASE_ADMIN_USER and DATABASE_ADMIN_PASSWORD")
	}
	u, err := url.Parse(cfg.DatabaseURL)
	if err != nil {
		return "", fmt.Errorf("migrate: parse database url: %w", err)
	}
	u.User = url.UserPassword(user, getenv("DATABASE_ADMIN_PASSWORD"))
	return u.String(), nil
}

func withPath(dsn, db string) (string, error) {
	u, err := url.Parse(dsn)
	if err != nil {
		return "", fmt.Errorf("migrate: parse database url: %w", err)
	}
	u.Path = "/" + db
	return u.String(), nil
}
