package configs

import (
	"strings"
	"unicode/utf8"
)

// FormatSparkplug is an [[upstream]] format: edged is a Sparkplug B edge
// node (see Sparkplug).
const FormatSparkplug = "sparkplug"

// Sparkplug are the Sparkplug B keys of an [[upstream]] with format =
// "sparkplug": edged is the edge node EdgeNodeID of group GroupID, each
// device a Sparkplug device.
type Sparkplug struct {
	// GroupID is the Sparkplug group_id: required with format = "sparkplug".
	GroupID string `toml:"group_id"`
	// EdgeNodeID defaults to the gateway id.
	EdgeNodeID string `toml:"edge_node_id"`
	// PrimaryHost, when set, is the host_id of the primary host: edged
	// births only once spBv1.0/STATE/{primary_host} says online, and keeps
	// data in the buffer while it says offline.
	PrimaryHost string `toml:"primary_host"`
}

// sparkplugID is what Sparkplug forbids in a group, node or host id (the
// same rule as mapping/sparkplug.CheckID, which configs does not import).
func sparkplugID(s string) string {
	switch {
	case !utf8.ValidString(s):
		return "is not valid UTF-8"
	case strings.ContainsAny(s, "/+#\x00"):
		return "contains one of / + # or NUL, which Sparkplug does not allow in an id"
	}
	return ""
}

func (l *loader) checkSparkplug(src *source, cfg *Config, base keyPath, u *Upstream) {
	key := func(k string) keyPath { return base.with(k) }
	ok := func(k string) bool { return !l.failed[key(k).String()] }
	switch {
	case !ok("format"):
		return
	case u.Format != FormatSparkplug:
		// json or value (checkUpstreamFormat says what else is wrong)
		for _, k := range []struct{ k, v string }{{"group_id", u.GroupID}, {"edge_node_id", u.EdgeNodeID}, {"primary_host", u.PrimaryHost}} {
			if k.v != "" && ok(k.k) {
				l.at(src, key(k.k), `%s is a Sparkplug B key; it needs format = "sparkplug" on this upstream`, k.k)
			}
		}
		return
	}
	if ok("protocol") && u.Protocol != "5" {
		l.at(src, key("protocol"), `format = "sparkplug" needs protocol = "5" in this version of edged; this upstream has protocol = %q`, u.Protocol)
	}
	if ok("topic_prefix") && u.TopicPrefix != "" {
		l.at(src, key("topic_prefix"), `topic_prefix does not apply with format = "sparkplug": Sparkplug topics are spBv1.0/{group_id}/…; remove it`)
	}
	if ok("group_id") {
		if u.GroupID == "" {
			l.at(src, key("group_id"), `required with format = "sparkplug": the Sparkplug group, e.g. group_id = "plant7"`)
		} else if msg := sparkplugID(u.GroupID); msg != "" {
			l.at(src, key("group_id"), "%q %s", u.GroupID, msg)
		}
	}
	if u.EdgeNodeID == "" {
		u.EdgeNodeID = cfg.Gateway.ID
	}
	if ok("edge_node_id") {
		if msg := sparkplugID(u.EdgeNodeID); msg != "" {
			l.at(src, key("edge_node_id"), "%q %s (it defaults to the gateway id)", u.EdgeNodeID, msg)
		}
	}
	if ok("primary_host") && u.PrimaryHost != "" {
		if msg := sparkplugID(u.PrimaryHost); msg != "" {
			l.at(src, key("primary_host"), "%q %s", u.PrimaryHost, msg)
		}
	}
}
