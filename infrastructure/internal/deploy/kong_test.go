package deploy

import (
	"errors"
	"io/fs"
	"net/url"
	"os"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"gopkg.in/yaml.v3"
)

// kongConfigPath is kong/kong.yml, seen from this package's directory.
const kongConfigPath = "../../../kong/kong.yml"

// TestKongUpstreamsMatchCloudMapNames checks that every upstream host in kong.yml is the
// short name of an app (resolved as <name>.<namespace> through the VPC's DNS search
// domain) on that app's port, or already a fully qualified name in the namespace.
func TestKongUpstreamsMatchCloudMapNames(t *testing.T) {
	t.Parallel()
	raw, err := os.ReadFile(kongConfigPath)
	if errors.Is(err, fs.ErrNotExist) {
		t.Skip("kong/kong.yml not present")
	}
	require.NoError(t, err)

	var doc struct {
		Services []struct {
			Name string `yaml:"name"`
			URL  string `yaml:"url"`
			Host string `yaml:"host"`
			Port int    `yaml:"port"`
		} `yaml:"services"`
	}
	require.NoError(t, yaml.Unmarshal(raw, &doc))
	require.NotEmpty(t, doc.Services)

	ports := map[string]int{}
	for _, a := range Apps {
		ports[a.Name] = a.Port
	}
	for _, s := range doc.Services {
		host, port := s.Host, s.Port
		if s.URL != "" {
			u, err := url.Parse(s.URL)
			require.NoError(t, err, s.Name)
			host = u.Hostname()
			port, _ = strconv.Atoi(u.Port())
		}
		short := strings.TrimSuffix(host, ".orderflow.local")
		want, ok := ports[short]
		if assert.True(t, ok, "service %s: upstream host %q is not an app's Cloud Map name", s.Name, host) && port != 0 {
			assert.Equal(t, want, port, "service %s: port", s.Name)
		}
	}
}

func TestKongKeyVariables(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		doc     string
		want    []string
		wantErr string
	}{
		{
			name: "references, read as Kong's env vault reads them",
			doc: `consumers:
  - username: b
    keyauth_credentials: [{key: "{vault://env/ORDERFLOW_APIKEY_B}"}]
  - username: a
    keyauth_credentials: [{key: "{vault://env/orderflow-apikey-a}"}]`,
			want: []string{"ORDERFLOW_APIKEY_A", "ORDERFLOW_APIKEY_B"},
		},
		{
			name:    "a literal key",
			doc:     "consumers:\n  - username: a\n    keyauth_credentials: [{key: s3cr3t-literal-key-of-some-length}]",
			wantErr: "consumer a: its key is not a {vault://env/NAME} reference",
		},
		{
			name:    "another vault",
			doc:     `consumers: [{username: a, keyauth_credentials: [{key: "{vault://aws/orderflow/a}"}]}]`,
			wantErr: "consumer a",
		},
		{
			name:    "one variable for two keys",
			doc:     `consumers: [{username: a, keyauth_credentials: [{key: "{vault://env/K}"}, {key: "{vault://env/k}"}]}]`,
			wantErr: "two credentials read one variable",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := kongKeyVariables([]byte(tt.doc))
			if tt.wantErr != "" {
				require.ErrorContains(t, err, tt.wantErr)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tt.want, got)
		})
	}

	vars, err := KongKeyVariables()
	require.NoError(t, err, "kong/kong.yml")
	assert.NotEmpty(t, vars)
}
