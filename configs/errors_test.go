package configs

import "testing"

// TestTagErrorf: tags from the map file are keyed by their place in the
// map, the device's own tags by their place in the device table.
func TestTagErrorf(t *testing.T) {
	for _, tt := range []struct {
		i, mapCount int
		key, want   string
		inMap       bool
	}{
		{0, 2, "type", "tag[0].type", true},
		{1, 2, "", "tag[1]", true},
		{2, 2, "address", "tag[0].address", false},
		{5, 0, "name", "tag[5].name", false},
	} {
		e := TagErrorf(tt.i, tt.mapCount, tt.key, "bad %d", 7)
		if e.Key != tt.want || e.InMap != tt.inMap || e.Msg != "bad 7" {
			t.Errorf("TagErrorf(%d, %d, %q) = %+v, want key %q, InMap %v", tt.i, tt.mapCount, tt.key, *e, tt.want, tt.inMap)
		}
	}
}
