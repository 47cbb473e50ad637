package main

import (
	"bytes"
	"context"
	"errors"
	"net"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/orderflow/orderflow/pkg/testkit"
)

// closedAddr is a loopback address nothing listens on.
func closedAddr(t *testing.T) string {
	t.Helper()
	ln, err := (&net.ListenConfig{}).Listen(t.Context(), "tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := ln.Addr().String()
	require.NoError(t, ln.Close())
	return addr
}

func getenv(m map[string]string) func(string) string {
	return func(k string) string { return m[k] }
}

func noEnable(context.Context) error { return errors.New("must not be called") }

func TestCheck_the_local_services_answer(t *testing.T) {
	testkit.Integration(t)
	t.Parallel()
	var out bytes.Buffer
	require.NoError(t, check(t.Context(), getenv(nil), noEnable, &out))
	assert.Regexp(t, `^test: PostgreSQL \d+\.\S+ at postgres://postgres@127.0.0.1:5432/postgres\?sslmode=disable \(TEST_POSTGRES_URL\); `+
		`RabbitMQ \d+\.\d+\.\d+ at amqp://guest:xxxxx@127.0.0.1:5672/ \(TEST_AMQP_URL\); management API at http://guest:xxxxx@127.0.0.1:15672 \(TEST_RABBITMQ_MANAGEMENT_URL\)\n$`, out.String())
}

func TestCheck_says_what_is_missing_and_how_to_fix_it(t *testing.T) {
	testkit.Integration(t)
	t.Parallel()
	tests := []struct {
		name string
		env  map[string]string
		want []string
	}{
		{
			name: "no PostgreSQL",
			env:  map[string]string{"TEST_POSTGRES_URL": "postgres://postgres@" + closedAddr(t) + "/postgres"},
			want: []string{"PostgreSQL does not answer at postgres://postgres@127.0.0.1:", "(TEST_POSTGRES_URL)", "start PostgreSQL 15 or newer there, or point TEST_POSTGRES_URL at one"},
		},
		{
			name: "no RabbitMQ",
			env:  map[string]string{"TEST_AMQP_URL": "amqp://guest:guest@" + closedAddr(t) + "/"},
			want: []string{"RabbitMQ does not answer at amqp://guest:xxxxx@127.0.0.1:", "start RabbitMQ 3.10 or newer there, or point TEST_AMQP_URL at one"},
		},
		{
			name: "wrong RabbitMQ password",
			env:  map[string]string{"TEST_AMQP_URL": "amqp://guest:wrong@127.0.0.1:5672/"},
			want: []string{"refused the user and password", "fix them in TEST_AMQP_URL"},
		},
		{
			name: "no management API elsewhere",
			env:  map[string]string{"TEST_RABBITMQ_MANAGEMENT_URL": "http://guest:guest@" + closedAddr(t)},
			want: []string{"the RabbitMQ management API does not answer at http://guest:xxxxx@127.0.0.1:", "rabbitmq-plugins enable rabbitmq_management", "TEST_RABBITMQ_MANAGEMENT_URL (http://user:password@host:15672)"},
		},
		{
			name: "wrong management password",
			env:  map[string]string{"TEST_RABBITMQ_MANAGEMENT_URL": "http://guest:wrong@127.0.0.1:15672"},
			want: []string{"401 Unauthorized", "check the user and password in TEST_RABBITMQ_MANAGEMENT_URL"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var out bytes.Buffer
			err := check(t.Context(), getenv(tt.env), nil, &out)
			require.Error(t, err)
			for _, w := range tt.want {
				assert.Contains(t, err.Error(), w)
			}
			assert.NotContains(t, err.Error(), "\n", "one line")
			assert.NotContains(t, err.Error(), "wrong", "no password")
			assert.Empty(t, out.String())
		})
	}
}

func TestManagement_enables_the_plugin_when_the_local_api_does_not_answer(t *testing.T) {
	t.Parallel()
	c := checker{
		getenv:  getenv(map[string]string{"TEST_RABBITMQ_MANAGEMENT_URL": "http://guest:guest@" + closedAddr(t)}),
		apiWait: 600 * time.Millisecond,
	}
	calls := 0
	c.enable = func(context.Context) error { calls++; return nil }
	_, err := c.management(t.Context())
	require.Error(t, err)
	assert.Equal(t, 1, calls, "enabled once")
	assert.Contains(t, err.Error(), "plugin enabled just now")

	c.enable = func(context.Context) error { return errors.New("rabbitmq-plugins is not on PATH") }
	_, err = c.management(t.Context())
	require.Error(t, err)
	assert.Contains(t, err.Error(), "enabling its plugin failed: rabbitmq-plugins is not on PATH")
}

func TestManagement_leaves_a_remote_rabbitmq_alone(t *testing.T) {
	t.Parallel()
	c := checker{getenv: getenv(map[string]string{"TEST_RABBITMQ_MANAGEMENT_URL": "http://guest:guest@192.0.2.1:1"}), enable: noEnable}
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	_, err := c.management(ctx)
	require.Error(t, err)
	assert.NotContains(t, err.Error(), "must not be called")
}
