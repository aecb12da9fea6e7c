package app

import (
	"time"

	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"

	"github.com/edged-gw/edged/buffer"
	"github.com/edged-gw/edged/configs"
	"github.com/edged-gw/edged/internal/control"
	"github.com/edged-gw/edged/northbound"
)

// uplinkSubscriptionBase numbers the uplinks' in-process subscriptions.
const uplinkSubscriptionBase = 1000

// uplinkSlot is one configured upstream and the uplink running it.
type uplinkSlot struct {
	cfg   *configs.Upstream
	fp    string // uplinkFingerprint of cfg
	subID int    // the id of u's subscriptions on the local broker
	u     *northbound.Uplink
	err   error // why u is nil: it failed to start on a reload
}

// uplinkFingerprint changes whenever anything the uplink is made from
// changes: its [[upstream]] table, its certificate files, and the gateway
// settings that shape its topics.
func uplinkFingerprint(cfg *configs.Config, uc *configs.Upstream) string {
	return uc.Fingerprint() + "/" + cfg.Gateway.TopicPrefix + "/" + cfg.Gateway.ID + "/" + cfg.Gateway.CommandTopicTemplate
}

// startUplinks opens each upstream's buffer, attaches it to the local
// broker and starts connecting. Call it after the broker started and
// before the gateway publishes, so nothing published is missed. On error,
// the uplinks already started are stopped.
func startUplinks(cfg *configs.Config, broker *northbound.Broker, log *slog.Logger, ctl *control.Daemon) ([]uplinkSlot, error) {
	var slots []uplinkSlot
	fail := func(err error) ([]uplinkSlot, error) {
		_ = stopUplinks(slots)
		return nil, err
	}
	for i, uc := range cfg.Upstreams {
		u, err := newUplink(cfg, uc, log, openBuffer(uc, log), ctl)
		if errors.Is(err, buffer.ErrCannotOpen) {
			// A buffer that cannot be opened (a read-only SD card) stops
			// this upstream, not the gateway: /readyz lists it.
			log.Error("upstream not started: its buffer cannot be opened", "upstream", uc.Name, "err", err)
			slots = append(slots, uplinkSlot{cfg: uc, fp: uplinkFingerprint(cfg, uc), subID: uplinkSubscriptionBase + i, err: err})
			continue
		}
		if err != nil {
			return fail(fmt.Errorf("upstream %q: %w", uc.Name, err))
		}
		slot := uplinkSlot{cfg: uc, fp: uplinkFingerprint(cfg, uc), subID: uplinkSubscriptionBase + i, u: u}
		slots = append(slots, slot)
		if err := errors.Join(u.Attach(broker.Subscribe, slot.subID), u.AttachForward(broker.SubscribeClients, slot.subID)); err != nil {
			return fail(fmt.Errorf("upstream %q: subscribe to the local broker: %w", uc.Name, err))
		}
		u.Start()
	}
	return slots, nil
}

// openBuffer opens the upstream's buffer when newUplink asks for it.
func openBuffer(uc *configs.Upstream, log *slog.Logger) func() (*buffer.Queue, error) {
	return func() (*buffer.Queue, error) {
		sync := buffer.SyncInterval
		if uc.Sync == "always" {
			sync = buffer.SyncAlways
		}
		var delay time.Duration // 0: the buffer's default
		if uc.WriteDelay != nil {
			delay = uc.WriteDelay.D()
			if delay == 0 {
				delay = -1 // write at once
			}
		}
		return buffer.Open(buffer.Options{
			Dir: uc.BufferDir, MaxBytes: int64(uc.MaxBytes), MaxAge: uc.MaxAge.D(),
			Sync: sync, SyncInterval: uc.SyncInterval.D(), WriteDelay: delay, Logger: log.With("upstream", uc.Name),
		})
	}
}

// reuseBuffer hands q to newUplink.
func reuseBuffer(q *buffer.Queue) func() (*buffer.Queue, error) {
	return func() (*buffer.Queue, error) { return q, nil }
}

// errDryRun stops newUplink before it opens a buffer: checkUplink uses it
// to find what would fail without touching the running uplink's buffer.
var errDryRun = errors.New("dry run")

// checkUplink makes everything of uc's uplink except its buffer (URL,
// TLS files, protocol) and reports what fails.
func checkUplink(cfg *configs.Config, uc *configs.Upstream) error {
	_, err := newUplink(cfg, uc, slog.New(slog.DiscardHandler), func() (*buffer.Queue, error) { return nil, errDryRun }, nil)
	if errors.Is(err, errDryRun) {
		return nil
	}
	return err
}

// newUplink makes the uplink of uc on the buffer that open returns (called
// last, once everything else is made). With commands = true its session
// subscribes to the command topics and hands them to ctl's door.
func newUplink(cfg *configs.Config, uc *configs.Upstream, log *slog.Logger, open func() (*buffer.Queue, error), ctl *control.Daemon) (*northbound.Uplink, error) {
	base := log // the uplink adds upstream=name itself
	log = log.With("upstream", uc.Name)
	pu, err := url.Parse(uc.URL)
	if err != nil {
		return nil, fmt.Errorf("url: %w", err)
	}
	pc := northbound.PublisherConfig{
		Name: uc.Name, URL: pu, ClientID: uc.ClientID, Username: uc.Username, Password: []byte(uc.Password),
		KeepAlive: uc.KeepAlive.D(), Window: uc.MaxInflight,
	}
	localPrefix := cfg.Gateway.TopicPrefix + "/"
	remotePrefix := ""
	statusPrefix := cfg.Gateway.TopicPrefix
	if uc.TopicPrefix != "" {
		remotePrefix, statusPrefix = uc.TopicPrefix+"/", uc.TopicPrefix
	}
	localStatus := cfg.Gateway.TopicPrefix + "/" + cfg.Gateway.ID + "/status"
	pc.WillTopic, pc.WillPayload = statusPrefix+"/"+cfg.Gateway.ID+"/status", []byte("offline")
	if pu.Scheme == "mqtts" || pu.Scheme == "wss" { // wss: MQTT over WebSocket over TLS
		pc.TLS, err = northbound.NewTLSConfig(northbound.TLSOptions{
			CAFile: uc.CAFile, CertFile: uc.CertFile, KeyFile: uc.KeyFile, ServerName: uc.ServerName,
			ALPN: uc.ALPN, InsecureSkipVerify: uc.InsecureSkipVerify,
		}, pu.Hostname())
		if err != nil {
			return nil, err
		}
		if uc.InsecureSkipVerify {
			log.Warn("insecure_skip_verify = true: the cloud broker's certificate is NOT checked; anyone on the path can read and alter the data")
		}
	} else {
		log.Warn("insecure_plaintext = true: data and password cross the network unencrypted", "url", pu.Redacted())
	}
	var pub northbound.Publisher
	var replier replyPublisher // set once pub is made, before it connects
	if uc.Commands {
		topics, err := control.NewCommandTopics(cfg.Gateway.CommandTopicTemplate, statusPrefix, cfg.Gateway.ID)
		if err != nil {
			return nil, err
		}
		pc.CommandFilter = topics.Filter()
		reply := func(topic string, payload, corr []byte) error { return replier.Reply(topic, payload, corr) }
		pc.OnCommand = func(m northbound.CloudCommand) { ctl.UpstreamCommand(cfg, log, uc.Name, topics, m, reply) }
		pc.OnSubscribeRefused = func(err error) {
			log.Error("commands from this upstream are off for this session", "err", err)
		}
	}
	switch uc.Protocol {
	case "5":
		pub = northbound.NewMQTT5(pc)
	case "3.1.1":
		pub = northbound.NewMQTT311(pc)
	default:
		return nil, fmt.Errorf("protocol %q is not available", uc.Protocol)
	}
	if uc.Commands {
		var ok bool
		if replier, ok = pub.(replyPublisher); !ok {
			return nil, fmt.Errorf("commands = true: protocol %q cannot reply to commands", uc.Protocol)
		}
	}
	q, err := open()
	if err != nil {
		return nil, err
	}
	return northbound.NewUplink(northbound.UplinkOptions{
		Name: uc.Name, Publisher: pub, Queue: q, Filters: uc.Topics, Forward: uc.Forward,
		LocalPrefix: localPrefix, RemotePrefix: remotePrefix,
		StatusTopic: pc.WillTopic, Skip: []string{localStatus},
		ReplayRate: float64(uc.ReplayRate), ReplayOrder: northbound.ReplayOrder(uc.ReplayOrder), Logger: base,
		AckTimeout: uc.AckTimeout.D(), BackoffMax: uc.ReconnectMax.D(),
	}), nil
}

// replyPublisher publishes command replies on an upstream's session (both
// publishers).
type replyPublisher interface {
	Reply(topic string, payload, correlation []byte) error
}

// stopUplinks stops every uplink (announcing offline, closing buffers).
func stopUplinks(slots []uplinkSlot) error {
	ctx, cancel := context.WithTimeout(context.Background(), StopTimeout/2)
	defer cancel()
	var errs []error
	for _, s := range slots {
		if s.u != nil {
			errs = append(errs, s.u.Stop(ctx))
		}
	}
	return errors.Join(errs...)
}

// UplinkReloadReport says what a reload did to the uplinks, by upstream
// name.
type UplinkReloadReport struct {
	Started, Restarted, Unchanged, Stopped []string
	// Failed are upstreams that could not start; they are retried on the
	// next reload and listed by /readyz meanwhile.
	Failed []string
}

// planUplinks checks, before anything changes, that every new or changed
// upstream of cfg can be made (its buffer aside).
func (r *Runtime) planUplinks(cfg *configs.Config) error {
	old := map[string]uplinkSlot{}
	for _, s := range *r.uplinks.Load() {
		old[s.cfg.Name] = s
	}
	var errs []error
	for _, uc := range cfg.Upstreams {
		if s, ok := old[uc.Name]; ok && s.u != nil && s.fp == uplinkFingerprint(cfg, uc) {
			continue
		}
		if err := checkUplink(cfg, uc); err != nil {
			errs = append(errs, fmt.Errorf("upstream %q: %w", uc.Name, err))
		}
	}
	return errors.Join(errs...)
}

// reloadUplinks applies cfg's upstreams: unchanged uplinks keep running
// untouched; a changed one hands its open buffer to its successor, which
// subscribes before the old one unsubscribes, so every message published
// during the switch is buffered and what was not acknowledged is sent
// again (a message published in that instant may be buffered twice). When
// the buffer's own settings (folder, caps, sync) change, the buffer is
// closed and reopened instead; messages published while it reopens are
// dropped and counted. A removed uplink stops and its buffer stays on
// disk; an added one starts. The caller holds r.upMu.
func (r *Runtime) reloadUplinks(ctx context.Context, cfg *configs.Config) UplinkReloadReport {
	var rep UplinkReloadReport
	old := map[string]uplinkSlot{}
	for _, s := range *r.uplinks.Load() {
		old[s.cfg.Name] = s
	}
	next := make([]uplinkSlot, 0, len(cfg.Upstreams))
	kept := map[string]bool{}
	for _, uc := range cfg.Upstreams {
		kept[uc.Name] = true
	}
	// Removed uplinks go first: a renamed upstream may take over their
	// buffer folder.
	for _, s := range *r.uplinks.Load() {
		if !kept[s.cfg.Name] {
			r.detach(s)
			if s.u != nil {
				if err := s.u.Stop(ctx); err != nil {
					r.log.Warn("stop upstream", "upstream", s.cfg.Name, "err", err)
				}
			}
			rep.Stopped = append(rep.Stopped, s.cfg.Name)
		}
	}
	for _, uc := range cfg.Upstreams {
		fp := uplinkFingerprint(cfg, uc)
		s, had := old[uc.Name]
		if had && s.u != nil && s.fp == fp {
			s.cfg = uc
			next = append(next, s)
			rep.Unchanged = append(rep.Unchanged, uc.Name)
			continue
		}
		ns := uplinkSlot{cfg: uc, fp: fp, subID: r.nextSubID}
		r.nextSubID++
		open := openBuffer(uc, r.log)
		var handed *buffer.Queue
		if had && s.u != nil {
			if s.cfg.SameBuffer(uc) {
				q, err := s.u.Handover(ctx)
				if err != nil {
					r.log.Warn("disconnect upstream", "upstream", uc.Name, "err", err)
				}
				handed, open = q, reuseBuffer(q)
			} else {
				r.detach(s)
				if err := s.u.Stop(ctx); err != nil {
					r.log.Warn("stop upstream", "upstream", uc.Name, "err", err)
				}
			}
		}
		ns.u, ns.err = newUplink(cfg, uc, r.log, open, r.Control)
		if ns.err != nil && handed != nil {
			r.detach(s)
			_ = handed.Close() // not taken: un-acknowledged messages stay on disk
		}
		if ns.err == nil {
			ns.err = errors.Join(ns.u.Attach(r.Broker.Subscribe, ns.subID), ns.u.AttachForward(r.Broker.SubscribeClients, ns.subID))
			if ns.err != nil {
				ns.err = fmt.Errorf("subscribe to the local broker: %w", ns.err)
				r.detach(ns)
				r.detach(s)
				_ = ns.u.Stop(ctx) // closes the buffer; un-acknowledged messages stay on disk
				ns.u = nil
			}
		}
		if had && s.u != nil {
			r.detach(s) // the successor is subscribed (or the buffer is closed)
		}
		switch {
		case ns.err != nil:
			r.log.Error("upstream not started", "upstream", uc.Name, "err", ns.err)
			rep.Failed = append(rep.Failed, uc.Name)
		case had:
			ns.u.Start()
			rep.Restarted = append(rep.Restarted, uc.Name)
		default:
			ns.u.Start()
			rep.Started = append(rep.Started, uc.Name)
		}
		next = append(next, ns)
	}
	r.uplinks.Store(&next)
	return rep
}

// detach removes s's subscriptions from the local broker.
func (r *Runtime) detach(s uplinkSlot) {
	if s.u == nil {
		return
	}
	for _, f := range s.u.Filters() {
		_ = r.Broker.Unsubscribe(f, s.subID)
	}
}
