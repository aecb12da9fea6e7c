package northbound

import "testing"

func TestACLCoversAndSubstitutes(t *testing.T) {
	cases := []struct {
		rule, filter, user, id string
		want                   bool
	}{
		{"plant/#", "plant/a/b", "", "", true},
		{"plant/#", "plant", "", "", true},
		{"plant/#", "plant/+/temp", "", "", true},
		{"plant/+/temp", "plant/#", "", "", false},
		{"plant/+/temp", "plant/a/temp", "", "", true},
		{"plant/+/temp", "plant/+/temp", "", "", true},
		{"plant/a/temp", "plant/+/temp", "", "", false},
		{"#", "#", "", "", true},
		{"+/#", "#", "", "", false},
		{"#", "$SYS/broker/load", "", "", false},
		{"$SYS/#", "$SYS/broker/load", "", "", true},
		{"apps/%u/#", "apps/hmi/x", "hmi", "c1", true},
		{"apps/%u/#", "apps/admin/x", "hmi", "c1", false},
		{"apps/%u/%c", "apps/hmi/c1", "hmi", "c1", true},
		{"apps/%u/#", "apps/+/x", "+", "c1", false},      // a user name with a wildcard matches nothing
		{"apps/%c/#", "apps/a/b/x", "hmi", "a/b", false}, // nor a client id with a level separator
		{"apps/%u/#", "apps//x", "", "c1", false},        // nor an empty user name
	}
	for _, tc := range cases {
		if got := (acl{tc.rule}).allows(tc.filter, tc.user, tc.id); got != tc.want {
			t.Errorf("rule %q filter %q (user %q, id %q) = %v, want %v", tc.rule, tc.filter, tc.user, tc.id, got, tc.want)
		}
	}
}

// FuzzCoversAgreesWithMatch: for a topic name (no wildcards) the ACL's
// covers is the usual filter match the retained store uses.
func FuzzCoversAgreesWithMatch(f *testing.F) {
	for _, s := range [][2]string{{"a/#", "a/b"}, {"+/b", "a/b"}, {"#", "$SYS/x"}, {"a/+", "a"}, {"a//b", "a//b"}} {
		f.Add(s[0], s[1])
	}
	f.Fuzz(func(t *testing.T, rule, topic string) {
		for _, r := range topic {
			if r == '+' || r == '#' {
				return
			}
		}
		if covers(rule, topic) != matchFilter(rule, topic) {
			t.Fatalf("covers(%q, %q) = %v, matchFilter = %v", rule, topic, covers(rule, topic), matchFilter(rule, topic))
		}
	})
}
