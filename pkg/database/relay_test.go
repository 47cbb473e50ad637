package database_test

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/orderflow/orderflow/pkg/database"
	"github.com/orderflow/orderflow/pkg/testkit"
)

func TestOpenRelay_plans_without_sequential_scans(t *testing.T) {
	testkit.Integration(t)
	t.Parallel()
	url := testkit.NewDatabase(t)
	relay, err := database.OpenRelay(t.Context(), url, 2)
	require.NoError(t, err)
	t.Cleanup(func() { _ = relay.Close() })
	var setting string
	require.NoError(t, relay.QueryRowContext(t.Context(), "SHOW synchronous_commit").Scan(&setting))
	assert.Equal(t, "off", setting)
	require.NoError(t, relay.QueryRowContext(t.Context(), "SHOW enable_seqscan").Scan(&setting))
	assert.Equal(t, "off", setting)

	db, err := database.Open(t.Context(), database.Config{URL: url, Name: "test"})
	require.NoError(t, err)
	t.Cleanup(func() { _ = db.Close() })
	require.NoError(t, db.QueryRowContext(t.Context(), "SHOW enable_seqscan").Scan(&setting))
	assert.Equal(t, "on", setting, "the services' own pool plans as usual")

	kv, err := database.OpenRelay(t.Context(), "host=127.0.0.1 user=postgres dbname=postgres", 2)
	require.NoError(t, err, "a key=value DSN works too")
	t.Cleanup(func() { _ = kv.Close() })
	require.NoError(t, kv.QueryRowContext(t.Context(), "SHOW enable_seqscan").Scan(&setting))
	assert.Equal(t, "off", setting)
}
