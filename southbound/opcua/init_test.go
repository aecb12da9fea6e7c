package opcua

import (
	"errors"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/BurntSushi/toml"
	"github.com/gopcua/opcua/ua"

	"github.com/edged-gw/edged/configs"
	"github.com/edged-gw/edged/mapping"
)

// Init reports each problem at its key (relative to the device table) and
// says what is allowed.
func TestInitErrors(t *testing.T) {
	base := `name = "plc"
driver = "opcua"
endpoint = "opc.tcp://10.0.0.1:4840"
`
	okTag := "\n[[tag]]\nname = \"a\"\nnode = \"ns=2;s=A\"\n"
	tests := []struct {
		name, toml, key, want string
	}{
		{"no endpoint", `name = "plc"` + okTag, "endpoint", "required"},
		{"bad endpoint", `endpoint = "http://x"` + okTag, "endpoint", "opc.tcp://host:port"},
		{"bad policy", base + `security_policy = "Basic512"` + okTag, "security_policy", "Basic256Sha256 (default)"},
		{"bad mode", base + `security_mode = "Encrypt"` + okTag, "security_mode", "SignAndEncrypt"},
		{"mode none with secure policy", base + `security_mode = "None"` + okTag, "security_mode", "policy None needs mode None"},
		{"policy none with sign", base + `security_policy = "None"` + "\n" + `security_mode = "Sign"` + okTag, "security_mode", "does not go with"},
		{"bad auth", base + `auth = "kerberos"` + okTag, "auth", "anonymous (default), username, certificate"},
		{"username without password", base + `auth = "username"` + "\n" + `username = "u"` + okTag, "password", "${ENV_VAR}"},
		{"password and file", base + "auth = \"username\"\nusername = \"u\"\npassword = \"p\"\npassword_file = \"/f\"" + okTag, "password_file", "not both"},
		{"anonymous with password", base + `password = "p"` + okTag, "auth", `auth = "username"`},
		{"certificate over None", base + "security_policy = \"None\"\nauth = \"certificate\"" + okTag, "auth", "secure channel"},
		{"half user cert", base + "auth = \"certificate\"\nuser_certificate = \"/c.der\"" + okTag, "user_certificate", "both"},
		{"bad thumbprint", base + `trusted_thumbprints = ["abc"]` + okTag, "trusted_thumbprints[0]", "SHA-1 (40 hex digits)"},
		{"bad mode value", base + `mode = "push"` + okTag, "mode", "subscribe (default"},
		{"short interval", base + `publishing_interval = "1ms"` + okTag, "publishing_interval", "at least"},
		{"queue size", base + `queue_size = 0` + "\n" + `queue_size_unused = 1`, "", ""}, // placeholder, skipped
		{"publish requests zero", base + `publish_requests = -1` + okTag, "publish_requests", "allowed are 1..64"},
		{"publish requests too many", base + `publish_requests = 65` + okTag, "publish_requests", "allowed are 1..64"},
		{"no tags", base, "", "no tags"},
		{"tag without node", base + "[[tag]]\nname = \"a\"\n", "tag[0].node", "ns=2;s=Line1.Speed"},
		{"tag bad node", base + "[[tag]]\nname = \"a\"\nnode = \"Line1.Speed\"\n", "tag[0].node", "is not a NodeId"},
		{"tag nsu without uri", base + "[[tag]]\nname = \"a\"\nnode = \"nsu=;s=Speed\"\n", "tag[0].node", "nsu=<namespace URI>;s=<string>"},
		{"tag nsu without id", base + "[[tag]]\nname = \"a\"\nnode = \"nsu=urn:plc\"\n", "tag[0].node", "nsu=<namespace URI>;s=<string>"},
		{"tag nsu bad id", base + "[[tag]]\nname = \"a\"\nnode = \"nsu=urn:plc;i=notanumber\"\n", "tag[0].node", "e.g. \"nsu=urn:example:plc;s=Line1.Speed\""},
		{"tag node and path", base + "[[tag]]\nname = \"a\"\nnode = \"i=5\"\nbrowse_path = \"2:A\"\n", "tag[0].browse_path", "not both"},
		{"tag bad path", base + "[[tag]]\nname = \"a\"\nbrowse_path = \"x:A\"\n", "tag[0].browse_path", "namespace index"},
		{"tag duplicate", base + okTag + okTag, "tag[1].name", "unique"},
		{"tag modbus keys", base + "[[tag]]\nname = \"a\"\nnode = \"i=5\"\norder = \"CDAB\"\n", "tag[0].length", "Modbus"},
		{"tag min without writable", base + "[[tag]]\nname = \"a\"\nnode = \"i=5\"\nmin = 1.0\n", "tag[0].writable", "writable = true"},
		{"tag deadband type", base + "[[tag]]\nname = \"a\"\nnode = \"i=5\"\nserver_deadband = 1.0\nserver_deadband_type = \"relative\"\n", "tag[0].server_deadband_type", "percent"},
		{"tag percent over 100", base + "[[tag]]\nname = \"a\"\nnode = \"i=5\"\nserver_deadband = 150.0\nserver_deadband_type = \"percent\"\n", "tag[0].server_deadband", "0..100"},
		{"tag name slash", base + "[[tag]]\nname = \"a/b\"\nnode = \"i=5\"\n", "tag[0].name", "MQTT"},
	}
	for _, tt := range tests {
		if tt.want == "" {
			continue
		}
		t.Run(tt.name, func(t *testing.T) {
			d := New()
			if _, err := toml.Decode(tt.toml, d); err != nil {
				t.Fatalf("decode: %v", err)
			}
			err := d.Init()
			if err == nil {
				t.Fatal("Init accepted it")
			}
			found := false
			for _, e := range leaves(err) {
				var ce *configs.Error
				if tt.key == "" {
					found = found || strings.Contains(e.Error(), tt.want)
					continue
				}
				if errors.As(e, &ce) && ce.Key == tt.key && strings.Contains(ce.Msg, tt.want) {
					found = true
				}
			}
			if !found {
				t.Errorf("Init = %v\nwant key %q with %q", err, tt.key, tt.want)
			}
		})
	}
}

// Map tags are keyed tag[i] of the map file (InMap), inline tags tag[i] of
// the device table, though both count from 0.
func TestInitMapTagKeys(t *testing.T) {
	d := New()
	if _, err := toml.Decode("name = \"plc\"\nendpoint = \"opc.tcp://10.0.0.1:4840\"\n[[tag]]\nname = \"a\"\nnode = \"A\"\n", d); err != nil {
		t.Fatal(err)
	}
	if _, err := toml.Decode("[[tag]]\nname = \"m\"\nnode = \"M\"\n[[tag]]\nname = \"n\"\nnode = \"i=5\"\nqueue_size = -1\n", d.MapTarget()); err != nil {
		t.Fatal(err)
	}
	err := d.Init()
	type where struct {
		key   string
		inMap bool
	}
	got := map[where]bool{}
	for _, e := range leaves(err) {
		var ce *configs.Error
		if errors.As(e, &ce) {
			got[where{ce.Key, ce.InMap}] = true
		}
	}
	for _, w := range []where{{"tag[0].node", true}, {"tag[1].queue_size", true}, {"tag[0].node", false}} {
		if !got[w] {
			t.Errorf("no error keyed %s (in the map: %v); Init = %v", w.key, w.inMap, err)
		}
	}
	if len(got) != 3 {
		t.Errorf("%d errors, want 3: %v", len(got), err)
	}
}

func leaves(err error) []error {
	if u, ok := err.(interface{ Unwrap() []error }); ok {
		var out []error
		for _, e := range u.Unwrap() {
			out = append(out, leaves(e)...)
		}
		return out
	}
	return []error{err}
}

// The defaults are secure: Basic256Sha256 + SignAndEncrypt, subscriptions.
func TestInitDefaults(t *testing.T) {
	d := New()
	if _, err := toml.Decode("name = \"plc\"\nendpoint = \"opc.tcp://h:4840\"\n[[tag]]\nname = \"a\"\nnode = \"ns=2;g=09087e75-8e5e-499b-954f-f2a9603db28a\"\n[[tag]]\nname = \"b\"\nnode = \"ns=2;b=M/RbKBsRVkePCePcx24oRA==\"\n[[tag]]\nname = \"c\"\nnode = \"i=2258\"\n", d); err != nil {
		t.Fatal(err)
	}
	if err := d.Init(); err != nil {
		t.Fatal(err)
	}
	if d.policy != ua.SecurityPolicyURIBasic256Sha256 || d.mode != ua.MessageSecurityModeSignAndEncrypt || d.Mode != "subscribe" || d.Auth != "anonymous" {
		t.Errorf("defaults: policy %s mode %s %s auth %s", d.policy, d.mode, d.Mode, d.Auth)
	}
	if len(d.Tags()) != 3 {
		t.Errorf("%d tags", len(d.Tags()))
	}
	// policy None alone implies mode None.
	n := New()
	n.Endpoint, n.SecurityPolicy, n.SecurityMode = "opc.tcp://h:1", "None", ""
	n.Tag = []Tag{tag("a", "i=1")}
	if err := n.Init(); err != nil || n.mode != ua.MessageSecurityModeNone {
		t.Errorf("policy None: %v, mode %v", err, n.mode)
	}
}

// Status codes keep their original code and map by their top two bits.
func TestStatusMapping(t *testing.T) {
	tests := []struct {
		code ua.StatusCode
		q    mapping.Quality
		text string
	}{
		{ua.StatusOK, mapping.Good, ""},
		{ua.StatusBadNodeIDUnknown, mapping.Bad, "BadNodeIdUnknown (0x80340000)"},
		{ua.StatusUncertainLastUsableValue, mapping.Uncertain, "UncertainLastUsableValue (0x40900000)"},
		{ua.StatusCode(0x40900400), mapping.Uncertain, "UncertainLastUsableValue (0x40900400)"}, // info bits kept
		{ua.StatusCode(0xC0000000), mapping.Bad, "Bad (0xC0000000)"},
	}
	for _, tt := range tests {
		s := mapping.Sample{Tag: &mapping.Spec{Name: "x"}}
		fill(&s, &ua.DataValue{EncodingMask: ua.DataValueStatusCode | ua.DataValueValue, Status: tt.code, Value: ua.MustVariant(1.5)}, 1)
		if s.Quality != tt.q {
			t.Errorf("%#x: quality %v, want %v", uint32(tt.code), s.Quality, tt.q)
		}
		if tt.text == "" && s.Err != nil || tt.text != "" && (s.Err == nil || s.Err.Error() != tt.text) {
			t.Errorf("%#x: err %v, want %q", uint32(tt.code), s.Err, tt.text)
		}
		if tt.q == mapping.Uncertain && s.Value.Float != 1.5 {
			t.Errorf("uncertain value dropped: %+v", s.Value)
		}
	}
}

func TestConvert(t *testing.T) {
	spec := &mapping.Spec{Name: "x"}
	scaled := &mapping.Spec{Name: "x", Scale: 0.1, Offset: 1}
	tests := []struct {
		in   any
		spec *mapping.Spec
		want mapping.Value
	}{
		{int16(-5), spec, mapping.Value{Kind: mapping.KindInt, Int: -5}},
		{uint64(math.MaxUint64), spec, mapping.Value{Kind: mapping.KindUint, Uint: math.MaxUint64}},
		{float32(0.5), spec, mapping.Value{Kind: mapping.KindFloat, Float: 0.5, Float32: true}},
		{int32(100), scaled, mapping.Value{Kind: mapping.KindFloat, Float: 11}},
		{time.Date(2024, 1, 2, 3, 4, 5, 6e6, time.FixedZone("x", 3600)), spec, mapping.Value{Kind: mapping.KindString, Str: "2024-01-02T02:04:05.006Z"}},
		{[]byte("hi"), spec, mapping.Value{Kind: mapping.KindString, Str: "aGk="}},
		{[]int32{1, -2}, spec, mapping.Value{Kind: mapping.KindJSON, Str: "[1,-2]"}},
		{[]float64{math.NaN(), 1}, spec, mapping.Value{Kind: mapping.KindJSON, Str: `["NaN",1]`}},
		{[]string{"a", "b"}, spec, mapping.Value{Kind: mapping.KindJSON, Str: `["a","b"]`}},
		{&ua.LocalizedText{Text: "hello"}, spec, mapping.Value{Kind: mapping.KindString, Str: "hello"}},
	}
	for _, tt := range tests {
		got, err := toValue(tt.in, tt.spec)
		if err != nil || !got.Equal(tt.want) {
			t.Errorf("toValue(%#v) = %+v, %v; want %+v", tt.in, got, err, tt.want)
		}
	}
	// Numbers do not allocate on the way to a sample.
	var x any = float64(3)
	if n := testing.AllocsPerRun(100, func() { _, _ = toValue(x, spec) }); n != 0 {
		t.Errorf("%v allocs converting a Double", n)
	}

	// Writes: scale undone, range-checked per type.
	v, err := fromValue(mapping.Value{Kind: mapping.KindFloat, Float: 11}, scaled, ua.TypeIDInt16)
	if err != nil || v.Value() != int16(100) {
		t.Errorf("fromValue scaled = %v, %v", v, err)
	}
	if _, err := fromValue(mapping.Value{Kind: mapping.KindInt, Int: 300}, spec, ua.TypeIDByte); err == nil {
		t.Error("300 fitted a Byte")
	}
	if _, err := fromValue(mapping.Value{Kind: mapping.KindFloat, Float: 2}, spec, ua.TypeIDBoolean); err == nil {
		t.Error("2 became a Boolean")
	}
	if v, err := fromValue(mapping.Value{Kind: mapping.KindString, Str: "on"}, spec, ua.TypeIDString); err != nil || v.Value() != "on" {
		t.Errorf("string write: %v %v", v, err)
	}
}

// TestCommonTagChecksAreMappings: what every tag has (scale, deadband,
// the write policy) is checked by mapping.Spec.Check, once:
// an OPC UA tag gets exactly the message a Modbus tag gets.
func TestCommonTagChecksAreMappings(t *testing.T) {
	lo, hi := 5.0, 1.0
	for _, tc := range []struct {
		toml string
		spec mapping.Spec
	}{
		{"deadband = -1.0", mapping.Spec{Deadband: -1}},
		{"writable = true\nmin = 5.0\nmax = 1.0", mapping.Spec{Writable: true, Min: &lo, Max: &hi}},
		{"scale = nan", mapping.Spec{Scale: math.NaN()}},
		{`type = "bool"` + "\noffset = 2.0", mapping.Spec{Type: mapping.TypeBool, Offset: 2}},
	} {
		d := New()
		doc := "name = \"plc\"\nendpoint = \"opc.tcp://10.0.0.1:4840\"\n[[tag]]\nname = \"a\"\nnode = \"i=5\"\n" + tc.toml + "\n"
		if _, err := toml.Decode(doc, d); err != nil {
			t.Fatalf("decode %q: %v", tc.toml, err)
		}
		err := d.Init()
		tc.spec.Name = "a"
		want := tc.spec.Check(false)
		var ke *configs.Error
		if want == nil || !errors.As(want, &ke) {
			t.Fatalf("%s: mapping accepts it: %v", tc.toml, want)
		}
		found := false
		for _, e := range leaves(err) {
			var ce *configs.Error
			if errors.As(e, &ce) && ce.Key == "tag[0]."+ke.Key && ce.Msg == ke.Msg {
				found = true
			}
		}
		if !found {
			t.Errorf("%s: Init = %v\nwant tag[0].%s: %s", tc.toml, err, ke.Key, ke.Msg)
		}
	}
}

// TestInitEndpointErrorHidesPassword: an endpoint with credentials that is
// refused (wrong scheme, a typo) is not echoed with its password: the
// message goes to the log, `edged validate` and the console's config page.
func TestInitEndpointErrorHidesPassword(t *testing.T) {
	for _, ep := range []string{"https://op:Sup3rS3cret@10.0.0.1:4840", "opc.tcp:/op:Sup3rS3cret@10.0.0.1:4840"} {
		d := New()
		if _, err := toml.Decode("name = \"plc\"\nendpoint = \""+ep+"\"\n[[tag]]\nname = \"a\"\nnode = \"i=5\"\n", d); err != nil {
			t.Fatal(err)
		}
		err := d.Init()
		if err == nil || !strings.Contains(err.Error(), "is not an OPC UA endpoint") {
			t.Fatalf("endpoint %q: Init = %v, want it refused", ep, err)
		}
		if strings.Contains(err.Error(), "Sup3rS3cret") {
			t.Errorf("endpoint %q: the error shows the password: %v", ep, err)
		}
	}
}
