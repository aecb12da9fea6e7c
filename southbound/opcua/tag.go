package opcua

import (
	"errors"
	"fmt"
	"math"
	"net/url"
	"strconv"
	"strings"

	"github.com/gopcua/opcua/ua"

	"github.com/edged-gw/edged/configs"
	"github.com/edged-gw/edged/mapping"
)

// Tag is one OPC UA variable: where it is (a NodeId or a browse path),
// how the server should report it (subscription settings), and how its
// value becomes the published one (mapping.Spec, whose keys sit in the same
// TOML table). type is optional: values arrive typed; when set, it is the
// type a write sends (otherwise the node's current type).
type Tag struct {
	mapping.Spec
	// Node is a NodeId: ns=2;s=Line1.Speed, ns=3;i=1002, ns=2;g=GUID,
	// ns=2;b=BASE64 (ns=0 may be left out), or with the namespace by URI,
	// nsu=urn:example:plc;s=Line1.Speed, looked up in the server's
	// namespace array at every connect (indices may change when a server
	// restarts or is reconfigured; URIs do not).
	Node string `toml:"node"`
	// BrowsePath is the alternative to Node: steps from the Objects folder,
	// "2:Line1/2:Speed", each [namespace index:]BrowseName, resolved at
	// every connect.
	BrowsePath string `toml:"browse_path"`
	// SamplingInterval and QueueSize override the device's for this tag.
	SamplingInterval configs.Duration `toml:"sampling_interval"`
	QueueSize        int              `toml:"queue_size"`
	// ServerDeadband makes the server drop changes not larger than this
	// (a DataChangeFilter); ServerDeadbandType is absolute (default) or
	// percent (of the node's EURange).
	ServerDeadband     float64 `toml:"server_deadband"`
	ServerDeadbandType string  `toml:"server_deadband_type"`

	nodeID *ua.NodeID // parsed Node; nil for a browse path or a namespace URI
	path   []*ua.QualifiedName
	// nsURI and nsID are a Node written nsu=URI;ID: the namespace URI and
	// the identifier part (s=…, i=…), made a NodeId at every connect.
	nsURI, nsID string
}

// checkTags validates each tag and the set (unique names). mapCount tags
// at the front came from the map file: their keys are tag[i] of the map
// (configs.Error.InMap), the rest tag[i-mapCount] of the device table.
func checkTags(tags []Tag, mapCount int) []error {
	var errs []error
	seen := map[string]int{}
	for i := range tags {
		t := &tags[i]
		add := func(key, format string, args ...any) {
			errs = append(errs, configs.TagErrorf(i, mapCount, key, format, args...))
		}
		if err := t.check(); err != nil {
			if ce := (*configs.Error)(nil); errors.As(err, &ce) {
				add(ce.Key, "%s", ce.Msg)
			} else {
				add("", "%v", err)
			}
			continue
		}
		if j, dup := seen[t.Name]; dup {
			other := fmt.Sprintf("tag[%d] of this device", j-mapCount)
			if j < mapCount {
				other = fmt.Sprintf("tag[%d] of its map", j)
			}
			add("name", "%q is also the name of %s; tag names must be unique", t.Name, other)
			continue
		}
		seen[t.Name] = i
	}
	return errs
}

// check validates one tag and parses its address.
func (t *Tag) check() error {
	s := &t.Spec
	// What every tag has (name, type, scale, deadband, write policy) is
	// checked once, in mapping; OPC UA values arrive typed, so a type is
	// optional here.
	if err := s.Check(false); err != nil {
		return err
	}
	switch {
	case t.Node == "" && t.BrowsePath == "":
		return configs.Errorf("node", `required: the variable's NodeId, e.g. node = "ns=2;s=Line1.Speed" (or browse_path = "2:Line1/2:Speed"); "edged browse ENDPOINT --toml" lists them`)
	case t.Node != "" && t.BrowsePath != "":
		return configs.Errorf("browse_path", "set either node or browse_path, not both")
	case t.Node != "" && strings.HasPrefix(strings.TrimSpace(t.Node), "nsu="):
		uri, ident, ok := cutNamespaceURI(strings.TrimSpace(t.Node))
		if ok {
			_, err := ua.ParseNodeID("ns=1;" + ident)
			ok = err == nil
		}
		if !ok {
			return configs.Errorf("node", "%q is not a NodeId: write nsu=<namespace URI>;s=<string> (or ;i=<number>, ;g=<GUID>, ;b=<base64>), e.g. \"nsu=urn:example:plc;s=Line1.Speed\"", t.Node)
		}
		t.nsURI, t.nsID = uri, ident
	case t.Node != "":
		id, err := ua.ParseNodeID(strings.TrimSpace(t.Node))
		if err == nil && !nodeIDSyntax(strings.TrimSpace(t.Node)) {
			err = errors.New("no identifier type")
		}
		if err != nil {
			return configs.Errorf("node", "%q is not a NodeId: write ns=<index>;s=<string>, ns=<index>;i=<number>, ns=<index>;g=<GUID> or ns=<index>;b=<base64>, e.g. \"ns=2;s=Line1.Speed\"", t.Node)
		}
		t.nodeID = id
	default:
		path, err := parseBrowsePath(t.BrowsePath)
		if err != nil {
			return configs.Errorf("browse_path", "%q: %v", t.BrowsePath, err)
		}
		t.path = path
	}
	if s.Length != 0 || s.Bit != nil || s.Order != mapping.OrderABCD {
		return configs.Errorf("length", "length, bit and order are Modbus register settings; OPC UA values arrive typed, remove them")
	}
	if t.SamplingInterval < 0 {
		return configs.Errorf("sampling_interval", "must be 0 (the device's) or positive")
	}
	if t.QueueSize < 0 || t.QueueSize > 10000 {
		return configs.Errorf("queue_size", "%d: allowed are 1..10000 (0: the device's)", t.QueueSize)
	}
	if t.ServerDeadband < 0 || math.IsNaN(t.ServerDeadband) || math.IsInf(t.ServerDeadband, 0) {
		return configs.Errorf("server_deadband", "%v: must be 0 (every change) or a positive finite number", t.ServerDeadband)
	}
	switch t.ServerDeadbandType {
	case "", "absolute":
	case "percent":
		if t.ServerDeadband > 100 {
			return configs.Errorf("server_deadband", "%v percent: allowed are 0..100", t.ServerDeadband)
		}
	default:
		return configs.Errorf("server_deadband_type", "%q: allowed are absolute (default) and percent (of the node's EURange)", t.ServerDeadbandType)
	}
	return nil
}

// where names the tag's address for messages.
func (t *Tag) where() string {
	if t.Node != "" {
		return t.Node
	}
	return "browse_path " + t.BrowsePath
}

// parseBrowsePath parses "2:Line1/2:Speed": steps separated by '/', each
// [namespace index:]BrowseName (namespace 0 when left out).
func parseBrowsePath(p string) ([]*ua.QualifiedName, error) {
	p = strings.Trim(strings.TrimSpace(p), "/")
	if p == "" {
		return nil, errors.New(`empty: write the steps from the Objects folder, e.g. "2:Line1/2:Speed"`)
	}
	var out []*ua.QualifiedName
	for _, step := range strings.Split(p, "/") {
		qn := &ua.QualifiedName{Name: step}
		if ns, name, ok := strings.Cut(step, ":"); ok {
			n, err := strconv.ParseUint(ns, 10, 16)
			if err != nil {
				return nil, fmt.Errorf("step %q: write [namespace index:]BrowseName, e.g. \"2:Speed\"", step)
			}
			qn = &ua.QualifiedName{NamespaceIndex: uint16(n), Name: name}
		}
		if qn.Name == "" {
			return nil, fmt.Errorf("step %q has no BrowseName", step)
		}
		out = append(out, qn)
	}
	return out, nil
}

// cutNamespaceURI splits "nsu=URI;s=ID" into the URI and "s=ID" (also i=,
// g=, b=). The URI ends at the first ';' (OPC UA escapes a ';' in a URI
// as %3B). ok is false without a URI or an identifier.
func cutNamespaceURI(s string) (uri, ident string, ok bool) {
	rest, found := strings.CutPrefix(s, "nsu=")
	if !found {
		return "", "", false
	}
	uri, ident, found = strings.Cut(rest, ";")
	if strings.Contains(uri, "%") {
		u, err := url.PathUnescape(uri)
		if err != nil {
			return "", "", false
		}
		uri = u
	}
	return uri, ident, found && uri != "" && nodeIDSyntax(ident)
}

// escapeNamespaceURI writes a URI for nsu=: '%' and ';' escaped.
func escapeNamespaceURI(uri string) string {
	return strings.NewReplacer("%", "%25", ";", "%3B").Replace(uri)
}

// nodeIDSyntax reports whether s is written [ns=N;]{i,s,g,b}=… (gopcua's
// parser also accepts bare names, which are typos more often than not).
func nodeIDSyntax(s string) bool {
	if rest, ok := strings.CutPrefix(s, "ns="); ok {
		_, after, found := strings.Cut(rest, ";")
		if !found {
			return false
		}
		s = after
	}
	return len(s) >= 2 && s[1] == '=' && strings.ContainsRune("isgb", rune(s[0]))
}
