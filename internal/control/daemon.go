package control

import (
	"fmt"
	"log/slog"
	"path/filepath"
	"sync"

	"github.com/edged-gw/edged/configs"
	"github.com/edged-gw/edged/internal/gateway"
	"github.com/edged-gw/edged/mapping"
	"github.com/edged-gw/edged/northbound"
	"github.com/edged-gw/edged/southbound"
	"github.com/edged-gw/edged/southbound/door"
)

// AuditDir is where the door audits, under the data dir.
func AuditDir(dataDir string) string { return filepath.Join(dataDir, "audit") }

// DoorOptions are the door's options for a config. Of the sources beyond
// the CLI, the console may write when [console] writes = true, for a
// logged-in user; local MQTT clients when [broker] commands = true; an
// upstream when its commands = true.
func DoorOptions(cfg *configs.Config, log *slog.Logger) door.Options {
	consoleWrites, localCommands := cfg.Console.Writes, cfg.Broker.Commands
	upstreams := map[string]bool{}
	for _, u := range cfg.Upstreams {
		upstreams[u.Name] = u.Commands
	}
	allow := func(s door.Source) bool {
		switch s.Kind {
		case door.FromConsole:
			return consoleWrites && s.User != ""
		case door.FromLocal:
			return localCommands
		case door.FromUpstream, door.FromSparkplug: // a Sparkplug DCMD names its upstream
			return upstreams[s.Name]
		}
		return false
	}
	return door.Options{Writes: cfg.Gateway.Writes, Allow: allow, AuditDir: AuditDir(cfg.Gateway.DataDir), Logger: log}
}

// Publish publishes one message on the local broker as edged
// (northbound.Broker.Publish): the upstreams' subscriptions see it.
type Publish func(topic string, payload []byte, retain bool, qos byte) error

// AttachAudit publishes every write attempt's audit line on [gateway]
// audit_topic (QoS 1, not retained) through pub, from now on and across
// reloads; without audit_topic nothing is published.
func (d *Daemon) AttachAudit(cfg *configs.Config, pub Publish, log *slog.Logger) {
	if d == nil {
		return
	}
	d.cmu.Lock()
	d.publish = pub
	d.cmu.Unlock()
	d.Reload(cfg, log)
}

// options are the door's options for cfg, with the audit topic.
func (d *Daemon) options(cfg *configs.Config, log *slog.Logger) door.Options {
	o := DoorOptions(cfg, log)
	d.cmu.Lock()
	pub := d.publish
	d.cmu.Unlock()
	if pub == nil || cfg.Gateway.AuditTopic == "" {
		return o
	}
	t, err := mapping.ParseTemplate(cfg.Gateway.AuditTopic)
	if err != nil {
		if log != nil {
			log.Error("audit_topic: audit lines are not published", "err", err)
		}
		return o
	}
	topic := t.Render(cfg.Gateway.TopicPrefix, cfg.Gateway.ID, "", "")
	o.OnAudit = func(line []byte) {
		if err := pub(topic, line, false, 1); err != nil && log != nil {
			log.Warn("audit line not published", "topic", topic, "err", err)
		}
	}
	return o
}

// Daemon is the running daemon's write door and its control socket.
type Daemon struct {
	Door   *door.Door
	Server *Server // nil when the socket could not be made (logged)
	// Commands routes the /set commands of the local broker and the
	// upstreams (nil until the first is attached).
	Commands    *Commands
	cmu         sync.Mutex
	localBroker LocalBroker
	localFilter string
	publish     Publish // the audit topic's publisher (AttachAudit)
	gw          *gateway.Gateway
	spw         sparkplugWrites // DCMD writes (sparkplug.go)
	spClosed    bool            // guarded by cmu
}

// LocalBroker is what the daemon needs of the embedded broker for
// commands (northbound.Broker).
type LocalBroker interface {
	SubscribeCommands(filter string, id int, fn func(northbound.LocalCommand)) error
	Unsubscribe(filter string, id int) error
	PublishReply(topic string, payload, correlation []byte) error
}

// refusingBroker tells of the command-topic publishes it refused
// (northbound.Broker).
type refusingBroker interface {
	OnRefusedCommand(fn func(c northbound.LocalCommand, why string))
}

// commandSubID is the in-process subscription id of the command filter.
const commandSubID = 900

// AttachLocal subscribes to the gateway's command topics on the local
// broker. It subscribes whatever the switches say: the broker's ACL lets
// a /set through only with [broker] commands = true, and the door refuses
// (and audits) what [gateway] writes or a reload turned off since.
func (d *Daemon) AttachLocal(cfg *configs.Config, b LocalBroker, log *slog.Logger) error {
	if d == nil || b == nil {
		return nil
	}
	c := d.commands(cfg, log)
	topics, err := NewCommandTopics(cfg.Gateway.CommandTopicTemplate, cfg.Gateway.TopicPrefix, cfg.Gateway.ID)
	if err != nil {
		return err
	}
	filter := topics.Filter()
	err = b.SubscribeCommands(filter, commandSubID, func(m northbound.LocalCommand) {
		c.Handle(Command{Topic: m.Topic, Payload: m.Payload, Source: door.Source{Kind: door.FromLocal, Name: m.ClientID, User: m.Username},
			ResponseTopic: m.ResponseTopic, CorrelationData: m.CorrelationData, MessageExpiry: m.MessageExpiry, Received: m.Received,
			Topics: topics, Reply: b.PublishReply})
	})
	if err != nil {
		return fmt.Errorf("subscribe to the command topics %s: %w", filter, err)
	}
	if rb, ok := b.(refusingBroker); ok {
		// What the broker refused on a command topic is audited and
		// answered denied too. The reply goes to the command topic +
		// /reply only: a client that may not command must not choose
		// where edged publishes (its MQTT 5 QoS 1 PUBACK says 0x87).
		rb.OnRefusedCommand(func(m northbound.LocalCommand, why string) {
			c.Handle(Command{Topic: m.Topic, Payload: m.Payload, Source: door.Source{Kind: door.FromLocal, Name: m.ClientID, User: m.Username},
				MessageExpiry: m.MessageExpiry, Received: m.Received, Topics: topics, Reply: b.PublishReply,
				Refused: door.Denied, RefusedMsg: "the local broker refused it: " + why})
		})
	}
	d.localBroker, d.localFilter = b, filter
	return nil
}

// commands returns the daemon's command router, made at first use.
func (d *Daemon) commands(cfg *configs.Config, log *slog.Logger) *Commands {
	d.cmu.Lock()
	defer d.cmu.Unlock()
	if d.Commands == nil {
		d.Commands = NewCommands(d.Door, GatewayDevices{GW: d.gw}, cfg.Gateway.TopicPrefix, cfg.Gateway.ID, nil, log)
	}
	return d.Commands
}

// UpstreamCommand hands a command from the cloud broker of upstream name
// to the door; topics are that upstream's command topics (under its
// topic_prefix) and reply publishes on its session. Safe on a nil Daemon
// (dry runs): the command is dropped.
func (d *Daemon) UpstreamCommand(cfg *configs.Config, log *slog.Logger, name string, topics *CommandTopics, m northbound.CloudCommand, reply ReplyFunc) {
	if d == nil {
		return
	}
	d.commands(cfg, log).Handle(Command{Topic: m.Topic, Payload: m.Payload, Source: door.Source{Kind: door.FromUpstream, Name: name},
		ResponseTopic: m.ResponseTopic, CorrelationData: m.CorrelationData, MessageExpiry: m.MessageExpiry, Received: m.Received,
		Topics: topics, Reply: reply})
}

// Start makes the door over the gateway's devices and serves it on the
// control socket under the data dir. A socket that cannot be made is
// logged as an error and leaves the daemon running: `edged write` then
// says no daemon answers.
func Start(cfg *configs.Config, gw *gateway.Gateway, log *slog.Logger) *Daemon {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	d := &Daemon{Door: door.New(GatewayDevices{GW: gw}, DoorOptions(cfg, log)), gw: gw}
	srv, err := Listen(SocketPath(cfg.Gateway.DataDir), d.Door, log)
	if err != nil {
		log.Error("edged write cannot reach this daemon", "err", err)
		return d
	}
	d.Server = srv
	log.Info("control socket ready", "path", srv.Path())
	return d
}

// Reload applies a reloaded config's write settings.
func (d *Daemon) Reload(cfg *configs.Config, log *slog.Logger) {
	if d == nil {
		return
	}
	d.Door.Configure(d.options(cfg, log))
}

// Close closes the socket and the audit file.
func (d *Daemon) Close() error {
	if d == nil {
		return nil
	}
	var err error
	if d.localBroker != nil {
		_ = d.localBroker.Unsubscribe(d.localFilter, commandSubID)
	}
	d.cmu.Lock()
	if d.Commands != nil {
		d.Commands.Close()
	}
	d.cmu.Unlock()
	d.closeSparkplug()
	if d.Server != nil {
		err = d.Server.Close()
	}
	if cerr := d.Door.Close(); err == nil {
		err = cerr
	}
	return err
}

// GatewayDevices shows the gateway's running devices to the door.
type GatewayDevices struct{ GW *gateway.Gateway }

// Target implements door.Devices.
func (g GatewayDevices) Target(device, tag string) (door.Target, error) {
	v, ok := g.view(device)
	if !ok {
		return door.Target{}, fmt.Errorf("no device %q runs in this gateway", device)
	}
	var spec *mapping.Spec
	if v.Source != nil {
		for _, s := range v.Source.Tags() {
			if s.Name == tag {
				spec = s
			}
		}
	}
	if spec == nil {
		return door.Target{}, fmt.Errorf("device %q has no tag %q", device, tag)
	}
	t := door.Target{Spec: spec, State: v.State}
	if w, ok := v.Source.(southbound.Writer); ok {
		t.Writer = w
	}
	if r, ok := v.Source.(southbound.TagReader); ok {
		t.Reader = r
	}
	t.Last = func() (mapping.Sample, uint64) {
		v, ok := g.view(device)
		if !ok {
			return mapping.Sample{}, 0
		}
		for _, tv := range v.Tags {
			if tv.Name == tag {
				return tv.Sample, v.Polls
			}
		}
		return mapping.Sample{}, v.Polls
	}
	return t, nil
}

func (g GatewayDevices) view(device string) (gateway.DeviceView, bool) {
	for _, v := range g.GW.Snapshot() {
		if v.Name == device {
			return v, true
		}
	}
	return gateway.DeviceView{}, false
}
