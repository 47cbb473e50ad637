package database

import (
	"errors"
	"io"
	"io/fs"
	"slices"
	"strings"
)

// Union is several sets of migrations as one, for Migrate: a service's own
// and those of a package it uses (the outbox table's, say), kept beside the
// code they belong to. A name present in two of them is the first's.
func Union(sets ...fs.FS) fs.FS { return union(sets) }

// Sub is the directory dir of an embedded tree of migrations
// (//go:embed migrations/*.sql), for Migrate or Union.
func Sub(fsys fs.FS, dir string) fs.FS {
	sub, err := fs.Sub(fsys, dir)
	if err != nil {
		panic(err) // dir is a constant, embedded at compile time
	}
	return sub
}

type union []fs.FS

func (u union) Open(name string) (fs.File, error) {
	if info, err := u.Stat(name); err == nil && info.IsDir() {
		entries, err := u.ReadDir(name)
		if err != nil {
			return nil, err
		}
		return &unionDir{info: info, entries: entries}, nil
	}
	for _, set := range u {
		f, err := set.Open(name)
		if !errors.Is(err, fs.ErrNotExist) {
			return f, err //nolint:wrapcheck // fs errors are *fs.PathError already
		}
	}
	return nil, &fs.PathError{Op: "open", Path: name, Err: fs.ErrNotExist}
}

func (u union) Stat(name string) (fs.FileInfo, error) {
	for _, set := range u {
		info, err := fs.Stat(set, name)
		if !errors.Is(err, fs.ErrNotExist) {
			return info, err //nolint:wrapcheck // as above
		}
	}
	return nil, &fs.PathError{Op: "stat", Path: name, Err: fs.ErrNotExist}
}

// ReadDir lists a directory's entries in all the sets, by name.
func (u union) ReadDir(name string) ([]fs.DirEntry, error) {
	var all []fs.DirEntry
	found := false
	for _, set := range u {
		entries, err := fs.ReadDir(set, name)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, err //nolint:wrapcheck // as above
		}
		found = true
		for _, e := range entries {
			if !slices.ContainsFunc(all, func(a fs.DirEntry) bool { return a.Name() == e.Name() }) {
				all = append(all, e)
			}
		}
	}
	if !found {
		return nil, &fs.PathError{Op: "readdir", Path: name, Err: fs.ErrNotExist}
	}
	slices.SortFunc(all, func(a, b fs.DirEntry) int { return strings.Compare(a.Name(), b.Name()) })
	return all, nil
}

// unionDir is a directory of a union, listing the entries of all its sets.
type unionDir struct {
	info    fs.FileInfo
	entries []fs.DirEntry
}

func (d *unionDir) Stat() (fs.FileInfo, error) { return d.info, nil }
func (d *unionDir) Read([]byte) (int, error) {
	return 0, &fs.PathError{Op: "read", Path: d.info.Name(), Err: errors.New("is a directory")}
}
func (d *unionDir) Close() error { return nil }

// ReadDir returns the next n entries (all that are left when n <= 0).
func (d *unionDir) ReadDir(n int) ([]fs.DirEntry, error) {
	if n <= 0 {
		all := d.entries
		d.entries = nil
		return all, nil
	}
	if len(d.entries) == 0 {
		return nil, io.EOF
	}
	n = min(n, len(d.entries))
	next := d.entries[:n]
	d.entries = d.entries[n:]
	return next, nil
}
