package control

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/edged-gw/edged/configs"
	"github.com/edged-gw/edged/mapping"
	"github.com/edged-gw/edged/southbound/door"
)

// Command is one MQTT command as a source (the local broker, an uplink)
// hands it over: the message and what its reply needs.
type Command struct {
	Topic   string
	Payload []byte
	Source  door.Source
	// ResponseTopic and CorrelationData are the MQTT 5 request properties;
	// without a ResponseTopic the reply goes to Topic + "/reply".
	ResponseTopic   string
	CorrelationData []byte
	// MessageExpiry is the MQTT 5 Message Expiry Interval as received (0:
	// none), counted from Received.
	MessageExpiry time.Duration
	Received      time.Time
	// Topics, when set, reads device and tag from Topic (the command topic
	// template of the topic space the command came from); else Base, when
	// set, replaces the Commands' "{prefix}/{gateway}/" for this command
	// (an upstream's topic_prefix). Reply is its reply function.
	Topics *CommandTopics
	Base   string
	Reply  ReplyFunc
	// Refused, when set, is the source's own refusal (the local broker's
	// rules refused the publish: denied), with RefusedMsg saying why; the
	// door audits and answers it without writing.
	Refused    door.Reason
	RefusedMsg string
}

// CommandTopics are the command topics of one topic space: the command
// topic template ([gateway] command_topic_template) rendered with that
// space's prefix and the gateway, {device} and {tag} left open.
type CommandTopics struct {
	levels      []string // literal levels; "" where device or tag goes
	device, tag int      // their levels
	filter      string
}

// Sentinels rendered in place of {device} and {tag}: a name cannot hold
// NUL (mapping.CheckTopicValue).
const deviceSentinel, tagSentinel = "\x00device", "\x00tag"

// NewCommandTopics renders tmpl (default
// "{prefix}/{gateway}/{device}/{tag}/set") for prefix and gateway; {device}
// and {tag} must each be a whole level (configs checks it at the line).
func NewCommandTopics(tmpl, prefix, gateway string) (*CommandTopics, error) {
	if tmpl == "" {
		tmpl = configs.DefaultCommandTopicTemplate
	}
	t, err := mapping.ParseTemplate(tmpl)
	if err != nil {
		return nil, fmt.Errorf("command_topic_template: %w", err)
	}
	ct := &CommandTopics{device: -1, tag: -1}
	filter := make([]string, 0, 8)
	for i, lv := range strings.Split(t.Render(prefix, gateway, deviceSentinel, tagSentinel), "/") {
		switch {
		case lv == deviceSentinel && ct.device < 0:
			ct.device, lv = i, ""
		case lv == tagSentinel && ct.tag < 0:
			ct.tag, lv = i, ""
		case strings.Contains(lv, "\x00"):
			return nil, fmt.Errorf("command_topic_template %q: {device} and {tag} must each be one whole level, once", tmpl)
		}
		ct.levels = append(ct.levels, lv)
		if lv == "" {
			filter = append(filter, "+")
		} else {
			filter = append(filter, lv)
		}
	}
	if ct.device < 0 || ct.tag < 0 {
		return nil, fmt.Errorf("command_topic_template %q: {device} and {tag} are required", tmpl)
	}
	ct.filter = strings.Join(filter, "/")
	return ct, nil
}

// Filter is the MQTT topic filter of every command topic.
func (ct *CommandTopics) Filter() string { return ct.filter }

// Parse reads device and tag from a command topic.
func (ct *CommandTopics) Parse(topic string) (device, tag string, ok bool) {
	n := 0
	for i := range len(ct.levels) {
		end := strings.IndexByte(topic[n:], '/')
		last := i == len(ct.levels)-1
		if (end < 0) != last {
			return "", "", false // fewer or more levels
		}
		lv := topic[n:]
		if !last {
			lv = topic[n : n+end]
		}
		switch i {
		case ct.device:
			device = lv
		case ct.tag:
			tag = lv
		default:
			if lv != ct.levels[i] {
				return "", "", false
			}
		}
		n += end + 1
	}
	return device, tag, device != "" && tag != ""
}

// Template describes the topics for errors.
func (ct *CommandTopics) String() string {
	out := make([]string, len(ct.levels))
	for i, lv := range ct.levels {
		switch i {
		case ct.device:
			lv = "{device}"
		case ct.tag:
			lv = "{tag}"
		}
		out[i] = lv
	}
	return strings.Join(out, "/")
}

// Reply is the answer published for a command.
type Reply struct {
	ID       string          `json:"id"`
	OK       bool            `json:"ok"`
	Reason   door.Reason     `json:"reason,omitempty"`
	Message  string          `json:"message,omitempty"`
	Old      json.RawMessage `json:"old,omitempty"`
	V        json.RawMessage `json:"v,omitempty"`
	ReadBack json.RawMessage `json:"readback,omitempty"`
	Ts       int64           `json:"ts"`
}

// ReplyFunc publishes a reply on topic with the request's correlation data.
type ReplyFunc func(topic string, payload, correlation []byte) error

// CommandTimeout bounds one command: the device's write and its read back.
const CommandTimeout = 10 * time.Second

// Queue bounds: commands wait for a worker; more are refused (too_soon).
const (
	commandQueue   = 64
	commandWorkers = 4
)

// Commands routes the /set commands of one topic space to the door and
// publishes the replies. Handle never blocks the caller (a broker or
// uplink goroutine): commands are queued to a few workers.
type Commands struct {
	door   *door.Door
	specs  door.Devices
	prefix string // "{prefix}/{gateway}/"
	reply  ReplyFunc
	log    *slog.Logger
	queue  chan Command
	wg     sync.WaitGroup

	mu     sync.RWMutex // guards closed and sending on queue
	closed bool
}

// CommandFilter is the topic filter of the command topics of a gateway.
func CommandFilter(prefix, gateway string) string { return prefix + "/" + gateway + "/+/+/set" }

// CommandBase is what precedes {device}/{tag}/set.
func CommandBase(prefix, gateway string) string { return prefix + "/" + gateway + "/" }

// NewCommands starts the workers; Close stops them.
func NewCommands(d *door.Door, devices door.Devices, prefix, gateway string, reply ReplyFunc, log *slog.Logger) *Commands {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	c := &Commands{door: d, specs: devices, prefix: prefix + "/" + gateway + "/", reply: reply, log: log, queue: make(chan Command, commandQueue)}
	for range commandWorkers {
		c.wg.Add(1)
		go func() {
			defer c.wg.Done()
			for cmd := range c.queue {
				c.run(cmd)
			}
		}()
	}
	return c
}

// Handle queues a command; a full queue refuses it at once (too_soon,
// audited).
func (c *Commands) Handle(cmd Command) {
	if cmd.Received.IsZero() {
		cmd.Received = time.Now()
	}
	c.mu.RLock()
	if c.closed {
		c.mu.RUnlock()
		return // the daemon is stopping: the sender gets no reply (QoS 1 redelivers to the next run, where it may be expired)
	}
	var full bool
	select {
	case c.queue <- cmd:
	default:
		full = true
	}
	c.mu.RUnlock()
	if full {
		c.answer(cmd, c.request(cmd, door.TooSoon, "the command queue is full (more than 64 commands waiting)"))
	}
}

// Close stops the workers after the queued commands are answered; later
// commands are dropped.
func (c *Commands) Close() {
	c.mu.Lock()
	if !c.closed {
		c.closed = true
		close(c.queue)
	}
	c.mu.Unlock()
	c.wg.Wait()
}

func (c *Commands) run(cmd Command) {
	c.answer(cmd, c.request(cmd, cmd.Refused, cmd.RefusedMsg))
}

// request reads the topic and payload into a door request; what cannot be
// read becomes the request's own refusal, so that the door still applies
// the switches first and audits it.
func (c *Commands) request(cmd Command, refused door.Reason, why string) door.Request {
	req := door.Request{Source: cmd.Source, Topic: cmd.Topic, Refused: refused, RefusedMsg: why}
	if cmd.MessageExpiry > 0 {
		req.Expires = cmd.Received.Add(cmd.MessageExpiry)
	}
	// Something in the request keeps the door from "no value": the
	// payload as given, for the audit line's "requested".
	req.Value = json.RawMessage(cmd.Payload)
	var device, tag, want string
	var ok bool
	if cmd.Topics != nil {
		device, tag, ok = cmd.Topics.Parse(cmd.Topic)
		want = cmd.Topics.String()
	} else {
		base := c.prefix
		if cmd.Base != "" {
			base = cmd.Base
		}
		device, tag, ok = parseCommandTopic(base, cmd.Topic)
		want = base + "{device}/{tag}/set"
	}
	if !ok {
		req.Device, req.Tag = "?", "?"
		if req.Refused == "" {
			req.Refused, req.RefusedMsg = door.BadPayload, "topic "+cmd.Topic+" is not "+want
		}
		return req
	}
	req.Device, req.Tag = device, tag
	if req.Refused != "" {
		return req
	}
	tgt, err := c.specs.Target(device, tag)
	if err != nil {
		return req // the door refuses it as not_writable
	}
	if len(cmd.Payload) == 0 {
		req.Value = nil
	}
	dc, err := mapping.DecodeCommand(tgt.Spec, cmd.Payload)
	if err != nil {
		req.Refused, req.RefusedMsg = door.BadPayload, strings.TrimPrefix(err.Error(), mapping.ErrBadPayload.Error()+": ")
		return req
	}
	v := dc.Value
	req.Value, req.Typed = nil, &v
	req.ID, req.Issued = dc.ID, dc.Time
	return req
}

// parseCommandTopic reads device and tag from base{device}/{tag}/set.
func parseCommandTopic(base, topic string) (device, tag string, ok bool) {
	rest, ok := strings.CutPrefix(topic, base)
	if !ok {
		return "", "", false
	}
	rest, ok = strings.CutSuffix(rest, "/set")
	if !ok {
		return "", "", false
	}
	device, tag, ok = strings.Cut(rest, "/")
	if !ok || device == "" || tag == "" || strings.Contains(tag, "/") {
		return "", "", false
	}
	return device, tag, true
}

func (c *Commands) answer(cmd Command, req door.Request) {
	ctx, cancel := context.WithTimeout(context.Background(), CommandTimeout)
	defer cancel()
	res := c.door.Write(ctx, req)
	rep := Reply{ID: res.ID, OK: res.OK, Reason: res.Reason, Message: res.Message, Old: res.Old, V: res.Written, ReadBack: res.ReadBack, Ts: res.Ts}
	b, err := json.Marshal(rep)
	if err != nil {
		c.log.Error("command reply cannot be encoded", "topic", cmd.Topic, "err", err)
		return
	}
	topic := cmd.ResponseTopic
	if topic == "" {
		topic = cmd.Topic + "/reply"
	}
	reply := c.reply
	if cmd.Reply != nil {
		reply = cmd.Reply
	}
	if reply == nil {
		return
	}
	if err := reply(topic, b, cmd.CorrelationData); err != nil && !errors.Is(err, context.Canceled) {
		c.log.Warn("command reply not published", "topic", topic, "source", cmd.Source.String(), "err", err)
	}
}
