// Package deploy holds the configuration of the containerised local stack
// (compose.yml at the repository root, Prometheus and Grafana under deploy/)
// and the typed form of Kong's declarative configuration, kong/kong.yml.
//
// Neither Docker nor Kong runs where the tests run, so the files are checked
// by decoding them: LoadKongConfig decodes kong.yml strictly, so that a
// misspelt field fails a test instead of a Kong start. The tests of this
// package check the stack's files; those of apps/*/service check that Kong
// routes reach routes the apps serve.
package deploy

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"

	"gopkg.in/yaml.v3"
)

// KongConfig is a Kong DB-less declarative configuration (format 3.0), with
// the entities and fields this repository uses.
type KongConfig struct {
	FormatVersion string        `yaml:"_format_version"`
	Transform     *bool         `yaml:"_transform"`
	Services      []KongService `yaml:"services"`
	// Routes declared at the top level name their service.
	Routes []KongRoute `yaml:"routes"`
	// Plugins declared at the top level apply globally, or to the service or
	// route they name.
	Plugins []KongPlugin `yaml:"plugins"`
	// Consumers are the callers key-auth authenticates.
	Consumers []KongConsumer `yaml:"consumers"`
}

// KongConsumer is a caller of the API: one customer.
type KongConsumer struct {
	Username string `yaml:"username"`
	// CustomID is the customer id Kong passes upstream in
	// X-Consumer-Custom-ID.
	CustomID           string                  `yaml:"custom_id"`
	Tags               []string                `yaml:"tags"`
	KeyauthCredentials []KongKeyauthCredential `yaml:"keyauth_credentials"`
	Plugins            []KongPlugin            `yaml:"plugins"`
}

// KongKeyauthCredential is one API key of a consumer.
type KongKeyauthCredential struct {
	Key  string   `yaml:"key"`
	TTL  *int     `yaml:"ttl"`
	Tags []string `yaml:"tags"`
}

// KongService is an upstream service.
type KongService struct {
	Name           string       `yaml:"name"`
	URL            string       `yaml:"url"`
	Retries        *int         `yaml:"retries"`
	ConnectTimeout *int         `yaml:"connect_timeout"`
	ReadTimeout    *int         `yaml:"read_timeout"`
	WriteTimeout   *int         `yaml:"write_timeout"`
	Enabled        *bool        `yaml:"enabled"`
	Tags           []string     `yaml:"tags"`
	Routes         []KongRoute  `yaml:"routes"`
	Plugins        []KongPlugin `yaml:"plugins"`
}

// KongRoute matches requests to a service.
type KongRoute struct {
	Name string `yaml:"name"`
	// Service names the route's service; only on top-level routes.
	Service   string   `yaml:"service"`
	Paths     []string `yaml:"paths"`
	Methods   []string `yaml:"methods"`
	Hosts     []string `yaml:"hosts"`
	Protocols []string `yaml:"protocols"`
	// StripPath is a pointer so that a test can insist it is set explicitly:
	// Kong's default (true) would cut the prefix the apps route on.
	StripPath         *bool        `yaml:"strip_path"`
	PreserveHost      *bool        `yaml:"preserve_host"`
	PathHandling      string       `yaml:"path_handling"`
	RegexPriority     *int         `yaml:"regex_priority"`
	RequestBuffering  *bool        `yaml:"request_buffering"`
	ResponseBuffering *bool        `yaml:"response_buffering"`
	Tags              []string     `yaml:"tags"`
	Plugins           []KongPlugin `yaml:"plugins"`
}

// KongPlugin is a plugin instance. Its Config is decoded by DecodeConfig
// into the plugin's own type.
type KongPlugin struct {
	Name      string    `yaml:"name"`
	Enabled   *bool     `yaml:"enabled"`
	Protocols []string  `yaml:"protocols"`
	Service   string    `yaml:"service"`
	Route     string    `yaml:"route"`
	Consumer  string    `yaml:"consumer"`
	Tags      []string  `yaml:"tags"`
	Config    yaml.Node `yaml:"config"`
}

// DecodeConfig decodes the plugin's config strictly into dst, such as a
// *RateLimitingConfig.
func (p KongPlugin) DecodeConfig(dst any) error {
	if p.Config.IsZero() {
		return nil
	}
	raw, err := yaml.Marshal(&p.Config)
	if err != nil {
		return fmt.Errorf("plugin %s: encode config: %w", p.Name, err)
	}
	if err := decodeStrict(raw, dst); err != nil {
		return fmt.Errorf("plugin %s: config: %w", p.Name, err)
	}
	return nil
}

// CorrelationIDConfig configures the correlation-id plugin.
type CorrelationIDConfig struct {
	HeaderName     string `yaml:"header_name"`
	Generator      string `yaml:"generator"` // uuid, uuid#counter or tracker
	EchoDownstream *bool  `yaml:"echo_downstream"`
}

// RateLimitingConfig configures the rate-limiting plugin.
type RateLimitingConfig struct {
	Second            *int   `yaml:"second"`
	Minute            *int   `yaml:"minute"`
	Hour              *int   `yaml:"hour"`
	Day               *int   `yaml:"day"`
	Month             *int   `yaml:"month"`
	Year              *int   `yaml:"year"`
	LimitBy           string `yaml:"limit_by"`
	HeaderName        string `yaml:"header_name"`
	Path              string `yaml:"path"`
	Policy            string `yaml:"policy"` // local, cluster or redis
	FaultTolerant     *bool  `yaml:"fault_tolerant"`
	HideClientHeaders *bool  `yaml:"hide_client_headers"`
	ErrorCode         *int   `yaml:"error_code"`
	ErrorMessage      string `yaml:"error_message"`
}

// RequestSizeLimitingConfig configures the request-size-limiting plugin.
type RequestSizeLimitingConfig struct {
	AllowedPayloadSize   int    `yaml:"allowed_payload_size"`
	SizeUnit             string `yaml:"size_unit"` // bytes, kilobytes or megabytes (Kong's default)
	RequireContentLength *bool  `yaml:"require_content_length"`
}

// Bytes is the largest body the plugin lets through. Kong counts a kilobyte
// as 1024 bytes and a megabyte as 1024 kilobytes.
func (c RequestSizeLimitingConfig) Bytes() (int, error) {
	switch c.SizeUnit {
	case "bytes":
		return c.AllowedPayloadSize, nil
	case "kilobytes":
		return c.AllowedPayloadSize << 10, nil
	case "megabytes", "":
		return c.AllowedPayloadSize << 20, nil
	default:
		return 0, fmt.Errorf("unknown size_unit %q", c.SizeUnit)
	}
}

// CORSConfig configures the cors plugin.
type CORSConfig struct {
	Origins           []string `yaml:"origins"`
	Methods           []string `yaml:"methods"`
	Headers           []string `yaml:"headers"`
	ExposedHeaders    []string `yaml:"exposed_headers"`
	Credentials       *bool    `yaml:"credentials"`
	MaxAge            *int     `yaml:"max_age"`
	PreflightContinue *bool    `yaml:"preflight_continue"`
	PrivateNetwork    *bool    `yaml:"private_network"`
}

// KeyAuthConfig configures the key-auth plugin.
type KeyAuthConfig struct {
	KeyNames        []string `yaml:"key_names"`
	KeyInHeader     *bool    `yaml:"key_in_header"`
	KeyInQuery      *bool    `yaml:"key_in_query"` // Kong's default: true
	KeyInBody       *bool    `yaml:"key_in_body"`
	HideCredentials *bool    `yaml:"hide_credentials"`
	// Anonymous names a consumer that unauthenticated requests run as:
	// set, key-auth lets every request through.
	Anonymous      string `yaml:"anonymous"`
	RunOnPreflight *bool  `yaml:"run_on_preflight"`
	Realm          string `yaml:"realm"`
}

// PrometheusConfig configures the prometheus plugin.
type PrometheusConfig struct {
	PerConsumer           *bool `yaml:"per_consumer"`
	StatusCodeMetrics     *bool `yaml:"status_code_metrics"`
	LatencyMetrics        *bool `yaml:"latency_metrics"`
	BandwidthMetrics      *bool `yaml:"bandwidth_metrics"`
	UpstreamHealthMetrics *bool `yaml:"upstream_health_metrics"`
}

// PluginConfigs gives, for each plugin this repository configures, a new
// value of its config type, for DecodeConfig.
var PluginConfigs = map[string]func() any{
	"correlation-id":        func() any { return new(CorrelationIDConfig) },
	"rate-limiting":         func() any { return new(RateLimitingConfig) },
	"request-size-limiting": func() any { return new(RequestSizeLimitingConfig) },
	"cors":                  func() any { return new(CORSConfig) },
	"prometheus":            func() any { return new(PrometheusConfig) },
	"key-auth":              func() any { return new(KeyAuthConfig) },
}

// AuthPlugins are the Kong plugins that authenticate a consumer.
var AuthPlugins = []string{"key-auth", "basic-auth", "hmac-auth", "jwt", "oauth2", "ldap-auth"}

// LoadKongConfig reads and strictly decodes a declarative configuration:
// unknown fields and a second YAML document are errors.
func LoadKongConfig(path string) (*KongConfig, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read kong config: %w", err)
	}
	var cfg KongConfig
	if err := decodeStrict(raw, &cfg); err != nil {
		return nil, fmt.Errorf("decode %s: %w", path, err)
	}
	return &cfg, nil
}

// ServiceRoute is a route with the name of the service it leads to.
type ServiceRoute struct {
	Service string
	KongRoute
}

// AllRoutes returns every route, nested under a service or top-level.
func (c *KongConfig) AllRoutes() []ServiceRoute {
	var out []ServiceRoute
	for _, s := range c.Services {
		for _, r := range s.Routes {
			out = append(out, ServiceRoute{Service: s.Name, KongRoute: r})
		}
	}
	for _, r := range c.Routes {
		out = append(out, ServiceRoute{Service: r.Service, KongRoute: r})
	}
	return out
}

// AllPlugins returns every plugin instance: global, per service, per route,
// per consumer.
func (c *KongConfig) AllPlugins() []KongPlugin {
	out := append([]KongPlugin(nil), c.Plugins...)
	for _, k := range c.Consumers {
		out = append(out, k.Plugins...)
	}
	for _, s := range c.Services {
		out = append(out, s.Plugins...)
		for _, r := range s.Routes {
			out = append(out, r.Plugins...)
		}
	}
	for _, r := range c.Routes {
		out = append(out, r.Plugins...)
	}
	return out
}

// RoutePlugins returns the plugins that run on route r: the global ones,
// its service's, and its own (top-level plugins name their service or route).
// A plugin set to enabled: false, or one that runs for one consumer only, is
// not among them.
func (c *KongConfig) RoutePlugins(r ServiceRoute) []KongPlugin {
	var all []KongPlugin
	for _, p := range c.Plugins {
		if p.Consumer != "" {
			continue
		}
		if (p.Service == "" || p.Service == r.Service) && (p.Route == "" || p.Route == r.Name) {
			all = append(all, p)
		}
	}
	if s, ok := c.Service(r.Service); ok {
		all = append(all, s.Plugins...)
	}
	all = append(all, r.Plugins...)
	var out []KongPlugin
	for _, p := range all {
		if p.Enabled == nil || *p.Enabled {
			out = append(out, p)
		}
	}
	return out
}

// Service returns the service called name.
func (c *KongConfig) Service(name string) (KongService, bool) {
	for _, s := range c.Services {
		if s.Name == name {
			return s, true
		}
	}
	return KongService{}, false
}

func decodeStrict(raw []byte, dst any) error {
	dec := yaml.NewDecoder(bytes.NewReader(raw))
	dec.KnownFields(true)
	if err := dec.Decode(dst); err != nil {
		return err
	}
	var extra any
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		return errors.New("more than one YAML document")
	}
	return nil
}
