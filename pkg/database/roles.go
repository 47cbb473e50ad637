package database

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"strings"
)

// Roles are the PostgreSQL roles of one service's database, least
// privilege first: the service logs in as App, which may read and write
// rows and nothing else; the schema belongs to Owner, which cannot log in,
// and migrations run as Owner (SET ROLE) on the administrator's connection.
type Roles struct {
	// Database is the service's database ("orders").
	Database string
	// Owner owns the database, its schema and every table (NOLOGIN).
	Owner string
	// App is the service's login role: CONNECT, schema USAGE, SELECT,
	// INSERT, UPDATE and DELETE on the tables, USAGE on the sequences.
	App string
	// AppPassword is App's password; SetupRoles sets it on every run, so
	// the secret it comes from stays the one source of truth.
	AppPassword string
}

// rolesLockKey serialises SetupRoles runs on one server (several tasks may
// start at once); advisory locks on the maintenance database are
// server-wide for it.
const rolesLockKey int64 = 0x6f72646572726f6c // "orderrol"

// SetupRoles creates or updates r's roles and database through adminURL,
// an administrator's URL (on RDS the master user, whose password the
// RDS-managed secret holds). It is idempotent: run it before every
// migration. The administrator becomes a member of Owner (on PostgreSQL 16
// and later a CREATEROLE user is not one of the roles it creates), so that
// it may create the database for Owner and migrate as Owner.
//
// Owner's rights on the objects migrations create later reach App through
// default privileges; objects that exist already are granted now.
func SetupRoles(ctx context.Context, adminURL string, r Roles) error {
	if r.Database == "" || r.Owner == "" || r.App == "" || r.AppPassword == "" {
		return errors.New("set up database roles: database, owner, app and app password are required")
	}
	maintenance, err := withDatabase(adminURL, "postgres")
	if err != nil {
		return err
	}
	admin, err := open(ctx, maintenance)
	if err != nil {
		return fmt.Errorf("set up database roles: %w", err)
	}
	defer admin.Close()
	conn, err := admin.Conn(ctx)
	if err != nil {
		return fmt.Errorf("set up database roles: %w", err)
	}
	defer conn.Close()
	if _, err := conn.ExecContext(ctx, "SELECT pg_advisory_lock($1)", rolesLockKey); err != nil {
		return fmt.Errorf("take roles lock: %w", err)
	}
	defer func() {
		_, _ = conn.ExecContext(context.WithoutCancel(ctx), "SELECT pg_advisory_unlock($1)", rolesLockKey)
	}()

	owner, app, db := quoteIdent(r.Owner), quoteIdent(r.App), quoteIdent(r.Database)
	var stmts []string
	if !exists(ctx, conn, "SELECT 1 FROM pg_roles WHERE rolname = $1", r.Owner) {
		stmts = append(stmts, "CREATE ROLE "+owner+" NOLOGIN")
	}
	if !exists(ctx, conn, "SELECT 1 FROM pg_roles WHERE rolname = $1", r.App) {
		stmts = append(stmts, "CREATE ROLE "+app+" LOGIN")
	}
	// Utility statements take no parameters: the password goes in as a
	// quoted literal, and the server stores only its SCRAM hash.
	stmts = append(stmts,
		"ALTER ROLE "+app+" WITH LOGIN PASSWORD "+quoteLiteral(r.AppPassword),
		"GRANT "+owner+" TO CURRENT_USER",
	)
	if !exists(ctx, conn, "SELECT 1 FROM pg_database WHERE datname = $1", r.Database) {
		stmts = append(stmts, "CREATE DATABASE "+db+" OWNER "+owner)
	} else {
		stmts = append(stmts, "ALTER DATABASE "+db+" OWNER TO "+owner)
	}
	stmts = append(stmts,
		"REVOKE ALL ON DATABASE "+db+" FROM PUBLIC",
		"GRANT CONNECT ON DATABASE "+db+" TO "+app,
	)
	if err := execAll(ctx, conn, stmts); err != nil {
		return err
	}

	inDB, err := withDatabase(adminURL, r.Database)
	if err != nil {
		return err
	}
	target, err := open(ctx, inDB)
	if err != nil {
		return fmt.Errorf("set up database roles: %w", err)
	}
	defer target.Close()
	tconn, err := target.Conn(ctx)
	if err != nil {
		return fmt.Errorf("set up database roles: %w", err)
	}
	defer tconn.Close()
	return execAll(ctx, tconn, []string{
		// public belongs to pg_database_owner (Owner) from PostgreSQL 15 on;
		// say so for older servers, and keep everyone else from creating.
		"ALTER SCHEMA public OWNER TO " + owner,
		"REVOKE CREATE ON SCHEMA public FROM PUBLIC",
		"GRANT USAGE ON SCHEMA public TO " + app,
		"ALTER DEFAULT PRIVILEGES FOR ROLE " + owner + " IN SCHEMA public GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO " + app,
		"ALTER DEFAULT PRIVILEGES FOR ROLE " + owner + " IN SCHEMA public GRANT USAGE, SELECT ON SEQUENCES TO " + app,
		"GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO " + app,
		"GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO " + app,
	})
}

// AsRole returns dsn with the session running as role from the start (the
// startup parameter role, as SET ROLE): objects it creates belong to role.
func AsRole(dsn, role string) (string, error) {
	u, err := url.Parse(dsn)
	if err != nil || u.Scheme == "" {
		return "", errors.New("database url must be a postgres:// URL")
	}
	q := u.Query()
	q.Set("role", role) // pgx sends unknown parameters to the server as settings
	u.RawQuery = q.Encode()
	return u.String(), nil
}

func withDatabase(dsn, name string) (string, error) {
	u, err := url.Parse(dsn)
	if err != nil || u.Scheme == "" {
		return "", errors.New("database url must be a postgres:// URL")
	}
	u.Path = "/" + name
	return u.String(), nil
}

func exists(ctx context.Context, conn *sql.Conn, query string, arg string) bool {
	var one int
	return conn.QueryRowContext(ctx, query, arg).Scan(&one) == nil
}

func execAll(ctx context.Context, conn *sql.Conn, stmts []string) error {
	for _, s := range stmts {
		if _, err := conn.ExecContext(ctx, s); err != nil {
			// The statement may hold a password: name its first words only.
			verb := strings.Join(strings.Fields(s)[:2], " ")
			return fmt.Errorf("set up database roles: %s: %w", verb, err)
		}
	}
	return nil
}

func quoteLiteral(s string) string { return `'` + strings.ReplaceAll(s, `'`, `''`) + `'` }
