package opcua

import (
	"context"
	"fmt"
	"log/slog"
	"strings"

	"github.com/gopcua/opcua/id"
	"github.com/gopcua/opcua/ua"
)

// BrowseOptions say where and how to browse; the security settings mean
// what the device keys of the same name mean.
type BrowseOptions struct {
	Endpoint, SecurityPolicy, SecurityMode string
	Auth, Username, Password               string
	TrustedThumbprints                     []string
	DataDir                                string // PKI location, as gateway.data_dir
	Node                                   string // start node; default the Objects folder (i=85)
	Depth                                  int    // levels below Node; 0 means 1
	Logger                                 *slog.Logger
}

// BrowseNode is one node found by Browse.
type BrowseNode struct {
	Depth  int
	NodeID string
	// ConfigNodeID is the id to write in a config: NodeID for namespace
	// 0, nsu=URI;… for the others (indices may change, URIs do not).
	ConfigNodeID string
	BrowseName   string // ns:Name
	DisplayName  string
	Class        ua.NodeClass
	DataType     string // variables only
	Access       string // variables only: "read", "read/write", "write", "none"
	// Parents are the display names (else browse names) of the nodes
	// between the start node and this one, outermost first.
	Parents []string
}

// Browse connects like a device would (same trust list and guidance) and
// calls visit for each node under opts.Node, depth first, up to opts.Depth
// levels, following hierarchical references.
func Browse(ctx context.Context, opts BrowseOptions, visit func(BrowseNode)) error {
	d := New()
	d.Name, d.Endpoint = "browse", opts.Endpoint
	if opts.SecurityPolicy != "" {
		d.SecurityPolicy = opts.SecurityPolicy
	}
	d.SecurityMode = opts.SecurityMode
	if opts.Auth != "" {
		d.Auth = opts.Auth
	}
	d.Username, d.Password, d.TrustedThumbprints = opts.Username, opts.Password, opts.TrustedThumbprints
	d.Logger = opts.Logger
	start := opts.Node
	if start == "" {
		start = "i=85"
	}
	d.Tag = []Tag{{Node: start}}
	d.Tag[0].Name = "browse"
	if err := d.Init(); err != nil {
		return err
	}
	d.SetDataDir(opts.DataDir)
	cn, err := d.connect(ctx)
	if err != nil {
		return err
	}
	defer cn.close()
	if err := cn.loadNamespaces(ctx); err != nil {
		return err
	}
	root, err := cn.nodeFor(&d.tags[0])
	if err != nil {
		return err
	}
	depth := max(opts.Depth, 1)
	seen := map[string]bool{}
	var walk func(n *ua.NodeID, level int, parents []string) error
	walk = func(n *ua.NodeID, level int, parents []string) error {
		refs, err := cn.c.Node(n).References(ctx, id.HierarchicalReferences, ua.BrowseDirectionForward, ua.NodeClassAll, true)
		if err != nil {
			return fmt.Errorf("browse %s: %w", n, err)
		}
		for _, r := range refs {
			if r.NodeID == nil || r.NodeID.NodeID == nil || seen[r.NodeID.NodeID.String()] {
				continue
			}
			child := r.NodeID.NodeID
			seen[child.String()] = true
			bn := BrowseNode{Depth: level, NodeID: child.String(), ConfigNodeID: byURI(child, cn.namespaces), Class: r.NodeClass, Parents: parents}
			if r.BrowseName != nil {
				bn.BrowseName = fmt.Sprintf("%d:%s", r.BrowseName.NamespaceIndex, r.BrowseName.Name)
			}
			if r.DisplayName != nil {
				bn.DisplayName = r.DisplayName.Text
			}
			if r.NodeClass == ua.NodeClassVariable {
				bn.DataType, bn.Access = cn.describe(ctx, child)
			}
			visit(bn)
			if level < depth {
				if err := walk(child, level+1, append(parents[:len(parents):len(parents)], bn.label())); err != nil {
					return err
				}
			}
		}
		return nil
	}
	return walk(root, 1, nil)
}

// label is the node's display name, else its browse name without the
// namespace index.
func (n BrowseNode) label() string {
	if n.DisplayName != "" {
		return n.DisplayName
	}
	_, name, _ := strings.Cut(n.BrowseName, ":")
	return name
}

// tagName makes a tag name of s: the characters an MQTT topic level may not
// hold (and spaces and quotes) become '_'.
func tagName(s string) string {
	return strings.Map(func(r rune) rune {
		if r == '/' || r == '+' || r == '#' || r == ' ' || r == '"' || r < 0x20 {
			return '_'
		}
		return r
	}, s)
}

// TagNames gives the variables of one browse unique tag names, as a
// device's tags need: a variable's own name when it is free, else
// qualified by its parents ("ServerStatus.BuildInfo.ProductName"), else
// numbered ("Speed_2").
type TagNames struct{ used map[string]bool }

// Name returns n's tag name and takes it.
func (t *TagNames) Name(n BrowseNode) string {
	if t.used == nil {
		t.used = map[string]bool{}
	}
	name := tagName(n.label())
	if name == "" {
		name = "tag"
	}
	for i := len(n.Parents) - 1; t.used[name] && i >= 0; i-- {
		name = tagName(n.Parents[i]) + "." + name
	}
	if t.used[name] {
		base := name
		for k := 2; t.used[name]; k++ {
			name = fmt.Sprintf("%s_%d", base, k)
		}
	}
	t.used[name] = true
	return name
}

// byURI writes n with its namespace by URI (nsu=URI;s=…) when it is not
// namespace 0 and the server's namespace array names it; else as is.
func byURI(n *ua.NodeID, namespaces []string) string {
	s := n.String()
	ns := int(n.Namespace())
	if ns == 0 || ns >= len(namespaces) || namespaces[ns] == "" {
		return s
	}
	_, ident, ok := strings.Cut(s, ";")
	if !ok {
		return s
	}
	return "nsu=" + escapeNamespaceURI(namespaces[ns]) + ";" + ident
}

// dataTypeNames names the standard data types a variable is likely to
// have: the built-in types and the common subtypes of ns=0. Others show as
// their node id. Not id.Name: its tables of every ns=0 node's name cost a
// megabyte of heap from start-up on, for this one listing.
var dataTypeNames = map[uint32]string{
	id.Boolean: "Boolean", id.SByte: "SByte", id.Byte: "Byte", id.Int16: "Int16", id.UInt16: "UInt16",
	id.Int32: "Int32", id.UInt32: "UInt32", id.Int64: "Int64", id.UInt64: "UInt64", id.Float: "Float",
	id.Double: "Double", id.String: "String", id.DateTime: "DateTime", id.GUID: "GUID",
	id.ByteString: "ByteString", id.XMLElement: "XMLElement", id.NodeID: "NodeID",
	id.ExpandedNodeID: "ExpandedNodeID", id.StatusCode: "StatusCode", id.QualifiedName: "QualifiedName",
	id.LocalizedText: "LocalizedText", id.Structure: "Structure", id.DataValue: "DataValue",
	id.BaseDataType: "BaseDataType", id.DiagnosticInfo: "DiagnosticInfo", id.Number: "Number",
	id.Integer: "Integer", id.UInteger: "UInteger", id.Enumeration: "Enumeration", id.Decimal: "Decimal",
	id.Duration: "Duration", id.UtcTime: "UtcTime", id.LocaleID: "LocaleID", id.Image: "Image",
	id.ImageBMP: "ImageBMP", id.ImageGIF: "ImageGIF", id.ImageJPG: "ImageJPG", id.ImagePNG: "ImagePNG",
	id.IntegerID: "IntegerID", id.Counter: "Counter", id.NumericRange: "NumericRange",
	id.DateString: "DateString", id.DecimalString: "DecimalString", id.DurationString: "DurationString",
	id.NormalizedString: "NormalizedString", id.TimeString: "TimeString", id.URIString: "URIString",
	id.SemanticVersionString: "SemanticVersionString", id.Index: "Index",
	id.BitFieldMaskDataType: "BitFieldMaskDataType",
}

// describe reads a variable's data type and access level.
func (cn *conn) describe(ctx context.Context, n *ua.NodeID) (dataType, access string) {
	res, err := cn.c.Read(ctx, &ua.ReadRequest{NodesToRead: []*ua.ReadValueID{
		{NodeID: n, AttributeID: ua.AttributeIDDataType},
		{NodeID: n, AttributeID: ua.AttributeIDAccessLevel},
		{NodeID: n, AttributeID: ua.AttributeIDValueRank},
	}})
	if err != nil || len(res.Results) != 3 {
		return "?", "?"
	}
	dataType, access = "?", "?"
	if v := res.Results[0].Value; v != nil {
		if t, ok := v.Value().(*ua.NodeID); ok {
			dataType = t.String()
			if t.Namespace() == 0 {
				if name, ok := dataTypeNames[t.IntID()]; ok {
					dataType = name
				}
			}
		}
	}
	if v := res.Results[2].Value; v != nil {
		if r, ok := v.Value().(int32); ok && r >= 1 {
			dataType += "[]"
		}
	}
	if v := res.Results[1].Value; v != nil {
		if b, ok := v.Value().(uint8); ok {
			var parts []string
			if b&byte(ua.AccessLevelTypeCurrentRead) != 0 {
				parts = append(parts, "read")
			}
			if b&byte(ua.AccessLevelTypeCurrentWrite) != 0 {
				parts = append(parts, "write")
			}
			access = strings.Join(parts, "/")
			if access == "" {
				access = "none"
			}
		}
	}
	return dataType, access
}

// TOMLTag renders a variable as a ready-to-edit [[device.tag]] table
// named by its own name (see TOMLTagNamed).
func (n BrowseNode) TOMLTag() string {
	return n.TOMLTagNamed(tagName(n.label()))
}

// TOMLTagNamed renders a variable as a ready-to-edit [[device.tag]] table
// with the tag name given (see TagNames).
func (n BrowseNode) TOMLTagNamed(name string) string {
	var b strings.Builder
	node := n.ConfigNodeID
	if node == "" {
		node = n.NodeID
	}
	fmt.Fprintf(&b, "[[device.tag]]\nname = %q\nnode = %q\n", name, node)
	fmt.Fprintf(&b, "# data type %s, access %s\n", n.DataType, n.Access)
	if strings.Contains(n.Access, "write") {
		b.WriteString("# writable = true\n")
	}
	return b.String()
}
