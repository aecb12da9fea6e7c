package northbound

import "strings"

// An ACL is a list of topic filters, as in mosquitto's ACL files: '+'
// matches one level, '#' the rest, %u is replaced by the client's user
// name and %c by its client id before matching. A rule whose placeholder
// would be replaced by a value containing '/', '+' or '#' matches nothing,
// so a client cannot widen its own rights by its choice of name or id.
type acl []string

// allows reports whether the rules let a client with user name user and
// client id id use filter: for a publish, filter is the topic; for a
// subscription, the filter subscribed to, which must lie within one rule
// (a rule "plant/#" allows subscribing to "plant/+/temp", a rule
// "plant/+/temp" does not allow "plant/#"). At delivery a topic is checked
// again, which is the same check.
func (a acl) allows(filter, user, id string) bool {
	for _, rule := range a {
		r, ok := substitute(rule, user, id)
		if ok && covers(r, filter) {
			return true
		}
	}
	return false
}

func substitute(rule, user, id string) (string, bool) {
	if !strings.Contains(rule, "%") {
		return rule, true
	}
	for _, v := range []struct{ ph, val string }{{"%u", user}, {"%c", id}} {
		if !strings.Contains(rule, v.ph) {
			continue
		}
		if v.val == "" || strings.ContainsAny(v.val, "/+#") {
			return "", false
		}
		rule = strings.ReplaceAll(rule, v.ph, v.val)
	}
	return rule, true
}

// covers reports whether every topic that filter matches is also matched
// by rule. For a topic name (no wildcards) it is the usual match. Wildcards
// at the first level of a rule do not reach topics starting with '$'.
func covers(rule, filter string) bool {
	if strings.HasPrefix(filter, "$") && (strings.HasPrefix(rule, "+") || strings.HasPrefix(rule, "#")) {
		return false
	}
	for {
		r, rrest, rmore := strings.Cut(rule, "/")
		if r == "#" {
			return true
		}
		f, frest, fmore := strings.Cut(filter, "/")
		switch {
		case f == "#":
			return false // only a '#' rule covers a '#' filter
		case r == "+":
		case f == "+" || r != f:
			return false
		}
		if !rmore && !fmore {
			return true
		}
		if !fmore {
			return rmore && rrest == "#" // "a/#" covers "a"
		}
		if !rmore {
			return false
		}
		rule, filter = rrest, frest
	}
}
