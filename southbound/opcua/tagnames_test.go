package opcua

import "testing"

// TestTagNames: browse's variables get unique tag names a config accepts:
// their own while free, then qualified by their parents, then numbered.
func TestTagNames(t *testing.T) {
	var names TagNames
	for _, c := range []struct {
		n    BrowseNode
		want string
	}{
		{BrowseNode{DisplayName: "Speed", Parents: []string{"Line 1"}}, "Speed"},
		{BrowseNode{DisplayName: "Speed", Parents: []string{"Plant", "Line 2"}}, "Line_2.Speed"},
		{BrowseNode{DisplayName: "Speed", Parents: []string{"Plant", "Line 2"}}, "Plant.Line_2.Speed"},
		{BrowseNode{DisplayName: "Speed", Parents: []string{"Plant", "Line 2"}}, "Plant.Line_2.Speed_2"},
		{BrowseNode{BrowseName: "2:Mode/Auto #1"}, "Mode_Auto__1"},
		{BrowseNode{}, "tag"},
		{BrowseNode{}, "tag_2"},
	} {
		if got := names.Name(c.n); got != c.want {
			t.Errorf("Name(%+v) = %q, want %q", c.n, got, c.want)
		}
	}
}
