package opcua

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/gopcua/opcua"
	"github.com/gopcua/opcua/id"
	"github.com/gopcua/opcua/ua"
)

// conn is one connected session and what was learned while connecting.
type conn struct {
	c        *opcua.Client
	states   chan opcua.ConnState // the client's state changes (buffered)
	maxRead  int                  // nodes per Read
	maxItems int                  // monitored items per CreateMonitoredItems
	timeout  time.Duration
	// namespaces is the server's namespace array, read at connect when a
	// tag names its namespace by URI (nsu=…).
	namespaces []string
}

// loadNamespaces reads the server's namespace array into cn.namespaces.
func (cn *conn) loadNamespaces(ctx context.Context) error {
	rctx, cancel := context.WithTimeout(ctx, cn.timeout)
	defer cancel()
	ns, err := cn.c.NamespaceArray(rctx)
	if err != nil {
		return fmt.Errorf("read the server's namespace array (for nsu= node ids): %w", err)
	}
	cn.namespaces = ns
	return nil
}

// nodeFor is t's NodeId on this session: t's own, or for nsu=URI;ID the
// URI's index in the server's namespace array now. A URI the server does
// not have is an error naming the namespaces it has.
func (cn *conn) nodeFor(t *Tag) (*ua.NodeID, error) {
	if t.nsURI == "" {
		return t.nodeID, nil
	}
	for i, u := range cn.namespaces {
		if u == t.nsURI {
			return ua.ParseNodeID(fmt.Sprintf("ns=%d;%s", i, t.nsID))
		}
	}
	if cn.namespaces == nil {
		return nil, fmt.Errorf("namespace %q: the server's namespace array was not read", t.nsURI)
	}
	return nil, fmt.Errorf("namespace %q is not on the server (its namespaces: %s): check the URI in node, or browse the server", t.nsURI, strings.Join(quoteAll(cn.namespaces), ", "))
}

func quoteAll(ss []string) []string {
	out := make([]string, len(ss))
	for i, s := range ss {
		out[i] = strconv.Quote(s)
	}
	return out
}

// loadIdentity makes sure edged's certificate exists (making it on first
// use) and logs where it is the first time.
func (d *Device) loadIdentity() (*identity, error) {
	if d.dataDir == "" {
		return nil, errors.New("no data dir: the host must call SetDataDir before Start (gateway.data_dir holds edged's certificates under pki/)")
	}
	p := NewPKI(d.dataDir)
	own, created, err := p.Own(d.ApplicationURI)
	if err != nil {
		return nil, err
	}
	s1, _ := Thumbprints(own.cert)
	if created {
		d.logger().Info("made edged's OPC UA application certificate; servers must trust it",
			"cert", own.certPath, "sha1", s1, "application_uri", own.uri)
	}
	if d.ApplicationURI != "" && own.uri != d.ApplicationURI {
		d.logger().Warn("edged's certificate has another application URI than application_uri; the certificate's is used (delete the certificate to make a new one)",
			"cert", own.certPath, "cert_uri", own.uri, "application_uri", d.ApplicationURI)
	}
	return own, nil
}

func (d *Device) logger() *slog.Logger {
	if d.log != nil {
		return d.log
	}
	if d.Logger != nil {
		return d.Logger
	}
	return discard
}

// connect opens a session: GetEndpoints over an unsecured channel, picks
// the endpoint of the configured policy and mode, checks the server
// certificate against the trust list, then opens the secure channel and
// session on the configured URL and reads the server's operation limits.
func (d *Device) connect(ctx context.Context) (*conn, error) {
	timeout := d.Timeout.D()
	var own *identity
	var pki PKI
	if d.policy != ua.SecurityPolicyURINone || d.Auth == "certificate" {
		var err error
		if own, err = d.loadIdentity(); err != nil {
			return nil, err
		}
		pki = NewPKI(d.dataDir)
	}
	gctx, cancel := context.WithTimeout(ctx, timeout)
	eps, err := opcua.GetEndpoints(gctx, d.Endpoint, opcua.DialTimeout(timeout), opcua.RequestTimeout(timeout))
	cancel()
	if err != nil {
		return nil, fmt.Errorf("get endpoints of %s: %w", d.Endpoint, err)
	}
	ep := selectEndpoint(eps, d.policy, d.mode)
	if ep == nil {
		return nil, fmt.Errorf("the server offers no endpoint with security_policy = %q and security_mode = %q; it offers: %s",
			d.SecurityPolicy, d.SecurityMode, offered(eps))
	}
	opts := []opcua.Option{
		opcua.AutoReconnect(false), // ours: see the package doc
		opcua.DialTimeout(timeout),
		opcua.RequestTimeout(timeout),
		opcua.SessionTimeout(time.Minute),
		opcua.ApplicationName("edged"),
		opcua.ProductURI("urn:edged"),
		opcua.SessionName("edged " + d.Name),
	}
	if own != nil {
		opts = append(opts, opcua.Certificate(own.cert), opcua.PrivateKey(own.key))
		if own.uri != "" {
			opts = append(opts, opcua.ApplicationURI(own.uri))
		}
	}
	if d.policy != ua.SecurityPolicyURINone {
		if err := pki.Check(ep.ServerCertificate, d.pinned(), own); err != nil {
			return nil, err
		}
	}
	var tokenType ua.UserTokenType
	var userCert []byte // for auth = "certificate", to name it when refused
	switch d.Auth {
	case "username":
		pw := d.Password
		if d.PasswordFile != "" {
			b, err := os.ReadFile(d.PasswordFile)
			if err != nil {
				return nil, fmt.Errorf("password_file: %w", err)
			}
			pw = strings.TrimRight(string(b), "\r\n")
		}
		tokenType = ua.UserTokenTypeUserName
		opts = append(opts, opcua.AuthUsername(d.Username, pw))
	case "certificate":
		tokenType = ua.UserTokenTypeCertificate
		cert, key := own.cert, own.key
		if d.UserCertificate != "" {
			if cert, err = readCert(d.UserCertificate); err != nil {
				return nil, fmt.Errorf("user_certificate: %w", err)
			}
			b, err := os.ReadFile(d.UserKey)
			if err != nil {
				return nil, fmt.Errorf("user_key: %w", err)
			}
			if key, err = parseKey(b); err != nil {
				return nil, fmt.Errorf("user_key %s: %w", d.UserKey, err)
			}
		}
		userCert = cert
		opts = append(opts, opcua.AuthCertificate(cert), opcua.AuthPrivateKey(key))
	default:
		tokenType = ua.UserTokenTypeAnonymous
		opts = append(opts, opcua.AuthAnonymous())
	}
	if !hasToken(ep, tokenType) {
		return nil, fmt.Errorf("the server's endpoint %s/%s does not accept auth = %q; it accepts: %s",
			d.SecurityPolicy, d.SecurityMode, d.Auth, tokens(ep))
	}
	opts = append(opts, opcua.SecurityFromEndpoint(ep, tokenType))
	states := make(chan opcua.ConnState, 64)
	opts = append(opts, opcua.StateChangedCh(states))

	c, err := opcua.NewClient(d.Endpoint, opts...)
	if err != nil {
		return nil, fmt.Errorf("configure the OPC UA client: %w", err)
	}
	cctx, cancel := context.WithTimeout(ctx, 2*timeout)
	err = c.Connect(cctx)
	cancel()
	if err != nil {
		closeClient(c)
		if loginRefused(err) {
			switch d.Auth {
			case "username":
				return nil, fmt.Errorf("the server refused the login of user %q (%w): check username and password (or password_file)", d.Username, err)
			case "certificate":
				path := d.UserCertificate
				if path == "" {
					path = own.certPath
				}
				s1, _ := Thumbprints(userCert)
				return nil, fmt.Errorf("the server refused the login with the user certificate %s (SHA-1 %s) (%w): the server must trust it as a user certificate (not only as an application certificate)", path, s1, err)
			}
		}
		if own != nil && refusedUs(err) {
			s1, _ := Thumbprints(own.cert)
			return nil, fmt.Errorf("the server refused the session (%w): it probably does not trust edged's certificate yet: trust %s (SHA-1 %s) on the server, e.g. move it from the server's rejected to its trusted certificates",
				err, own.certPath, s1)
		}
		return nil, fmt.Errorf("connect to %s: %w", d.Endpoint, err)
	}
	cn := &conn{c: c, states: states, timeout: timeout, maxRead: d.MaxNodesPerRequest, maxItems: d.MaxNodesPerRequest}
	cn.readLimits(ctx)
	return cn, nil
}

// loginRefused reports whether ActivateSession refused the user identity
// (wrong password, user certificate not trusted): a login problem, not a
// problem of edged's application certificate.
func loginRefused(err error) bool {
	for _, sc := range []ua.StatusCode{ua.StatusBadUserAccessDenied, ua.StatusBadIdentityTokenInvalid,
		ua.StatusBadIdentityTokenRejected, ua.StatusBadUserSignatureInvalid} {
		if errors.Is(err, sc) {
			return true
		}
	}
	return false
}

// refusedUs reports whether a connect error looks like the server not
// trusting our certificate.
func refusedUs(err error) bool {
	for _, sc := range []ua.StatusCode{ua.StatusBadSecurityChecksFailed, ua.StatusBadCertificateUntrusted,
		ua.StatusBadCertificateInvalid, ua.StatusBadIdentityTokenRejected, ua.StatusBadCertificateURIInvalid} {
		if errors.Is(err, sc) {
			return true
		}
	}
	return false
}

func (d *Device) pinned() []string {
	out := make([]string, 0, len(d.TrustedThumbprints))
	for _, tp := range d.TrustedThumbprints {
		out = append(out, normThumbprint(tp))
	}
	return out
}

func selectEndpoint(eps []*ua.EndpointDescription, policy string, mode ua.MessageSecurityMode) *ua.EndpointDescription {
	for _, ep := range eps {
		if ep.SecurityPolicyURI == policy && ep.SecurityMode == mode {
			return ep
		}
	}
	return nil
}

func offered(eps []*ua.EndpointDescription) string {
	var parts []string
	for _, ep := range eps {
		parts = append(parts, fmt.Sprintf("%s/%s", strings.TrimPrefix(ep.SecurityPolicyURI, ua.SecurityPolicyURIPrefix), modeName(ep.SecurityMode)))
	}
	if len(parts) == 0 {
		return "nothing"
	}
	return strings.Join(parts, ", ")
}

func modeName(m ua.MessageSecurityMode) string {
	for k, v := range modes {
		if v == m {
			return k
		}
	}
	return m.String()
}

func hasToken(ep *ua.EndpointDescription, t ua.UserTokenType) bool {
	for _, tok := range ep.UserIdentityTokens {
		if tok.TokenType == t {
			return true
		}
	}
	return false
}

func tokens(ep *ua.EndpointDescription) string {
	var parts []string
	for _, tok := range ep.UserIdentityTokens {
		switch tok.TokenType {
		case ua.UserTokenTypeAnonymous:
			parts = append(parts, "anonymous")
		case ua.UserTokenTypeUserName:
			parts = append(parts, "username")
		case ua.UserTokenTypeCertificate:
			parts = append(parts, "certificate")
		default:
			parts = append(parts, tok.TokenType.String())
		}
	}
	if len(parts) == 0 {
		return "nothing"
	}
	return strings.Join(parts, ", ")
}

// readLimits lowers maxRead and maxItems to what the server publishes in
// Server_ServerCapabilities_OperationLimits (0 or absent: no limit).
func (cn *conn) readLimits(ctx context.Context) {
	ids := []uint32{id.Server_ServerCapabilities_OperationLimits_MaxNodesPerRead,
		id.Server_ServerCapabilities_OperationLimits_MaxMonitoredItemsPerCall}
	req := &ua.ReadRequest{TimestampsToReturn: ua.TimestampsToReturnNeither}
	for _, n := range ids {
		req.NodesToRead = append(req.NodesToRead, &ua.ReadValueID{NodeID: ua.NewNumericNodeID(0, n), AttributeID: ua.AttributeIDValue})
	}
	rctx, cancel := context.WithTimeout(ctx, cn.timeout)
	defer cancel()
	res, err := cn.c.Read(rctx, req)
	if err != nil || len(res.Results) != len(ids) {
		return
	}
	for i, dst := range []*int{&cn.maxRead, &cn.maxItems} {
		dv := res.Results[i]
		if dv == nil || dv.Status != ua.StatusOK || dv.Value == nil {
			continue
		}
		var n uint64
		switch v := dv.Value.Value().(type) {
		case uint32:
			n = uint64(v)
		case uint16:
			n = uint64(v)
		case int32:
			n = uint64(max(v, 0))
		case uint64:
			n = v
		case int64:
			n = uint64(max(v, 0))
		}
		if n > 0 && n < uint64(*dst) {
			*dst = int(n)
		}
	}
}

// close ends the session and the channel, bounded in time.
func (cn *conn) close() { closeClient(cn.c) }

func closeClient(c *opcua.Client) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	_ = c.Close(ctx)
}

// resolvePaths translates the browse paths of tags (index → path) into
// NodeIds, in chunks; a path that does not resolve gets a nil NodeId and
// its error.
func (cn *conn) resolvePaths(ctx context.Context, paths [][]*ua.QualifiedName) ([]*ua.NodeID, []error, error) {
	ids := make([]*ua.NodeID, len(paths))
	errs := make([]error, len(paths))
	for start := 0; start < len(paths); start += cn.maxRead {
		end := min(start+cn.maxRead, len(paths))
		req := &ua.TranslateBrowsePathsToNodeIDsRequest{}
		for _, p := range paths[start:end] {
			rp := &ua.RelativePath{}
			for _, qn := range p {
				rp.Elements = append(rp.Elements, &ua.RelativePathElement{
					ReferenceTypeID: ua.NewNumericNodeID(0, id.HierarchicalReferences),
					IncludeSubtypes: true,
					TargetName:      qn,
				})
			}
			req.BrowsePaths = append(req.BrowsePaths, &ua.BrowsePath{StartingNode: ua.NewNumericNodeID(0, id.ObjectsFolder), RelativePath: rp})
		}
		var res *ua.TranslateBrowsePathsToNodeIDsResponse
		rctx, cancel := context.WithTimeout(ctx, cn.timeout)
		err := cn.c.Send(rctx, req, func(v ua.Response) error {
			r, ok := v.(*ua.TranslateBrowsePathsToNodeIDsResponse)
			if !ok {
				return fmt.Errorf("unexpected response %T", v)
			}
			res = r
			return nil
		})
		cancel()
		if err != nil {
			var sc ua.StatusCode
			if errors.As(err, &sc) {
				return nil, nil, sc // a ServiceFault: the caller decides
			}
			return nil, nil, fmt.Errorf("resolve browse paths: %w", err)
		}
		for i, r := range res.Results {
			k := start + i
			if k >= end {
				break
			}
			switch {
			case r.StatusCode != ua.StatusOK:
				errs[k] = fmt.Errorf("resolve browse path: %w", statusErr(r.StatusCode))
			case len(r.Targets) == 0 || r.Targets[0].TargetID == nil:
				errs[k] = errors.New("resolve browse path: no target")
			default:
				ids[k] = r.Targets[0].TargetID.NodeID
			}
		}
	}
	return ids, errs, nil
}
