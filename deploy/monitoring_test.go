package deploy_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"gopkg.in/yaml.v3"
)

// grafanaDashboardsDir is where compose.yml mounts deploy/grafana/dashboards
// and where the dashboard provider looks.
const grafanaDashboardsDir = "/var/lib/grafana/dashboards"

// decodeYAML strictly decodes the YAML file name into v.
func decodeYAML(tb testing.TB, name string, v any) {
	tb.Helper()
	raw, err := os.ReadFile(name)
	require.NoError(tb, err)
	dec := yaml.NewDecoder(bytes.NewReader(raw))
	dec.KnownFields(true)
	require.NoError(tb, dec.Decode(v), name)
	require.ErrorIs(tb, dec.Decode(new(any)), io.EOF, "%s: one YAML document", name)
}

type prometheusConfig struct {
	Global struct {
		ScrapeInterval     string `yaml:"scrape_interval"`
		ScrapeTimeout      string `yaml:"scrape_timeout"`
		EvaluationInterval string `yaml:"evaluation_interval"`
	} `yaml:"global"`
	RuleFiles     []string `yaml:"rule_files"`
	ScrapeConfigs []struct {
		JobName       string `yaml:"job_name"`
		MetricsPath   string `yaml:"metrics_path"`
		StaticConfigs []struct {
			Targets []string          `yaml:"targets"`
			Labels  map[string]string `yaml:"labels"`
		} `yaml:"static_configs"`
	} `yaml:"scrape_configs"`
}

func TestPrometheus_scrapes_the_compose_services(t *testing.T) {
	t.Parallel()
	var cfg prometheusConfig
	decodeYAML(t, path("deploy", "prometheus", "prometheus.yml"), &cfg)
	p := stack(t)

	targets := map[string][]string{} // job → host:port
	paths := map[string]string{}
	for _, sc := range cfg.ScrapeConfigs {
		paths[sc.JobName] = sc.MetricsPath
		for _, st := range sc.StaticConfigs {
			for _, target := range st.Targets {
				host, port, err := net.SplitHostPort(target)
				require.NoError(t, err, "job %s: target %q", sc.JobName, target)
				if host != "localhost" {
					assert.Contains(t, p.ServiceNames(), host, "job %s scrapes %s, which is not a compose service", sc.JobName, host)
				}
				_, err = strconv.Atoi(port)
				assert.NoError(t, err)
				targets[sc.JobName] = append(targets[sc.JobName], target)
			}
		}
	}
	for name, port := range apps {
		assert.Equal(t, []string{name + ":" + strconv.Itoa(port)}, targets[name], "job %s", name)
		assert.Contains(t, []string{"", "/metrics"}, paths[name], "job %s", name)
	}

	// The alerting rules load from the directory compose mounts beside the config.
	require.Equal(t, []string{"rules/*.yml"}, cfg.RuleFiles)
	rules, err := filepath.Glob(path("deploy", "prometheus", "rules", "*.yml"))
	require.NoError(t, err)
	assert.NotEmpty(t, rules)
	var mounted bool
	for _, v := range p.Services["prometheus"].Volumes {
		mounted = mounted || v.Target == "/etc/prometheus/rules"
	}
	assert.True(t, mounted, "compose mounts deploy/prometheus/rules at /etc/prometheus/rules")
}

type grafanaDatasources struct {
	APIVersion  int `yaml:"apiVersion"`
	Datasources []struct {
		Name      string         `yaml:"name"`
		UID       string         `yaml:"uid"`
		Type      string         `yaml:"type"`
		Access    string         `yaml:"access"`
		URL       string         `yaml:"url"`
		IsDefault bool           `yaml:"isDefault"`
		Editable  bool           `yaml:"editable"`
		JSONData  map[string]any `yaml:"jsonData"`
	} `yaml:"datasources"`
}

type grafanaDashboards struct {
	APIVersion int `yaml:"apiVersion"`
	Providers  []struct {
		Name                  string `yaml:"name"`
		OrgID                 int    `yaml:"orgId"`
		Folder                string `yaml:"folder"`
		Type                  string `yaml:"type"`
		DisableDeletion       bool   `yaml:"disableDeletion"`
		AllowUIUpdates        bool   `yaml:"allowUiUpdates"`
		UpdateIntervalSeconds int    `yaml:"updateIntervalSeconds"`
		Options               struct {
			Path                      string `yaml:"path"`
			FoldersFromFilesStructure bool   `yaml:"foldersFromFilesStructure"`
		} `yaml:"options"`
	} `yaml:"providers"`
}

func TestGrafana_datasources_point_at_the_compose_services(t *testing.T) {
	t.Parallel()
	var cfg grafanaDatasources
	decodeYAML(t, path("deploy", "grafana", "provisioning", "datasources", "datasources.yml"), &cfg)
	require.Equal(t, 1, cfg.APIVersion)
	p := stack(t)

	byType := map[string]string{}
	defaults := 0
	for _, ds := range cfg.Datasources {
		assert.NotEmpty(t, ds.UID, "%s: dashboards refer to data sources by uid", ds.Name)
		u, err := url.Parse(ds.URL)
		require.NoError(t, err)
		assert.Contains(t, p.ServiceNames(), u.Hostname(), "%s", ds.Name)
		byType[ds.Type] = u.Host
		if ds.IsDefault {
			defaults++
		}
	}
	assert.Equal(t, "prometheus:9090", byType["prometheus"])
	assert.Equal(t, "jaeger:16686", byType["jaeger"])
	assert.Equal(t, 1, defaults, "one default data source")
}

func TestGrafana_dashboards_are_provisioned_from_the_repository(t *testing.T) {
	t.Parallel()
	var cfg grafanaDashboards
	decodeYAML(t, path("deploy", "grafana", "provisioning", "dashboards", "dashboards.yml"), &cfg)
	require.Equal(t, 1, cfg.APIVersion)
	require.Len(t, cfg.Providers, 1)
	assert.Equal(t, "file", cfg.Providers[0].Type)
	assert.Equal(t, grafanaDashboardsDir, cfg.Providers[0].Options.Path)

	// The dashboards use only provisioned data sources.
	var sources grafanaDatasources
	decodeYAML(t, path("deploy", "grafana", "provisioning", "datasources", "datasources.yml"), &sources)
	uids := map[string]bool{}
	for _, ds := range sources.Datasources {
		uids[ds.UID] = true
	}
	files, err := filepath.Glob(path("deploy", "grafana", "dashboards", "*.json"))
	require.NoError(t, err)
	for _, f := range files {
		raw, err := os.ReadFile(f)
		require.NoError(t, err)
		var dashboard map[string]any
		require.NoError(t, json.Unmarshal(raw, &dashboard), f)
		for _, uid := range datasourceUIDs(dashboard) {
			assert.True(t, uids[uid] || strings.HasPrefix(uid, "$") || strings.HasPrefix(uid, "-- "),
				"%s uses data source %q, which is not provisioned", filepath.Base(f), uid)
		}
	}
	_, err = os.Stat(path("deploy", "grafana", "dashboards"))
	assert.False(t, errors.Is(err, os.ErrNotExist), "compose.yml mounts deploy/grafana/dashboards")
}

// datasourceUIDs collects the uid of every "datasource" object in a
// dashboard: panels, targets and template variables.
func datasourceUIDs(v any) []string {
	var out []string
	switch v := v.(type) {
	case map[string]any:
		for k, child := range v {
			if ds, ok := child.(map[string]any); ok && k == "datasource" {
				if uid, ok := ds["uid"].(string); ok {
					out = append(out, uid)
				}
			}
			out = append(out, datasourceUIDs(child)...)
		}
	case []any:
		for _, child := range v {
			out = append(out, datasourceUIDs(child)...)
		}
	}
	return out
}
