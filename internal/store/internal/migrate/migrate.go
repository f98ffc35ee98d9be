// Package migrate reads a driver's embedded, numbered migrations. Applying
// them is the driver's job (under its own lock), recording each version in
// its schema_migrations table.
package migrate

import (
	"fmt"
	"io/fs"
	"path"
	"sort"
	"strconv"
	"strings"
)

// Migration is one numbered SQL file, "0001_init.sql".
type Migration struct {
	Version int
	Name    string
	SQL     string
}

// Load returns the migrations in dir of fsys, ordered by version. File
// names must be <version>_<name>.sql with distinct versions from 1.
func Load(fsys fs.FS, dir string) ([]Migration, error) {
	entries, err := fs.ReadDir(fsys, dir)
	if err != nil {
		return nil, fmt.Errorf("read migrations: %w", err)
	}
	var ms []Migration
	seen := map[int]string{}
	for _, e := range entries {
		if e.IsDir() || !strings.HasSuffix(e.Name(), ".sql") {
			continue
		}
		num, name, ok := strings.Cut(strings.TrimSuffix(e.Name(), ".sql"), "_")
		v, err := strconv.Atoi(num)
		if !ok || err != nil || v < 1 {
			return nil, fmt.Errorf("migration %s: name must be <version>_<name>.sql", e.Name())
		}
		if prev, dup := seen[v]; dup {
			return nil, fmt.Errorf("migrations %s and %s share version %d", prev, e.Name(), v)
		}
		seen[v] = e.Name()
		b, err := fs.ReadFile(fsys, path.Join(dir, e.Name()))
		if err != nil {
			return nil, err
		}
		ms = append(ms, Migration{Version: v, Name: name, SQL: string(b)})
	}
	sort.Slice(ms, func(i, j int) bool { return ms[i].Version < ms[j].Version })
	if len(ms) == 0 {
		return nil, fmt.Errorf("no migrations in %s", dir)
	}
	return ms, nil
}

// Pending returns the migrations of ms after version current, the schema
// version a database records. A database newer than ms is an error: an
// older program must not run on a schema it does not know.
func Pending(ms []Migration, current int) ([]Migration, error) {
	if len(ms) == 0 {
		return nil, nil
	}
	if last := ms[len(ms)-1].Version; current > last {
		return nil, fmt.Errorf("database schema version %d is newer than this program's %d: upgrade the program", current, last)
	}
	i := sort.Search(len(ms), func(i int) bool { return ms[i].Version > current })
	return ms[i:], nil
}
