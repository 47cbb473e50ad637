package database_test

import (
	"io/fs"
	"testing"
	"testing/fstest"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/orderflow/orderflow/pkg/database"
)

func TestUnion(t *testing.T) {
	t.Parallel()
	own := fstest.MapFS{
		"20250101000001_create_orders.up.sql": {Data: []byte("CREATE TABLE orders ()")},
		"20250101000003_index.up.sql":         {Data: []byte("CREATE INDEX")},
	}
	outbox := fstest.MapFS{
		"20250101000002_create_outbox.up.sql": {Data: []byte("CREATE TABLE outbox ()")},
		"20250101000003_index.up.sql":         {Data: []byte("not this one")},
	}
	u := database.Union(own, outbox)
	require.NoError(t, fstest.TestFS(u, "20250101000001_create_orders.up.sql", "20250101000002_create_outbox.up.sql", "20250101000003_index.up.sql"))

	var names []string
	require.NoError(t, fs.WalkDir(u, ".", func(path string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			names = append(names, path)
		}
		return err
	}))
	assert.Equal(t, []string{"20250101000001_create_orders.up.sql", "20250101000002_create_outbox.up.sql", "20250101000003_index.up.sql"}, names, "in name order, as Migrate applies them")
	b, err := fs.ReadFile(u, "20250101000003_index.up.sql")
	require.NoError(t, err)
	assert.Equal(t, "CREATE INDEX", string(b), "a name in two sets is the first's")
	_, err = u.Open("missing.sql")
	assert.ErrorIs(t, err, fs.ErrNotExist)
}
