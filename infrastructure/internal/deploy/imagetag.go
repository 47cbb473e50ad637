package deploy

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

// appSources are the files an app image is built from, relative to the
// repository root: what .dockerignore sends for apps/*/Dockerfile.
func appSources(a App) []string {
	return []string{a.Dockerfile, "go.mod", "go.sum", "apps", "pkg"}
}

// kongSources are the files the Kong image is built from.
var kongSources = []string{kongDockerfile, "kong/kong.yml", "kong/render-config.sh"}

// sourceTag is the image tag for a build of paths: a digest of their
// contents, so that the same sources keep their tag (nothing to push, no
// diff) and other sources get a new one, which an immutable repository
// requires. Test files and testdata are left out, as .dockerignore leaves
// them out of the build context.
func sourceTag(paths []string) (string, error) {
	root, err := repositoryRoot()
	if err != nil {
		return "", err
	}
	var files []string
	for _, p := range paths {
		err := filepath.WalkDir(filepath.Join(root, p), func(path string, d fs.DirEntry, err error) error {
			switch {
			case err != nil:
				return err
			case d.IsDir() && d.Name() == "testdata":
				return filepath.SkipDir
			case d.IsDir() || strings.HasSuffix(path, "_test.go"):
				return nil
			}
			files = append(files, path)
			return nil
		})
		if err != nil {
			return "", fmt.Errorf("image sources: %w", err)
		}
	}
	sort.Strings(files)
	h := sha256.New()
	for _, f := range files {
		rel, err := filepath.Rel(root, f)
		if err != nil {
			return "", fmt.Errorf("image sources: %w", err)
		}
		if err := hashFile(h, filepath.ToSlash(rel), f); err != nil {
			return "", err
		}
	}
	return "src-" + hex.EncodeToString(h.Sum(nil))[:16], nil
}

func hashFile(h io.Writer, name, path string) error {
	f, err := os.Open(path) //nolint:gosec // a file of the repository, found by walking it
	if err != nil {
		return fmt.Errorf("image sources: %w", err)
	}
	defer f.Close()
	_, _ = io.WriteString(h, name+"\x00")
	if _, err := io.Copy(h, f); err != nil {
		return fmt.Errorf("image sources: %w", err)
	}
	_, _ = io.WriteString(h, "\x00")
	return nil
}

// repositoryRoot is the nearest directory up from the working directory
// (infrastructure/ under `pulumi up`, a package directory under `go test`)
// that holds kong/kong.yml and infrastructure/Pulumi.yaml.
func repositoryRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", fmt.Errorf("find repository root: %w", err)
	}
	for {
		if isFile(filepath.Join(dir, "kong", "kong.yml")) && isFile(filepath.Join(dir, "infrastructure", "Pulumi.yaml")) {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("find repository root: no directory above holds kong/kong.yml and infrastructure/Pulumi.yaml")
		}
		dir = parent
	}
}

func isFile(path string) bool {
	st, err := os.Stat(path)
	return err == nil && st.Mode().IsRegular()
}
