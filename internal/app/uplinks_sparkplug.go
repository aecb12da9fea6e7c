package app

import (
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/edged-gw/edged/buffer"
	"github.com/edged-gw/edged/configs"
	"github.com/edged-gw/edged/internal/control"
	"github.com/edged-gw/edged/mapping"
	"github.com/edged-gw/edged/mapping/sparkplug"
	"github.com/edged-gw/edged/northbound"
	"github.com/edged-gw/edged/southbound"
)

// newSparkplugUplink makes the uplink of an upstream with format =
// "sparkplug" (MQTT 5): a Sparkplug session over the configured devices,
// its NCMD/DCMD/STATE subscriptions, and DCMD writes into ctl's door when
// commands = true.
func newSparkplugUplink(cfg *configs.Config, uc *configs.Upstream, pc northbound.PublisherConfig, log *slog.Logger, open func() (*buffer.Queue, error), ctl *control.Daemon) (*northbound.Uplink, error) {
	var devs []sparkplug.Device
	for _, d := range cfg.Devices {
		drv, ok := d.Settings.(southbound.Driver)
		if !ok {
			return nil, fmt.Errorf("device %q: driver %q does not implement southbound.Driver", d.Name, d.Driver)
		}
		devs = append(devs, sparkplug.Device{Name: d.Name, Tags: drv.Tags()})
	}
	bdFile := filepath.Join(cfg.Gateway.DataDir, "sparkplug", uc.Name+".bdseq")
	sess, err := sparkplug.New(sparkplug.Config{Group: uc.GroupID, Node: uc.EdgeNodeID, Devices: devs,
		BdSeq: nextBdSeq(bdFile), Now: func() int64 { return time.Now().UnixMilli() }})
	if err != nil {
		return nil, err
	}
	so := &northbound.SparkplugOptions{Session: sess,
		OnError: func(topic string, err error) {
			log.Warn("sparkplug command not understood", "topic", topic, "err", err)
		},
		SaveBdSeq: func(bd uint8) {
			err := os.MkdirAll(filepath.Dir(bdFile), 0o700)
			if err == nil {
				err = os.WriteFile(bdFile, []byte(strconv.Itoa(int(bd))+"\n"), 0o600)
			}
			if err != nil {
				log.Warn("sparkplug bdSeq not saved: the next start begins at 0", "upstream", uc.Name, "err", err)
			}
		}}
	if uc.PrimaryHost != "" {
		if so.PrimaryHost, err = sparkplug.NewPrimaryHost(uc.PrimaryHost); err != nil {
			return nil, err
		}
	}
	if uc.Commands {
		so.OnWrites = func(topic string, ws []sparkplug.Write, err error) {
			ctl.SparkplugWrites(log.With("upstream", uc.Name), uc.Name, topic, ws)
		}
	}
	var u *northbound.Uplink // set before Start: the publisher calls it only once connected
	pc.CommandFilter, pc.OnCommand, pc.WillTopic, pc.WillPayload = "", nil, "", nil
	pc.Subscriptions = northbound.SparkplugFilters(uc.GroupID, uc.EdgeNodeID, uc.PrimaryHost, uc.Commands)
	pc.OnMessage = func(topic string, payload []byte, retained bool) { u.SparkplugMessage(topic, payload, retained) }
	pub := northbound.NewMQTT5(pc)
	q, err := open()
	if err != nil {
		return nil, err
	}
	u = northbound.NewUplink(northbound.UplinkOptions{
		Name: uc.Name, Publisher: pub, Queue: q, Sparkplug: so,
		ReplayRate: float64(uc.ReplayRate), ReplayOrder: northbound.ReplayOrder(uc.ReplayOrder), Logger: log,
		AckTimeout: uc.AckTimeout.D(), BackoffMax: uc.ReconnectMax.D(),
	})
	return u, nil
}

// nextBdSeq is the bdSeq after the one saved in path (0 when none).
func nextBdSeq(path string) uint8 {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0
	}
	n, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || n < 0 || n > 255 {
		return 0
	}
	return uint8(n + 1) // 255 wraps to 0
}

// sparkplugTap hands the gateway's samples and device states to the
// running Sparkplug uplinks.
type sparkplugTap struct{ set *northbound.UplinkSet }

func (t sparkplugTap) TapSamples(device string, all, passed []mapping.Sample) {
	t.set.Each(func(u *northbound.Uplink) {
		if u.IsSparkplug() {
			u.SparkplugSamples(device, all, passed)
		}
	})
}

func (t sparkplugTap) Active() bool {
	active := false
	t.set.Each(func(u *northbound.Uplink) { active = active || u.IsSparkplug() })
	return active
}

func (t sparkplugTap) TapState(device string, online bool) {
	t.set.Each(func(u *northbound.Uplink) {
		if u.IsSparkplug() {
			u.SparkplugState(device, online)
		}
	})
}

// sparkplugFingerprint is, for a Sparkplug upstream, the devices and tags
// its session is made of (their births and aliases): a reload that changes
// them restarts the uplink, which births the new set. "" otherwise.
func sparkplugFingerprint(cfg *configs.Config, uc *configs.Upstream) string {
	if uc.Format != configs.FormatSparkplug {
		return ""
	}
	var b strings.Builder
	for _, d := range cfg.Devices {
		b.WriteString("/" + d.Name + "=" + d.Fingerprint)
	}
	return b.String()
}
