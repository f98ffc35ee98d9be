package migrate

import (
	"strings"
	"testing"
)

func TestPending(t *testing.T) {
	t.Parallel()
	ms := []Migration{{Version: 1, Name: "init"}, {Version: 2, Name: "targets"}, {Version: 3, Name: "index"}}
	for _, tc := range []struct {
		current int
		want    []int
		err     string
	}{
		{0, []int{1, 2, 3}, ""},
		{1, []int{2, 3}, ""},
		{3, nil, ""},
		{4, nil, "newer than this program's 3"},
	} {
		got, err := Pending(ms, tc.current)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("Pending(%d) error %v, want %q", tc.current, err, tc.err)
			}
			continue
		}
		var versions []int
		for _, m := range got {
			versions = append(versions, m.Version)
		}
		if err != nil || len(versions) != len(tc.want) || (len(versions) > 0 && versions[0] != tc.want[0]) {
			t.Errorf("Pending(%d) = %v, %v; want %v", tc.current, versions, err, tc.want)
		}
	}
}
