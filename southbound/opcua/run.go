package opcua

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"time"

	"github.com/gopcua/opcua"
	"github.com/gopcua/opcua/id"
	"github.com/gopcua/opcua/ua"

	"github.com/edged-gw/edged/mapping"
	"github.com/edged-gw/edged/southbound"
)

// Start checks that Init ran and connects in the background; it returns at
// once. ctx only carries values: the device runs until Stop.
func (d *Device) Start(ctx context.Context, sink southbound.Sink) error {
	if !d.inited {
		return fmt.Errorf("opcua device %q: Start before a successful Init", d.Name)
	}
	return d.loop.Go(ctx, d.Name, func(context.Context) { d.prepare(sink) }, d.run)
}

// prepare sets up what the device goroutine owns.
func (d *Device) prepare(sink southbound.Sink) {
	d.guard.Open(d.Name, sink)
	d.log = d.Logger
	if d.log == nil {
		d.log = discard
	}
	d.log = d.log.With("device", d.Name)
	d.samples = make([]mapping.Sample, len(d.tags))
	for i := range d.samples {
		d.samples[i].Tag = d.specs[i]
	}
	d.batch = make([]mapping.Sample, 0, len(d.tags))
	d.guided = map[string]bool{}
	if d.warnNone {
		d.log.Warn("the password is sent over a channel without encryption (security_policy = \"None\"); use Basic256Sha256 with SignAndEncrypt")
	}
	if d.SecurityPolicy == "Basic128Rsa15" || d.SecurityPolicy == "Basic256" {
		d.log.Warn("security_policy is deprecated (SHA-1); use Basic256Sha256 or an Aes policy", "security_policy", d.SecurityPolicy)
	}
}

// Stop ends the session and waits for the device goroutine, or for ctx.
// The sink is never called after Stop returns. Safe without Start and more
// than once.
func (d *Device) Stop(ctx context.Context) error {
	err := d.loop.Stop(ctx)
	d.guard.Close()
	if err != nil {
		return fmt.Errorf("stop opcua device %q: %w", d.Name, err)
	}
	return nil
}

// run connects, serves the session until it fails, and reconnects with
// backoff, until Stop.
func (d *Device) run(ctx context.Context) {
	d.setState(southbound.StateConnecting, nil)
	attempt := 0
	refusedBefore := false // the last attempt's login was refused
	for ctx.Err() == nil {
		wasOnline, err := d.session(ctx)
		if ctx.Err() != nil {
			break
		}
		if wasOnline {
			attempt = 0
		}
		d.count(func(s *Stats) { s.Failures++; s.LastError = err })
		var ue *UntrustedError
		if errors.As(err, &ue) && !d.guided[ue.SHA1] {
			d.guided[ue.SHA1] = true
			d.log.Error("refused the server's certificate: it is not trusted yet",
				"endpoint", d.Endpoint, "server_cert", ue.Subject, "sha1", ue.SHA1, "sha256", ue.SHA256, "saved_to", ue.SavedTo,
				"to_trust", fmt.Sprintf("move %s into %s (edged picks it up at the next attempt, no restart), or add trusted_thumbprints = [\"%s\"] to device %q",
					ue.SavedTo, NewPKI(d.dataDir).path(trustedDir), ue.SHA256, d.Name),
				"edged_cert", ue.ClientCert, "edged_sha1", ue.ClientSHA1,
				"server_side", "the server must trust edged's certificate too: copy edged_cert into the server's trusted certificates")
		}
		if d.state != southbound.StateOffline {
			d.log.Warn("device offline", "endpoint", d.Endpoint, "err", err)
			d.allBad(err)
			d.setState(southbound.StateOffline, err)
		} else {
			d.log.Debug("reconnect failed", "err", err)
		}
		wait := d.backoff(attempt)
		if loginRefused(err) {
			wait = d.loginRetry
			if !refusedBefore {
				d.log.Error("the server refused the login: next attempt in "+wait.String()+" (servers often lock an account after a few failed logins); correct the config and reload to retry at once",
					"endpoint", d.Endpoint, "err", err)
			}
		}
		refusedBefore = loginRefused(err)
		timer := time.NewTimer(wait)
		attempt++
		select {
		case <-timer.C:
		case <-ctx.Done():
			timer.Stop()
		}
	}
	d.log.Info("device stopped")
	d.setState(southbound.StateStopped, nil)
}

func (d *Device) backoff(n int) time.Duration {
	b := d.maxBackoff
	if n < 30 {
		b = min(d.maxBackoff, d.minBackoff<<n)
	}
	return b/2 + rand.N(b/2+1)
}

// session connects and serves one session until it fails or ctx ends.
// wasOnline reports whether it got as far as delivering values.
func (d *Device) session(ctx context.Context) (wasOnline bool, err error) {
	start := time.Now()
	cn, err := d.connect(ctx)
	if err != nil {
		return false, err
	}
	defer func() {
		d.cliMu.Lock()
		d.cli = nil
		d.cliMu.Unlock()
		cn.close()
	}()
	nodes, nodeErrs, err := d.resolve(ctx, cn)
	if errors.Is(err, errFaulted) {
		// gopcua treats a ServiceFault as a broken channel and stops the
		// client's publish loop: start over on a fresh client, which
		// skips the refused service from now on.
		cn.close()
		if cn, err = d.connect(ctx); err != nil {
			return false, err
		}
		nodes, nodeErrs, err = d.resolve(ctx, cn)
	}
	if err != nil {
		return false, err
	}
	d.cliMu.Lock()
	d.cli = cn
	d.cliMu.Unlock()

	if d.Mode == "poll" {
		return d.poll(ctx, cn, nodes, nodeErrs, start)
	}
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
		if d.tags[i].nodeID != nil {
			nodes[i] = d.tags[i].nodeID
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

// online marks the device online once per session.
func (d *Device) online(start time.Time) {
	d.count(func(s *Stats) { s.Connects++; s.LastConnectTook = time.Since(start) })
	if d.state != southbound.StateOnline {
		d.log.Info("device online", "endpoint", d.Endpoint, "security_policy", d.SecurityPolicy, "security_mode", d.SecurityMode, "mode", d.Mode)
		d.setState(southbound.StateOnline, nil)
	}
}

// markBad delivers a bad sample for each tag whose node cannot be used.
func (d *Device) markBad(errs []error) {
	now := time.Now().UnixMilli()
	d.batch = d.batch[:0]
	for i, err := range errs {
		if err != nil {
			d.samples[i] = mapping.Sample{Tag: d.specs[i], Quality: mapping.Bad, TimeMs: now, Err: fmt.Errorf("%s: %w", d.tags[i].where(), err)}
			d.batch = append(d.batch, d.samples[i])
		}
	}
	if len(d.batch) > 0 {
		d.deliver(d.batch)
	}
}

// poll reads every tag each PollInterval, in Reads of at most maxRead
// nodes. A transport or service failure ends the session.
func (d *Device) poll(ctx context.Context, cn *conn, nodes []*ua.NodeID, nodeErrs []error, start time.Time) (bool, error) {
	var ids []*ua.ReadValueID
	var which []int // ids[j] reads tag which[j]
	for i, n := range nodes {
		if n != nil {
			ids = append(ids, &ua.ReadValueID{NodeID: n, AttributeID: ua.AttributeIDValue})
			which = append(which, i)
		}
	}
	tick := time.NewTicker(d.PollInterval.D())
	defer tick.Stop()
	online := false
	for {
		t0 := time.Now()
		for s := 0; s < len(ids); s += cn.maxRead {
			e := min(s+cn.maxRead, len(ids))
			rctx, cancel := context.WithTimeout(ctx, cn.timeout)
			res, err := cn.c.Read(rctx, &ua.ReadRequest{NodesToRead: ids[s:e], TimestampsToReturn: ua.TimestampsToReturnBoth})
			cancel()
			d.count(func(st *Stats) { st.ReadRequests++ })
			if err == nil && len(res.Results) != e-s {
				err = fmt.Errorf("the server answered %d results for %d nodes", len(res.Results), e-s)
			}
			if err != nil {
				return online, fmt.Errorf("read %d nodes: %w", e-s, err)
			}
			now := time.Now().UnixMilli()
			for j, dv := range res.Results {
				fill(&d.samples[which[s+j]], dv, now)
			}
		}
		if !online {
			online = true
			d.online(start)
			d.markBad(nodeErrs)
		}
		for i, err := range nodeErrs {
			if err != nil {
				d.samples[i].TimeMs = t0.UnixMilli()
			}
		}
		d.count(func(st *Stats) { st.Values += uint64(len(ids)) })
		d.deliver(d.samples)
		if d.log.Enabled(ctx, slog.LevelDebug) {
			d.log.Debug("poll done", "nodes", len(ids), "reads", (len(ids)+cn.maxRead-1)/max(cn.maxRead, 1), "took", time.Since(t0))
		}
		select {
		case <-tick.C:
		case <-ctx.Done():
			return online, ctx.Err()
		case st := <-cn.states:
			if st == opcua.Closed || st == opcua.Disconnected {
				return online, fmt.Errorf("connection lost (%s)", st)
			}
		}
	}
}

// subscribe creates one subscription with a monitored item per tag (in
// calls of at most maxItems) and delivers what the server publishes. An
// item the server refuses marks its tag bad; the others run. A keepalive
// Read every Keepalive notices a dead connection the publish loop would
// not report.
func (d *Device) subscribe(ctx context.Context, cn *conn, nodes []*ua.NodeID, nodeErrs []error, start time.Time) (bool, error) {
	notes := make(chan *opcua.PublishNotificationData, 256)
	sctx, cancel := context.WithTimeout(ctx, cn.timeout)
	sub, err := cn.c.Subscribe(sctx, &opcua.SubscriptionParameters{Interval: d.PublishingInterval.D()}, notes)
	cancel()
	if err != nil {
		return false, fmt.Errorf("create subscription: %w", err)
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
		res, err := sub.Monitor(mctx, ua.TimestampsToReturnBoth, reqs[s:e]...)
		cancel()
		d.count(func(st *Stats) { st.MonitorRequests++ })
		if err == nil && res.ResponseHeader != nil && res.ResponseHeader.ServiceResult != ua.StatusOK {
			err = res.ResponseHeader.ServiceResult
		}
		if err == nil && len(res.Results) != e-s {
			err = fmt.Errorf("the server answered %d results for %d items", len(res.Results), e-s)
		}
		if err != nil {
			return false, fmt.Errorf("create %d monitored items: %w", e-s, err)
		}
		for j, r := range res.Results {
			if r.StatusCode != ua.StatusOK {
				nodeErrs[which[s+j]] = fmt.Errorf("monitor: %w", statusErr(r.StatusCode))
			}
		}
	}
	d.online(start)
	d.markBad(nodeErrs)

	keep := time.NewTicker(d.Keepalive.D())
	defer keep.Stop()
	for {
		select {
		case <-ctx.Done():
			return true, ctx.Err()
		case st := <-cn.states:
			if st == opcua.Closed || st == opcua.Disconnected {
				return true, fmt.Errorf("connection lost (%s)", st)
			}
		case n := <-notes:
			if n.Error != nil {
				return true, fmt.Errorf("subscription: %w", n.Error)
			}
			d.notification(n.Value)
		case <-keep.C:
			if err := cn.alive(ctx); err != nil {
				return true, fmt.Errorf("keepalive: %w", err)
			}
		}
	}
}

// notification delivers the changed samples of one publish.
func (d *Device) notification(v any) {
	switch n := v.(type) {
	case *ua.DataChangeNotification:
		now := time.Now().UnixMilli()
		d.batch = d.batch[:0]
		for _, item := range n.MonitoredItems {
			if item == nil || int(item.ClientHandle) >= len(d.samples) {
				continue
			}
			s := &d.samples[item.ClientHandle]
			fill(s, item.Value, now)
			d.batch = append(d.batch, *s)
		}
		d.count(func(st *Stats) { st.Values += uint64(len(d.batch)) })
		if len(d.batch) > 0 {
			d.deliver(d.batch)
		}
	case *ua.StatusChangeNotification:
		// The server ended the subscription (e.g. BadTimeout): the keepalive or
		// the publish loop reports it; log it for the operator.
		d.log.Warn("subscription status changed", "status", statusText(n.Status))
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

// allBad marks every tag bad because of err and delivers that.
func (d *Device) allBad(err error) {
	now := time.Now().UnixMilli()
	for i := range d.samples {
		d.samples[i] = mapping.Sample{Tag: d.specs[i], Quality: mapping.Bad, TimeMs: now, Err: err}
	}
	d.deliver(d.samples)
}

func (d *Device) deliver(samples []mapping.Sample) { d.guard.Samples(samples) }

func (d *Device) setState(s southbound.State, err error) {
	d.state = s
	d.guard.State(s, err)
}
