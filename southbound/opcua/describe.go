package opcua

import (
	"net/url"

	"github.com/edged-gw/edged/southbound"
)

var _ southbound.Describer = (*Device)(nil)

// Describe implements southbound.Describer: the endpoint (without anything
// secret a URL may carry), the security asked for, and each tag's node.
func (d *Device) Describe() southbound.Description {
	var dd southbound.Description
	kv := func(k, v string) { dd.Settings = append(dd.Settings, southbound.KeyValue{Key: k, Value: v}) }
	kv("endpoint", publicURL(d.Endpoint))
	kv("security", d.SecurityPolicy+" "+d.SecurityMode)
	kv("mode", d.Mode)
	tags := append(append([]Tag(nil), d.mapped.Tags...), d.Tag...)
	for i := range tags {
		t := &tags[i]
		where := t.Node
		if where == "" {
			where = "browse " + t.BrowsePath
		}
		dd.Tags = append(dd.Tags, southbound.TagPlace{Spec: &t.Spec, Where: where})
	}
	return dd
}

// publicURL drops user, password, query and fragment from a URL.
func publicURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "(unparsable URL)"
	}
	u.User, u.RawQuery, u.Fragment = nil, "", ""
	return u.String()
}
