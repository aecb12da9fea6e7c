package opcua

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/gopcua/opcua"
	"github.com/gopcua/opcua/id"
	"github.com/gopcua/opcua/ua"

	"github.com/edged-gw/edged/mapping"
	"github.com/edged-gw/edged/southbound/host"
)

// HostConfig implements host.Driver: the host runs the device in a lane of
// its own, as a Poller (mode = "poll": a Read every poll_interval) or a
// Subscriber (mode = "subscribe": one session at a time, restarted with
// backoff).
func (d *Device) HostConfig() (host.Config, error) {
	if !d.inited {
		return host.Config{}, fmt.Errorf("opcua device %q: Start before a successful Init", d.Name)
	}
	cfg := host.Config{Name: d.Name, Log: d.Logger, Interval: d.PollInterval.D(),
		Attrs:   []any{"endpoint", d.Endpoint, "security_policy", d.SecurityPolicy, "security_mode", d.SecurityMode, "mode", d.Mode},
		Backoff: host.Backoff{Min: d.minBackoff, Max: d.maxBackoff}, Work: (*subscriber)(d)}
	if d.Mode == "poll" {
		cfg.Work = (*poller)(d)
	}
	return cfg, nil
}

// prepare sets up what the device goroutine owns, once per Start (ctx is
// the Start's).
func (d *Device) prepare(ctx context.Context) {
	if d.started == ctx {
		return
	}
	d.started = ctx
	d.log = d.Runner.Log()
	d.samples = make([]mapping.Sample, len(d.tags))
	for i := range d.samples {
		d.samples[i].Tag = d.specs[i]
	}
	d.batch = make([]mapping.Sample, 0, len(d.tags))
	d.guided = map[string]bool{}
	d.refusedBefore, d.rejected = false, nil
	if d.warnNone {
		d.log.Warn("the password is sent over a channel without encryption (security_policy = \"None\"); use Basic256Sha256 with SignAndEncrypt")
	}
	if d.SecurityPolicy == "Basic128Rsa15" || d.SecurityPolicy == "Basic256" {
		d.log.Warn("security_policy is deprecated (SHA-1); use Basic256Sha256 or an Aes policy", "security_policy", d.SecurityPolicy)
	}
}

// subscriber is the device in mode "subscribe" (host.Subscriber).
type subscriber Device

// Run implements host.Subscriber: one session, until it fails.
func (w *subscriber) Run(ctx context.Context, s *host.Session) error {
	d := (*Device)(w)
	d.prepare(ctx)
	d.sess = s
	return d.failure(d.session(ctx))
}

// poller is the device in mode "poll" (host.Poller).
type poller Device

// Connect implements host.Poller: a session with every node resolved.
func (w *poller) Connect(ctx context.Context) error {
	d := (*Device)(w)
	d.prepare(ctx)
	d.sess = nil
	start := time.Now()
	cn, nodes, nodeErrs, err := d.open(ctx)
	if err != nil {
		return d.failure(err)
	}
	d.pollConn, d.pollStart, d.pollOnline = cn, start, false
	d.pollIDs, d.pollWhich = d.pollIDs[:0], d.pollWhich[:0]
	for i, n := range nodes {
		if n != nil {
			d.pollIDs = append(d.pollIDs, &ua.ReadValueID{NodeID: n, AttributeID: ua.AttributeIDValue})
			d.pollWhich = append(d.pollWhich, i)
		}
	}
	d.pollErrs = nodeErrs
	d.markBad(nodeErrs)
	return nil
}

// Poll implements host.Poller: every tag in Reads of at most maxRead
// nodes. A transport or service failure ends the session.
func (w *poller) Poll(ctx context.Context, _ bool) ([]mapping.Sample, error) {
	d := (*Device)(w)
	cn := d.pollConn
	for {
		select {
		case st := <-cn.states:
			if st == opcua.Closed || st == opcua.Disconnected {
				return nil, d.failure(fmt.Errorf("connection lost (%s)", st))
			}
			continue
		default:
		}
		break
	}
	t0 := time.Now()
	ids, which := d.pollIDs, d.pollWhich
	for s := 0; s < len(ids); s += cn.maxRead {
		e := min(s+cn.maxRead, len(ids))
		rctx, cancel := context.WithTimeout(ctx, cn.timeout)
		res, err := cn.c.Read(rctx, &ua.ReadRequest{NodesToRead: ids[s:e], TimestampsToReturn: ua.TimestampsToReturnBoth})
		cancel()
		d.count(func(st *Stats) { st.ReadRequests++ })
		d.request(err)
		if err == nil && len(res.Results) != e-s {
			err = fmt.Errorf("the server answered %d results for %d nodes", len(res.Results), e-s)
		}
		if err != nil {
			return nil, d.failure(fmt.Errorf("read %d nodes: %w", e-s, err))
		}
		now := time.Now().UnixMilli()
		for j, dv := range res.Results {
			fill(&d.samples[which[s+j]], dv, now)
		}
	}
	if !d.pollOnline {
		d.pollOnline, d.rejected = true, nil
		d.count(func(s *Stats) { s.Connects++; s.LastConnectTook = time.Since(d.pollStart) })
	}
	for i, err := range d.pollErrs {
		if err != nil {
			d.samples[i].TimeMs = t0.UnixMilli()
		}
	}
	d.count(func(st *Stats) { st.Values += uint64(len(ids)) })
	if d.log.Enabled(ctx, slog.LevelDebug) {
		d.log.Debug("poll done", "nodes", len(ids), "reads", (len(ids)+cn.maxRead-1)/max(cn.maxRead, 1), "took", time.Since(t0))
	}
	return d.samples, nil
}

// Close implements host.Poller.
func (w *poller) Close() error {
	d := (*Device)(w)
	if d.pollConn != nil {
		d.setLive(nil)
		d.pollConn.close()
		d.pollConn = nil
	}
	return nil
}

// failure counts a failed connect or lost session and tells the operator
// what to do about the failures that need them: an untrusted server
// certificate (once per certificate), a refused login (retried only after
// loginRetry: servers lock accounts after a few failed logins).
func (d *Device) failure(err error) error {
	if err == nil || errors.Is(err, context.Canceled) {
		return err
	}
	var ue *UntrustedError
	switch {
	case errors.As(err, &ue):
		d.rejected = ue
	case d.rejected != nil && reachedServer(err) && !loginRefused(err):
		err = &TrustedNowError{Server: d.rejected, Err: err}
	}
	d.count(func(s *Stats) { s.Failures++; s.LastError = err })
	if ue != nil && !d.guided[ue.SHA1] {
		d.guided[ue.SHA1] = true
		d.log.Error("refused the server's certificate: it is not trusted yet",
			"endpoint", d.Endpoint, "server_cert", ue.Subject, "sha1", ue.SHA1, "sha256", ue.SHA256, "saved_to", ue.SavedTo,
			"to_trust", fmt.Sprintf("move %s into %s (edged picks it up at the next attempt, no restart), or add trusted_thumbprints = [\"%s\"] to device %q",
				ue.SavedTo, NewPKI(d.dataDir).path(trustedDir), ue.SHA256, d.Name),
			"edged_cert", ue.ClientCert, "edged_sha1", ue.ClientSHA1,
			"server_side", "the server must trust edged's certificate too: copy edged_cert into the server's trusted certificates")
	}
	refused := loginRefused(err)
	defer func() { d.refusedBefore = refused }()
	if !refused {
		return err
	}
	if !d.refusedBefore {
		d.log.Error("the server refused the login: next attempt in "+d.loginRetry.String()+" (servers often lock an account after a few failed logins); correct the config and reload to retry at once",
			"endpoint", d.Endpoint, "err", err)
	}
	return host.RetryAfter(err, d.loginRetry)
}

// request counts one request for the metrics: a bad service result is the
// server refusing it, BadTimeout a timeout.
func (d *Device) request(err error) {
	var sc ua.StatusCode
	if errors.As(err, &sc) {
		if sc == ua.StatusBadTimeout {
			err = timeoutErr{err}
		} else {
			err = refusal{err}
		}
	}
	d.Runner.Counter().Count(err)
}

type refusal struct{ error }

func (refusal) Refused() bool { return true }

type timeoutErr struct{ error }

func (timeoutErr) Timeout() bool { return true }

// setLive publishes the session Write uses (nil: none).
func (d *Device) setLive(cn *conn) {
	d.cliMu.Lock()
	d.cli = cn
	d.cliMu.Unlock()
}

// open connects and resolves every tag's node.
func (d *Device) open(ctx context.Context) (*conn, []*ua.NodeID, []error, error) {
	cn, err := d.connect(ctx)
	if err != nil {
		return nil, nil, nil, err
	}
	nodes, nodeErrs, err := d.resolve(ctx, cn)
	if errors.Is(err, errFaulted) {
		// gopcua treats a ServiceFault as a broken channel and stops the
		// client's publish loop: start over on a fresh client, which
		// skips the refused service from now on.
		cn.close()
		if cn, err = d.connect(ctx); err != nil {
			return nil, nil, nil, err
		}
		nodes, nodeErrs, err = d.resolve(ctx, cn)
	}
	if err != nil {
		cn.close()
		return nil, nil, nil, err
	}
	d.setLive(cn)
	return cn, nodes, nodeErrs, nil
}

// session connects and serves one subscription session until it fails or
// ctx ends.
func (d *Device) session(ctx context.Context) error {
	start := time.Now()
	cn, nodes, nodeErrs, err := d.open(ctx)
	if err != nil {
		return err
	}
	defer func() {
		d.setLive(nil)
		cn.close()
	}()
	return d.subscribe(ctx, cn, nodes, nodeErrs, start)
}

// errFaulted says the server answered a service with a ServiceFault,
// which leaves a gopcua client without its publish loop.
var errFaulted = errors.New("service fault")

// resolve returns each tag's NodeId, translating browse paths; a tag whose
// path does not resolve has a nil NodeId and an error.
func (d *Device) resolve(ctx context.Context, cn *conn) ([]*ua.NodeID, []error, error) {
	nodes := make([]*ua.NodeID, len(d.tags))
	errs := make([]error, len(d.tags))
	var idx []int
	var paths [][]*ua.QualifiedName
	for i := range d.tags {
		if d.tags[i].nsURI != "" && cn.namespaces == nil {
			// Indices may differ from the last session's: read them anew.
			if err := cn.loadNamespaces(ctx); err != nil {
				return nil, nil, err
			}
		}
		if d.tags[i].nodeID != nil || d.tags[i].nsURI != "" {
			nodes[i], errs[i] = cn.nodeFor(&d.tags[i])
			if errs[i] != nil && d.log != nil {
				d.log.Warn("tag's namespace is not on the server: the tag is bad", "tag", d.tags[i].Name, "node", d.tags[i].Node, "err", errs[i])
			}
			continue
		}
		idx = append(idx, i)
		paths = append(paths, d.tags[i].path)
	}
	if len(paths) == 0 {
		return nodes, errs, nil
	}
	if d.translateErr != nil {
		for _, i := range idx {
			errs[i] = d.translateErr
		}
		return nodes, errs, nil
	}
	ids, perrs, err := cn.resolvePaths(ctx, paths)
	var sc ua.StatusCode
	if errors.As(err, &sc) {
		d.translateErr = fmt.Errorf("resolve browse path: the server refused TranslateBrowsePathsToNodeIDs: %w (use node = \"ns=…\" instead)", statusErr(sc))
		return nil, nil, errFaulted
	}
	if err != nil {
		return nil, nil, err
	}
	for j, i := range idx {
		nodes[i], errs[i] = ids[j], perrs[j]
	}
	return nodes, errs, nil
}

// online marks a subscription session online (its values flow).
func (d *Device) online(start time.Time) {
	d.count(func(s *Stats) { s.Connects++; s.LastConnectTook = time.Since(start) })
	d.rejected = nil
	d.sess.Online()
}

// markBad sets a bad sample for each tag whose node cannot be used and, in
// a subscription session, delivers them (a poll delivers them with its
// values).
func (d *Device) markBad(errs []error) {
	now := time.Now().UnixMilli()
	d.batch = d.batch[:0]
	for i, err := range errs {
		if err != nil {
			d.samples[i] = mapping.Sample{Tag: d.specs[i], Quality: mapping.Bad, TimeMs: now, Err: fmt.Errorf("%s: %w", d.tags[i].where(), err)}
			d.batch = append(d.batch, d.samples[i])
		}
	}
	if len(d.batch) > 0 && d.sess != nil {
		d.deliver(d.batch)
	}
}

// subscribe creates one subscription with a monitored item per tag (in
// calls of at most maxItems) and delivers what the server publishes, with
// publish_requests PublishRequests in flight (see publisher). An item the
// server refuses marks its tag bad; the others run. A keepalive Read every
// Keepalive notices a dead connection the publish requests would not
// report.
func (d *Device) subscribe(ctx context.Context, cn *conn, nodes []*ua.NodeID, nodeErrs []error, start time.Time) error {
	sub, err := cn.createSubscription(ctx, d.PublishingInterval.D())
	d.request(err)
	if err != nil {
		return fmt.Errorf("create subscription: %w", err)
	}
	var reqs []*ua.MonitoredItemCreateRequest
	var which []int
	for i, n := range nodes {
		if n == nil {
			continue
		}
		t := &d.tags[i]
		r := opcua.NewMonitoredItemCreateRequestWithDefaults(n, ua.AttributeIDValue, uint32(i))
		si := d.SamplingInterval.D()
		if t.SamplingInterval > 0 {
			si = t.SamplingInterval.D()
		}
		r.RequestedParameters.SamplingInterval = float64(si) / float64(time.Millisecond)
		r.RequestedParameters.QueueSize = uint32(d.QueueSize)
		if t.QueueSize > 0 {
			r.RequestedParameters.QueueSize = uint32(t.QueueSize)
		}
		if t.ServerDeadband > 0 {
			db := ua.DeadbandTypeAbsolute
			if t.ServerDeadbandType == "percent" {
				db = ua.DeadbandTypePercent
			}
			r.RequestedParameters.Filter = ua.NewExtensionObject(&ua.DataChangeFilter{
				Trigger: ua.DataChangeTriggerStatusValue, DeadbandType: uint32(db), DeadbandValue: t.ServerDeadband,
			})
		}
		reqs = append(reqs, r)
		which = append(which, i)
	}
	for s := 0; s < len(reqs); s += cn.maxItems {
		e := min(s+cn.maxItems, len(reqs))
		mctx, cancel := context.WithTimeout(ctx, cn.timeout)
		res, err := cn.monitor(mctx, sub, reqs[s:e])
		cancel()
		d.count(func(st *Stats) { st.MonitorRequests++ })
		d.request(err)
		if err == nil && res.ResponseHeader != nil && res.ResponseHeader.ServiceResult != ua.StatusOK {
			err = res.ResponseHeader.ServiceResult
		}
		if err == nil && len(res.Results) != e-s {
			err = fmt.Errorf("the server answered %d results for %d items", len(res.Results), e-s)
		}
		if err != nil {
			return fmt.Errorf("create %d monitored items: %w", e-s, err)
		}
		for j, r := range res.Results {
			if r.StatusCode != ua.StatusOK {
				nodeErrs[which[s+j]] = fmt.Errorf("monitor: %w", statusErr(r.StatusCode))
			}
		}
	}
	if cap(d.seqOf) < len(d.tags) {
		d.seqOf = make([]uint32, len(d.tags))
	}
	d.seqOf = d.seqOf[:len(d.tags)]
	clear(d.seqOf) // sequence numbers start again with a new subscription
	seq := newSequencer()

	pctx, stop := context.WithCancel(ctx)
	pub := startPublisher(pctx, cn, sub, d.PublishRequests, func() { d.count(func(st *Stats) { st.PublishRequests++ }) })
	defer pub.wait()
	defer stop()
	d.online(start)
	d.markBad(nodeErrs)

	keep := time.NewTicker(d.Keepalive.D())
	defer keep.Stop()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case st := <-cn.states:
			if st == opcua.Closed || st == opcua.Disconnected {
				return fmt.Errorf("connection lost (%s)", st)
			}
		case r := <-pub.out:
			if r.err != nil {
				return fmt.Errorf("subscription: publish: %w", r.err)
			}
			if r.res.SubscriptionID != sub.id {
				continue // not ours (none other is created in this session)
			}
			m := r.res.NotificationMessage
			if m == nil || len(m.NotificationData) == 0 {
				continue // a keep-alive
			}
			if seq.add(m, time.Now(), d.apply) {
				d.count(func(st *Stats) { st.Reordered++ })
			}
		case <-keep.C:
			seq.expire(time.Now(), d.apply)
			t0 := time.Now()
			err := cn.alive(ctx)
			d.request(err)
			d.Runner.Counter().Polled(time.Since(t0))
			if err != nil {
				return fmt.Errorf("keepalive: %w", err)
			}
		}
	}
}

// apply delivers one notification message of the subscription. A late
// message (older than one applied already) sets only the tags no later
// message set: a stale value never overwrites a newer one.
func (d *Device) apply(m *ua.NotificationMessage, late bool) { d.applyTo(m, late, d.deliver) }

func (d *Device) applyTo(m *ua.NotificationMessage, late bool, deliver func([]mapping.Sample)) {
	for _, data := range m.NotificationData {
		if data == nil {
			continue
		}
		switch n := data.Value.(type) {
		case *ua.DataChangeNotification:
			d.dataChange(n, m.SequenceNumber, late, deliver)
		case *ua.StatusChangeNotification:
			// The server ended the subscription (e.g. BadTimeout): the keepalive or
			// the publish requests report it; log it for the operator.
			d.log.Warn("subscription status changed", "status", statusText(n.Status))
		}
	}
}

// dataChange delivers the changed samples of one DataChangeNotification
// of message seq.
func (d *Device) dataChange(n *ua.DataChangeNotification, seq uint32, late bool, deliver func([]mapping.Sample)) {
	now := time.Now().UnixMilli()
	d.batch = d.batch[:0]
	stale := 0
	for _, item := range n.MonitoredItems {
		if item == nil || int(item.ClientHandle) >= len(d.samples) {
			continue
		}
		h := item.ClientHandle
		if late && d.seqOf[h] != 0 && before(seq, d.seqOf[h]) {
			stale++
			continue
		}
		d.seqOf[h] = seq
		s := &d.samples[h]
		fill(s, item.Value, now)
		d.batch = append(d.batch, *s)
	}
	d.count(func(st *Stats) { st.Values += uint64(len(d.batch)); st.Stale += uint64(stale) })
	if len(d.batch) > 0 {
		deliver(d.batch)
	}
}

// alive reads the server state, to notice a connection that died quietly.
func (cn *conn) alive(ctx context.Context) error {
	rctx, cancel := context.WithTimeout(ctx, cn.timeout)
	defer cancel()
	res, err := cn.c.Read(rctx, &ua.ReadRequest{NodesToRead: []*ua.ReadValueID{
		{NodeID: ua.NewNumericNodeID(0, id.Server_ServerStatus_State), AttributeID: ua.AttributeIDValue},
	}})
	if err != nil {
		return err
	}
	if len(res.Results) == 1 && res.Results[0] != nil && res.Results[0].Value != nil {
		if st, ok := res.Results[0].Value.Value().(int32); ok && ua.ServerState(st) != ua.ServerStateRunning {
			return fmt.Errorf("server state %s", ua.ServerState(st))
		}
	}
	return nil
}

func (d *Device) deliver(samples []mapping.Sample) { d.sess.Samples(samples) }
