package app

import (
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"time"

	"github.com/edged-gw/edged/buffer"
	"github.com/edged-gw/edged/configs"
	"github.com/edged-gw/edged/internal/control"
	"github.com/edged-gw/edged/mapping"
	"github.com/edged-gw/edged/northbound"
)

// uplinkSpecs says what the uplink set needs of cfg's upstreams; the
// uplinks themselves are made by newUplink.
func uplinkSpecs(cfg *configs.Config, log *slog.Logger, ctl *control.Daemon) []northbound.UplinkSpec {
	specs := make([]northbound.UplinkSpec, 0, len(cfg.Upstreams))
	for _, uc := range cfg.Upstreams {
		specs = append(specs, northbound.UplinkSpec{
			Name: uc.Name, Fingerprint: uplinkFingerprint(cfg, uc), Buffer: uc.BufferKey(),
			Open: openBuffer(uc, log),
			New: func(open func() (*buffer.Queue, error)) (*northbound.Uplink, error) {
				return newUplink(cfg, uc, log, open, ctl)
			},
		})
	}
	return specs
}

// uplinkFingerprint changes whenever anything the uplink is made from
// changes: its [[upstream]] table, its certificate files, and the gateway
// settings that shape its topics.
func uplinkFingerprint(cfg *configs.Config, uc *configs.Upstream) string {
	return uc.Fingerprint() + "/" + cfg.Gateway.TopicPrefix + "/" + cfg.Gateway.ID + "/" + cfg.Gateway.CommandTopicTemplate + sparkplugFingerprint(cfg, uc)
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

// checkUplinks is the uplink set's Plan check for cfg: checkUplink on the
// upstream a spec was made from.
func checkUplinks(cfg *configs.Config) func(northbound.UplinkSpec) error {
	return func(spec northbound.UplinkSpec) error {
		for _, uc := range cfg.Upstreams {
			if uc.Name == spec.Name {
				return checkUplink(cfg, uc)
			}
		}
		return fmt.Errorf("no upstream %q in the config", spec.Name)
	}
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
	if uc.Format == configs.FormatSparkplug {
		return newSparkplugUplink(cfg, uc, pc, base, open, ctl)
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
	// A value upstream of a JSON gateway turns each tag's message into its
	// bare value, as [gateway] format = "value" renders it.
	var rewrite func([]byte) ([]byte, bool)
	if uc.Format == configs.FormatValue && cfg.Gateway.Format != configs.FormatValue {
		rewrite = mapping.ValuePayload
	}
	return northbound.NewUplink(northbound.UplinkOptions{
		Name: uc.Name, Publisher: pub, Queue: q, Filters: uc.Topics, Forward: uc.Forward,
		LocalPrefix: localPrefix, RemotePrefix: remotePrefix,
		StatusTopic: pc.WillTopic, Skip: []string{localStatus},
		ReplayRate: float64(uc.ReplayRate), ReplayOrder: northbound.ReplayOrder(uc.ReplayOrder), Logger: base,
		AckTimeout: uc.AckTimeout.D(), BackoffMax: uc.ReconnectMax.D(),
		Rewrite: rewrite, PlainPayloads: uc.Format == configs.FormatValue,
	}), nil
}

// replyPublisher publishes command replies on an upstream's session (both
// publishers).
type replyPublisher interface {
	Reply(topic string, payload, correlation []byte) error
}
