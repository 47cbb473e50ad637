package database_test

import (
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/orderflow/orderflow/pkg/database"
)

func TestURLFromParts(t *testing.T) {
	t.Parallel()
	// Every character a URL or a libpq key=value string could trip on.
	const password = `p@ss:w/rd?#%20&=+ 'é\"`
	tests := []struct {
		name    string
		env     map[string]string
		wantOK  bool
		wantURL string
		wantErr string
	}{
		{name: "nothing set keeps the default", env: map[string]string{}},
		{
			name: "DATABASE_URL wins",
			env:  map[string]string{"DATABASE_URL": "postgres://x@h/db", "DATABASE_HOST": "db.internal", "DATABASE_USER": "orders_app"},
		},
		{
			name:    "host, user and password",
			env:     map[string]string{"DATABASE_HOST": "db.internal", "DATABASE_USER": "orders_app", "DATABASE_PASSWORD": "s3cret"},
			wantOK:  true,
			wantURL: "postgres://orders_app:s3cret@db.internal:5432/orders?sslmode=require",
		},
		{
			name: "every part set",
			env: map[string]string{
				"DATABASE_HOST": "10.0.0.5", "DATABASE_PORT": "6432", "DATABASE_USER": "u", "DATABASE_NAME": "other",
				"DATABASE_SSLMODE": "verify-full",
			},
			wantOK:  true,
			wantURL: "postgres://u@10.0.0.5:6432/other?sslmode=verify-full",
		},
		{
			name:    "missing user and bad port, reported together",
			env:     map[string]string{"DATABASE_HOST": "db.internal", "DATABASE_PORT": "http"},
			wantErr: "DATABASE_PORT must be a port number, got \"http\"\nDATABASE_USER must be set with DATABASE_HOST",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, ok, err := database.URLFromParts(func(k string) string { return tt.env[k] }, "orders")
			if tt.wantErr != "" {
				require.EqualError(t, err, tt.wantErr)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tt.wantOK, ok)
			assert.Equal(t, tt.wantURL, got)
		})
	}

	t.Run("the password survives escaping", func(t *testing.T) {
		t.Parallel()
		env := map[string]string{"DATABASE_HOST": "db.internal", "DATABASE_USER": "orders_app", "DATABASE_PASSWORD": password}
		got, ok, err := database.URLFromParts(func(k string) string { return env[k] }, "orders")
		require.NoError(t, err)
		require.True(t, ok)
		cfg, err := pgx.ParseConfig(got) // what database.Open parses it with
		require.NoError(t, err)
		assert.Equal(t, password, cfg.Password)
		assert.Equal(t, "orders_app", cfg.User)
		assert.Equal(t, "db.internal", cfg.Host)
		assert.Equal(t, uint16(5432), cfg.Port)
		assert.Equal(t, "orders", cfg.Database)
	})
}
