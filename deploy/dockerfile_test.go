package deploy_test

import (
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/moby/buildkit/frontend/dockerfile/parser"
	"github.com/moby/patternmatcher"
	"github.com/moby/patternmatcher/ignorefile"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	invoices "github.com/orderflow/orderflow/apps/invoices/service"
	orders "github.com/orderflow/orderflow/apps/orders/service"
)

// appBinary is where the app images keep the binary. infrastructure/ runs
// "/app healthcheck" as the ECS container health check (docs/deploy.md).
const appBinary = "/app"

// nonRootUsers are the users a final image may run as: distroless's nonroot
// (uid 65532) and Kong's own user.
var nonRootUsers = []string{"nonroot", "nonroot:nonroot", "65532", "65532:65532", "kong"}

// instruction is one parsed Dockerfile instruction.
type instruction struct {
	cmd   string   // upper case, e.g. COPY
	flags []string // e.g. --from=build
	args  []string
	json  bool // exec (JSON) form
}

// stage is the instructions from one FROM to the next.
type stage struct {
	from, name string
	body       []instruction
}

func parseDockerfile(tb testing.TB, name string) []stage {
	tb.Helper()
	f, err := os.Open(name)
	require.NoError(tb, err)
	tb.Cleanup(func() { _ = f.Close() })
	res, err := parser.Parse(f)
	require.NoError(tb, err)
	for _, w := range res.Warnings {
		tb.Errorf("%s: %s", name, w.Short)
	}
	var stages []stage
	for _, n := range res.AST.Children {
		in := instruction{cmd: strings.ToUpper(n.Value), flags: n.Flags, json: n.Attributes["json"]}
		for a := n.Next; a != nil; a = a.Next {
			in.args = append(in.args, a.Value)
		}
		if in.cmd == "FROM" {
			s := stage{from: in.args[0]}
			if len(in.args) == 3 && strings.EqualFold(in.args[1], "AS") {
				s.name = in.args[2]
			}
			stages = append(stages, s)
			continue
		}
		if len(stages) == 0 {
			continue // global ARGs
		}
		stages[len(stages)-1].body = append(stages[len(stages)-1].body, in)
	}
	require.NotEmpty(tb, stages, "%s has no FROM", name)
	return stages
}

// find returns the instructions of s named cmd, and their indexes.
func (s stage) find(cmd string) ([]instruction, []int) {
	var out []instruction
	var idx []int
	for i, in := range s.body {
		if in.cmd == cmd {
			out = append(out, in)
			idx = append(idx, i)
		}
	}
	return out, idx
}

// env returns the value of the ENV key set in s.
func (s stage) env(key string) (string, bool) {
	envs, _ := s.find("ENV")
	for _, e := range envs {
		for i := 0; i+1 < len(e.args); i += 3 { // key, value, "="
			if e.args[i] == key {
				return e.args[i+1], true
			}
		}
	}
	return "", false
}

// assertEndsAsNonRoot checks that the final stage switches to a non-root
// user and does no file system work after that.
func assertEndsAsNonRoot(tb testing.TB, final stage) {
	tb.Helper()
	users, idx := final.find("USER")
	require.NotEmpty(tb, users, "the final stage sets no USER: it would run as root")
	last := users[len(users)-1]
	assert.Contains(tb, nonRootUsers, strings.Join(last.args, " "))
	for _, in := range final.body[idx[len(idx)-1]+1:] {
		assert.Contains(tb, []string{"ENTRYPOINT", "CMD", "EXPOSE", "LABEL", "HEALTHCHECK", "STOPSIGNAL"}, in.cmd,
			"%s after the last USER", in.cmd)
	}
}

// assertExecHealthcheck checks a HEALTHCHECK in exec form, which needs no
// shell in the image, and returns its command.
func assertExecHealthcheck(tb testing.TB, final stage) []string {
	tb.Helper()
	hcs, _ := final.find("HEALTHCHECK")
	require.Len(tb, hcs, 1)
	hc := hcs[0]
	require.True(tb, hc.json, "HEALTHCHECK CMD [...] (exec form), not a shell command")
	require.NotEmpty(tb, hc.args)
	require.Equal(tb, "CMD", hc.args[0])
	return hc.args[1:]
}

func TestDockerfiles_of_the_apps(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		port int
	}{
		{name: orders.Name, port: orders.DefaultPort},
		{name: invoices.Name, port: invoices.DefaultPort},
	}
	goBuild := regexp.MustCompile(`(^|\s)go build\s`)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			stages := parseDockerfile(t, path("apps", tt.name, "Dockerfile"))
			require.GreaterOrEqual(t, len(stages), 2, "multi-stage: build, then a minimal image")
			build, final := stages[0], stages[len(stages)-1]
			require.NotEmpty(t, build.name)
			// Debian 12's distroless images are out of support; 13 with its non-root user.
			assert.Equal(t, "gcr.io/distroless/static-debian13:nonroot", final.from, "final image")

			// go.mod and go.sum, then the module download, then the sources:
			// the download layer survives source changes.
			copyMods, download, copySrc, compile := -1, -1, -1, -1
			var buildCmd string
			for i, in := range build.body {
				line := strings.Join(in.args, " ")
				switch {
				case in.cmd == "COPY" && slices.Contains(in.args, "go.mod") && slices.Contains(in.args, "go.sum"):
					copyMods = i
				case in.cmd == "RUN" && strings.Contains(line, "go mod download"):
					download = i
				case in.cmd == "COPY" && copySrc < 0 && (slices.Contains(in.args, "apps/") || slices.Contains(in.args, ".")):
					copySrc = i
				case in.cmd == "RUN" && goBuild.MatchString(line):
					compile, buildCmd = i, line
				}
			}
			require.True(t, copyMods >= 0 && download > copyMods && copySrc > download && compile > copySrc,
				"COPY go.mod go.sum, RUN go mod download, COPY sources, RUN go build: at %d, %d, %d, %d", copyMods, download, copySrc, compile)

			out := "/out/" + tt.name
			for _, want := range []string{"CGO_ENABLED=0", "-trimpath", `-ldflags "-s -w"`, "-o " + out, "./apps/" + tt.name} {
				assert.Contains(t, buildCmd, want)
			}
			assert.True(t, strings.HasSuffix(buildCmd, " ./apps/"+tt.name), "builds the %s main package: %s", tt.name, buildCmd)

			copies, _ := final.find("COPY")
			var binary []string
			for _, c := range copies {
				if slices.Contains(c.flags, "--from="+build.name) {
					binary = c.args
				}
			}
			assert.Equal(t, []string{out, appBinary}, binary, "the final image copies the binary from the build stage")

			entry, _ := final.find("ENTRYPOINT")
			require.Len(t, entry, 1)
			assert.True(t, entry[0].json, "ENTRYPOINT in exec form")
			assert.Equal(t, []string{appBinary}, entry[0].args)
			assert.Equal(t, []string{appBinary, "healthcheck"}, assertExecHealthcheck(t, final))
			assertEndsAsNonRoot(t, final)

			for _, key := range []string{"GODEBUG", "GOGC"} {
				_, ok := final.env(key)
				assert.False(t, ok, "ENV %s: the Go runtime's defaults", key)
			}

			port, ok := final.env("PORT")
			assert.True(t, ok, "ENV PORT")
			assert.Equal(t, strconv.Itoa(tt.port), port)
			expose, _ := final.find("EXPOSE")
			require.Len(t, expose, 1)
			assert.Equal(t, []string{strconv.Itoa(tt.port)}, expose[0].args)
		})
	}
}

func TestDockerfile_of_kong(t *testing.T) {
	t.Parallel()
	stages := parseDockerfile(t, path("kong", "Dockerfile"))
	final := stages[len(stages)-1]
	// An exact release, so that compose and ECS run the same build.
	assert.Equal(t, "kong:3.9.2", final.from)

	copies, _ := final.find("COPY")
	require.Len(t, copies, 2)
	require.Equal(t, "kong/kong.yml", copies[0].args[0], "the image carries kong/kong.yml")
	template, _ := final.env("ORDERFLOW_KONG_TEMPLATE")
	assert.Equal(t, copies[0].args[1], template, "the entrypoint renders the file the image carries")
	declarative, _ := final.env("KONG_DECLARATIVE_CONFIG")
	assert.NotEqual(t, template, declarative, "Kong loads the rendered file, with the keys, not the template")
	assert.True(t, strings.HasPrefix(declarative, "/tmp/"), "the kong user can write %s", declarative)

	// The entrypoint renders, then runs Kong's own with Kong's command.
	require.Equal(t, "kong/render-config.sh", copies[1].args[0])
	assert.Contains(t, copies[1].flags, "--chmod=0755")
	entrypoint, _ := final.find("ENTRYPOINT")
	require.Len(t, entrypoint, 1)
	assert.True(t, entrypoint[0].json, "exec form: the script is PID 1 and execs Kong")
	assert.Equal(t, []string{copies[1].args[1]}, entrypoint[0].args)
	cmd, _ := final.find("CMD")
	require.Len(t, cmd, 1, "a new ENTRYPOINT resets the base image's CMD")
	assert.Equal(t, []string{"kong", "docker-start"}, cmd[0].args)
	script, err := os.ReadFile(path("kong", "render-config.sh"))
	require.NoError(t, err)
	assert.Contains(t, string(script), "exec /docker-entrypoint.sh \"$@\"", "Kong's entrypoint of kong:3.9.2")
	db, _ := final.env("KONG_DATABASE")
	assert.Equal(t, "off", db, "DB-less")
	status, _ := final.env("KONG_STATUS_LISTEN")
	assert.Equal(t, "0.0.0.0:8100", status, "Prometheus scrapes kong:8100, the ALB checks /status/ready there")

	assert.Equal(t, []string{"kong", "health"}, assertExecHealthcheck(t, final))
	assertEndsAsNonRoot(t, final)
}

// TestDockerignore_keeps_what_the_images_need reads .dockerignore as
// docker does: the build context must hold every file the images are built
// from, and none of the local secrets.
func TestDockerignore_keeps_what_the_images_need(t *testing.T) {
	t.Parallel()
	f, err := os.Open(path(".dockerignore"))
	require.NoError(t, err)
	t.Cleanup(func() { _ = f.Close() })
	patterns, err := ignorefile.ReadAll(f)
	require.NoError(t, err)
	pm, err := patternmatcher.New(patterns)
	require.NoError(t, err)
	excluded := func(rel string) bool {
		ex, err := pm.MatchesOrParentMatches(filepath.ToSlash(rel))
		require.NoError(t, err)
		return ex
	}

	needed := []string{"go.mod", "go.sum", "kong/kong.yml", "kong/render-config.sh"}
	for _, dir := range []string{"apps", "pkg"} {
		require.NoError(t, filepath.WalkDir(path(dir), func(p string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() || strings.HasSuffix(p, "_test.go") || strings.Contains(p, string(filepath.Separator)+"testdata"+string(filepath.Separator)) {
				return err
			}
			rel, err := filepath.Rel(root, p)
			if err == nil {
				needed = append(needed, rel)
			}
			return err
		}))
	}
	require.Greater(t, len(needed), 10)
	for _, rel := range needed {
		assert.False(t, excluded(rel), "%s is needed by the image builds but excluded", rel)
	}
	for _, rel := range []string{".env", ".git/config", "bin/orders", "infrastructure/main.go", "apps/orders/internal/httpapi/orders_test.go"} {
		assert.True(t, excluded(rel), "%s must stay out of the build context", rel)
	}
}
