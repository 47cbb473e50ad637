package e2e_test

import (
	"context"
	"database/sql"
	"io"
	"io/fs"
	"net/http"
	"net/url"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	invoices "github.com/orderflow/orderflow/apps/invoices/service"
	orders "github.com/orderflow/orderflow/apps/orders/service"
	"github.com/orderflow/orderflow/pkg/observability"
	"github.com/orderflow/orderflow/pkg/platform"
	"github.com/orderflow/orderflow/pkg/testkit"
)

// leastPrivilegeEnv runs `/app migrate` for service, as the deployment's
// init container does (docs/deploy.md): an administrator that is no
// superuser, only CREATEROLE and CREATEDB like RDS's master user, creates
// the service's owner and login roles and its database, and migrates it as
// the owner. It returns the service's environment, connecting as the login
// role.
func leastPrivilegeEnv(t *testing.T, service string, migrations []fs.FS, broker string) map[string]string {
	t.Helper()
	suffix := testkit.UniqueSuffix()
	dbName, role, owner := "lp_"+service+"_"+suffix, service+"_app_"+suffix, service+"_owner_"+suffix
	adminRole := service + "_admin_" + suffix
	admin, err := sql.Open("pgx", testkit.PostgresURL())
	require.NoError(t, err)
	_, err = admin.ExecContext(t.Context(), "CREATE ROLE "+adminRole+" LOGIN CREATEROLE CREATEDB PASSWORD 'admin-pw'")
	require.NoError(t, err)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		for _, stmt := range []string{
			"DROP DATABASE IF EXISTS " + dbName + " WITH (FORCE)",
			"DROP ROLE IF EXISTS " + role, "DROP ROLE IF EXISTS " + owner, "DROP ROLE IF EXISTS " + adminRole,
		} {
			if _, err := admin.ExecContext(ctx, stmt); err != nil {
				t.Errorf("%s: %v", stmt, err)
			}
		}
		_ = admin.Close()
	})
	adminURL, err := url.Parse(testkit.PostgresURL())
	require.NoError(t, err)
	adminURL.User = url.UserPassword(adminRole, "admin-pw")
	appURL, err := url.Parse(testkit.PostgresURL())
	require.NoError(t, err)
	appURL.User = url.UserPassword(role, "pw-'with'-quotes:@/"+suffix)
	appURL.Path = "/" + dbName

	env := testkit.ServiceEnv(t, broker)
	env["DATABASE_URL"] = appURL.String()
	env["DATABASE_CREATE"] = "false"
	getenv := func(k string) string {
		switch k {
		case "DATABASE_ADMIN_URL":
			return adminURL.String()
		case "DATABASE_OWNER":
			return owner
		}
		return env[k]
	}
	cfg, err := platform.LoadConfig(service, 0, getenv)
	require.NoError(t, err)
	log := observability.NewLogger(io.Discard, service, cfg.LogLevel)
	require.NoError(t, platform.MigrateCommand(t.Context(), cfg, getenv, log, migrations))
	// Twice, as every task start does: nothing changes, nothing fails.
	require.NoError(t, platform.MigrateCommand(t.Context(), cfg, getenv, log, migrations))

	// The login role can do no DDL and owns nothing.
	db := openDB(t, env["DATABASE_URL"])
	_, err = db.ExecContext(t.Context(), "CREATE TABLE intruder (id int)")
	require.ErrorContains(t, err, "permission denied")
	var owners []string
	rows, err := db.QueryContext(t.Context(), "SELECT DISTINCT tableowner FROM pg_tables WHERE schemaname = 'public'")
	require.NoError(t, err)
	defer rows.Close()
	for rows.Next() {
		var o string
		require.NoError(t, rows.Scan(&o))
		owners = append(owners, o)
	}
	require.NoError(t, rows.Err())
	assert.Equal(t, []string{owner}, owners, "every table belongs to the owner role")
	return env
}

// TestLeastPrivilege_the_flow_runs_on_the_services_own_roles runs both
// services connected as their least-privilege roles, after their migration
// step: an order still gets its invoice.
func TestLeastPrivilege_the_flow_runs_on_the_services_own_roles(t *testing.T) {
	testkit.Integration(t)
	t.Parallel()
	broker := testkit.NewVhost(t)
	s := &stack{
		ordersEnv:   leastPrivilegeEnv(t, ordersName, orders.Migrations(), broker),
		invoicesEnv: leastPrivilegeEnv(t, invoicesName, invoices.Migrations(), broker),
	}
	s.orders = testkit.StartService(t, ordersName, ordersApp, s.ordersEnv)
	s.invoices = testkit.StartService(t, invoicesName, invoicesApp, s.invoicesEnv)
	s.ordersDB = openDB(t, s.ordersEnv["DATABASE_URL"])
	s.invoicesDB = openDB(t, s.invoicesEnv["DATABASE_URL"])

	for i := range 5 {
		code, _, err := postOrder(t.Context(), s.orders.URL, "c-lp", int64(100+i))
		require.NoError(t, err)
		require.Equal(t, http.StatusCreated, code)
	}
	s.waitAllInvoiced(t, 5, 30*time.Second)
}
